// The README stands alone: every link points to a file inside the repository, and its Electron
// snippets are the fixture files the tests run and compile, not prose that can drift.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers/cli.js';

const documents = ['README.md', ...readdirSync(path.join(REPO, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

function links(markdown: string): string[] {
  return [...markdown.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

describe('the README and docs/', () => {
  for (const doc of documents) {
    it(`${doc} links only to files inside the repository`, () => {
      const text = readFileSync(path.join(REPO, doc), 'utf8');
      for (const link of links(text)) {
        expect(link, `${doc}: ${link}`).not.toMatch(/^[a-z]+:/i); // no web or file: links
        const target = link.split('#')[0]!;
        if (target === '') continue;
        const resolved = path.resolve(path.dirname(path.join(REPO, doc)), target);
        expect(path.relative(REPO, resolved).startsWith('..'), `${doc}: ${link} leaves the repository`).toBe(false);
        expect(existsSync(resolved), `${doc}: ${link} does not exist`).toBe(true);
      }
      expect(text).not.toContain('../shared');
    });
  }

  it('shows the Electron main, preload and renderer code exactly as the tests run it', () => {
    const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
    for (const file of ['main.ts', 'preload.ts', 'renderer.ts']) {
      const code = readFileSync(path.join(REPO, 'test', 'fixtures', 'consumer', file), 'utf8').trimEnd();
      expect(readme, file).toContain('```ts\n' + code + '\n```');
    }
  });

  it('states the two set-up commands and the test command', () => {
    const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
    expect(readme).toContain('npm install');
    expect(readme).toContain('npm start');
    expect(readme).toContain('npm test');
  });
});
