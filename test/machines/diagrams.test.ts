// The checked-in diagrams are generated from the machines; a changed machine with an old
// diagram fails here (regenerate with `npm run build && npm run diagrams`).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MACHINES, mermaidOf } from '../../scripts/diagrams.js';
import { REPO } from '../helpers/cli.js';

describe('diagrams/', () => {
  for (const [name, machine] of Object.entries(MACHINES)) {
    it(`${name}.md is up to date`, async () => {
      const onDisk = await readFile(path.join(REPO, 'diagrams', `${name}.md`), 'utf8');
      expect(onDisk).toBe(mermaidOf(name, machine));
      expect(onDisk).toContain('stateDiagram-v2');
    });
  }
});
