// The one rule set for file paths (src/schemas/safe-path.ts), as the stager and the prestager
// apply it on this host whatever it is: names that another file system would merge (case,
// Unicode form), Windows device names, alternate data streams and trailing dots or spaces are
// refused before anything is written — by the prestager too, which used to check only that
// each name was listed.
import { readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { execProgramProblem, foldPath, pathListViolation, unsafePathReason } from '../../src/schemas/safe-path.js';
import { Prestager, prestageMarker, verifyPrestaged } from '../../src/stage/prestage.js';
import { stageArchive } from '../../src/stage/index.js';
import { cleanupTempDirs, expectNothingLeaked, layout, manifestFor, rejection, standardFiles, tempDir, type FileSpec } from './helpers.js';
import { rawZip } from './raw-zip.js';

afterAll(cleanupTempDirs);

const NFC = 'app/caf\u00e9.txt';
const NFD = 'app/cafe\u0301.txt';

/** Pairs of names one file system or another treats as one file. */
const COLLISIONS: [string, string, string][] = [
  ['NFC and NFD forms of one name', NFC, NFD],
  ['names differing only in case', 'app/Readme.txt', 'app/README.txt'],
  ['case and Unicode form at once', 'app/CAF\u00c9.txt', 'app/cafe\u0301.txt'],
  ['final and medial sigma (one letter once case-folded)', 'app/\u03c3.txt', 'app/\u03c2.txt'],
  ['a file and a directory differing only in case', 'app/data', 'App/data/x.txt'],
];

/** Names that are not what they seem on Windows. */
const WINDOWS_TRAPS: [string, string][] = [
  ['a reserved device name', 'app/CON'],
  ['a reserved device name with an extension', 'app/nul.txt'],
  ['a numbered device name', 'models/com1.bin'],
  ['an alternate data stream', 'app/main.py:evil'],
  ['a trailing dot', 'app/notes.'],
  ['a trailing space', 'app/notes '],
];

describe('the rule set', () => {
  it('folds case and Unicode form into one key', () => {
    expect(foldPath(NFC)).toBe(foldPath(NFD));
    expect(foldPath('\u03c3')).toBe(foldPath('\u03c2'));
    expect(foldPath('Stra\u00dfe')).toBe(foldPath('STRASSE'));
    expect(foldPath('app/a.txt')).not.toBe(foldPath('app/b.txt'));
  });

  it('names the first violation of a whole list', () => {
    for (const [what, a, b] of COLLISIONS) {
      const v = pathListViolation(['service.json', a, b]);
      expect(v, what).toBeDefined();
      expect(v!.message, what).toMatch(/collides|both a file and a directory/);
    }
    for (const [what, name] of WINDOWS_TRAPS) {
      expect(unsafePathReason(name), what).toBeDefined();
      expect(pathListViolation(['service.json', name])?.path, what).toBe(name);
    }
    expect(pathListViolation(['service.json', 'app/a.txt', 'app/a.txt'])?.message).toContain('listed twice');
    expect(pathListViolation(['service.json', 'app/main.py', 'app/conf.d/x', 'app/console.txt', 'app/com10.bin', 'app/.hidden', 'app/notes.txt'])).toBeUndefined();
  });

  it('exec.program: a bare command or a listed file inside the package', () => {
    const files = new Set(['service.json', 'runtime/bin/python3']);
    expect(execProgramProblem('node', files)).toBeUndefined();
    expect(execProgramProblem('python3', files)).toBeUndefined();
    expect(execProgramProblem('runtime/bin/python3', files)).toBeUndefined();
    for (const bad of ['../../../../bin/sh', '/bin/sh', 'runtime/../../bin/sh', 'runtime\\bin\\python3', 'C:/Windows/cmd.exe', 'runtime/bin/py\0thon3', 'runtime/bin/missing', '..', '.']) {
      expect(execProgramProblem(bad, files), bad).toBeDefined();
    }
    // Without a file list (another platform's entry), only the path rules apply.
    expect(execProgramProblem('runtime/python.exe')).toBeUndefined();
    expect(execProgramProblem('..\\..\\cmd.exe')).toBeDefined();
  });
});

/** A manifest and an archive holding exactly these files (besides the standard ones). */
function release(extra: FileSpec[]): { manifest: ReturnType<typeof manifestFor>; zip: Buffer } {
  const files = [...standardFiles(), ...extra];
  return { manifest: manifestFor(files), zip: rawZip(files.map((f) => ({ name: f.path, data: f.data }))) };
}

describe('the prestager refuses what the stager refuses, before writing anything', () => {
  async function prestage(extra: FileSpec[]): Promise<{ ok: boolean; stagingDir: string; dest: string; manifest: ReturnType<typeof manifestFor> }> {
    const dir = await tempDir();
    const dest = path.join(dir, 'pkg.zip');
    const { manifest, zip } = release(extra);
    await writeFile(dest, zip);
    const stagingDir = path.join(dir, '.staging-job');
    const ok = await new Prestager({ dest, manifest, stagingDir }).finish(zip.length);
    return { ok, stagingDir, dest, manifest };
  }

  it('control: distinct names prestage', async () => {
    const r = await prestage([
      { path: 'app/a.txt', data: 'a' },
      { path: 'app/b.txt', data: 'b' },
    ]);
    expect(r.ok).toBe(true);
    expect((await readdir(path.join(r.stagingDir, 'app'))).sort()).toEqual(['a.txt', 'b.txt', 'main.py']);
    expect(await verifyPrestaged(r.dest, r.manifest, r.stagingDir)).toBe(true);
  });

  for (const [what, a, b] of COLLISIONS) {
    it(`${what}: ${JSON.stringify(a)} and ${JSON.stringify(b)}`, async () => {
      const r = await prestage([
        { path: a, data: 'first' },
        { path: b, data: 'second' },
      ]);
      expect(r.ok).toBe(false);
      await expect(stat(r.stagingDir)).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(stat(prestageMarker(r.stagingDir))).rejects.toMatchObject({ code: 'ENOENT' });
    });
  }

  for (const [what, name] of WINDOWS_TRAPS) {
    it(`${what}: ${JSON.stringify(name)}`, async () => {
      const r = await prestage([{ path: name, data: 'x' }]);
      expect(r.ok).toBe(false);
      await expect(stat(r.stagingDir)).rejects.toMatchObject({ code: 'ENOENT' });
    });
  }
});

describe('the stager refuses the same names on every platform', () => {
  for (const [what, a, b] of COLLISIONS) {
    it(`${what}`, async () => {
      const l = await layout();
      const { manifest, zip } = release([
        { path: a, data: 'first' },
        { path: b, data: 'second' },
      ]);
      await writeFile(l.archive, zip);
      const err = await rejection(stageArchive({ archive: l.archive, manifest, stagingDir: l.staging }));
      expect(err.code).toBe('MANIFEST_INVALID');
      await expectNothingLeaked(l);
    });
  }

  for (const [what, name] of WINDOWS_TRAPS) {
    it(`${what}: listed → MANIFEST_INVALID; unlisted in the archive → UNSAFE_ARCHIVE`, async () => {
      const listed = await layout();
      const r = release([{ path: name, data: 'x' }]);
      await writeFile(listed.archive, r.zip);
      const err = await rejection(stageArchive({ archive: listed.archive, manifest: r.manifest, stagingDir: listed.staging }));
      expect(err.code, err.message).toBe('MANIFEST_INVALID');
      expect(err.message).toContain(JSON.stringify(name).slice(1, -1).split('/').pop()!);
      await expectNothingLeaked(listed);

      const unlisted = await layout();
      const files = standardFiles();
      await writeFile(unlisted.archive, rawZip([...files.map((f) => ({ name: f.path, data: f.data })), { name, data: 'x' }]));
      const err2 = await rejection(stageArchive({ archive: unlisted.archive, manifest: manifestFor(files), stagingDir: unlisted.staging }));
      expect(err2.code, err2.message).toBe('UNSAFE_ARCHIVE');
      await expectNothingLeaked(unlisted);
    });
  }
});
