// `modelhub pack` applies the rules the hub and the node apply (src/schemas/manifest-rules.ts):
// a source whose file names collide by Unicode form or case, or hold a name Windows reads as
// something else, is refused before anything is written; so is an exec.program that escapes
// the package on any platform of service.json, not only the one being packed.
import { readdir } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { pack } from '../../src/pack/index.js';
import { cleanupTempDirs, makeModel, makeService, put, rejection, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

describe('pack refuses names other file systems would merge or misread', () => {
  const cases: [string, string[]][] = [
    ['NFC and NFD forms of one name', ['weights/caf\u00e9.bin', 'weights/cafe\u0301.bin']],
    ['final and medial sigma', ['weights/\u03c3.bin', 'weights/\u03c2.bin']],
    ['a reserved device name', ['weights/aux.bin']],
    ['an alternate data stream', ['weights/model.bin:zone']],
    ['a trailing dot', ['weights/model.']],
  ];
  for (const [what, names] of cases) {
    it(`a model: ${what} → MANIFEST_INVALID, nothing written`, async () => {
      const src = await makeModel();
      for (const n of names) await put(src, n, `bytes of ${n}`);
      const out = await tempDir();
      const err = await rejection(() => pack(src, out));
      expect(err.code).toBe('MANIFEST_INVALID');
      expect(err.message).toContain('files:');
      expect(await readdir(out)).toEqual([]);
    });
    it(`a service: ${what} → MANIFEST_INVALID, nothing written`, async () => {
      const src = await makeService();
      for (const n of names) await put(src, n.replace('weights/', 'models/'), `bytes of ${n}`);
      const out = await tempDir();
      const err = await rejection(() => pack(src, out, { platform: 'linux-x64' }));
      expect(err.code).toBe('MANIFEST_INVALID');
      expect(await readdir(out)).toEqual([]);
    });
  }
});

describe("pack checks every platform's exec.program", () => {
  it('an escaping program for another platform → MANIFEST_INVALID naming that platform', async () => {
    const src = await makeService({
      platforms: {
        'linux-x64': { exec: { type: 'argv', program: 'runtime/bin/run.sh', args: [] } },
        'windows-x64': { exec: { type: 'argv', program: '..\\..\\Windows\\System32\\cmd.exe', args: [] } },
      },
    });
    const out = await tempDir();
    const err = await rejection(() => pack(src, out, { platform: 'linux-x64' }));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/platforms\.windows-x64\.exec\.program/);
    expect(await readdir(out)).toEqual([]);
  });

  it("control: another platform's program that this package lacks is fine (it ships in that platform's package)", async () => {
    const src = await makeService({
      platforms: {
        'linux-x64': { exec: { type: 'argv', program: 'runtime/bin/run.sh', args: [] } },
        'windows-x64': { exec: { type: 'argv', program: 'runtime/python.exe', args: [] } },
      },
    });
    await expect(pack(src, await tempDir(), { platform: 'linux-x64' })).resolves.toMatchObject({ kind: 'service' });
  });
});
