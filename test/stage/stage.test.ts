// Good packages stage with the right contents and modes; the staging directory is redone from
// scratch; an abort leaves nothing behind.
import { createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { randomBytes } from 'node:crypto';
import { pack } from '../../src/pack/index.js';
import { serviceManifestSchema } from '../../src/schemas/manifest.js';
import { stageArchive, stagedMode, type StageProgress } from '../../src/stage/index.js';
import {
  baseService,
  cleanupTempDirs,
  expectNothingLeaked,
  layout,
  manifestFor,
  rejection,
  sha256,
  standardFiles,
  tempDir,
  tree,
  type FileSpec,
} from './helpers.js';

afterAll(cleanupTempDirs);

interface YazlEntry {
  name: string;
  data?: string | Buffer;
  mode?: number;
  compress?: boolean;
  dir?: boolean;
}

async function writeYazl(file: string, entries: readonly YazlEntry[]): Promise<void> {
  const zip = new yazl.ZipFile();
  for (const e of entries) {
    if (e.dir === true) zip.addEmptyDirectory(e.name, { mode: 0o40755 });
    else {
      const data = e.data ?? '';
      zip.addBuffer(typeof data === 'string' ? Buffer.from(data) : data, e.name, {
        mode: 0o100000 | (e.mode ?? 0o644),
        compress: e.compress ?? true,
      });
    }
  }
  zip.end();
  await pipeline(zip.outputStream as Readable, createWriteStream(file));
}

function modeOf(st: { mode: number }): number {
  return st.mode & 0o7777;
}

/** A package with text, an exec script, an empty file, 2.5 MiB of stored weights and a 0777 file. */
function richFiles(): FileSpec[] {
  return [
    ...standardFiles(),
    { path: 'models/nmt/w.bin', data: randomBytes(2.5 * 1024 * 1024), mode: 0o644 },
    { path: 'models/nmt/config.json', data: '{"layers": 12}\n' },
    { path: 'app/lib/util.py', data: 'def f():\n    return 1\n', mode: 0o600 },
    { path: 'runtime/bin/tool', data: 'binary-ish', mode: 0o4775 },
  ];
}

async function expectStaged(staging: string, files: readonly FileSpec[]): Promise<void> {
  const expectedTree = new Set<string>();
  for (const f of files) {
    expectedTree.add(f.path);
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) expectedTree.add(`${parts.slice(0, i).join('/')}/`);
  }
  expect(await tree(staging)).toEqual([...expectedTree].sort());
  for (const f of files) {
    const p = path.join(staging, ...f.path.split('/'));
    const content = await readFile(p);
    expect(sha256(content), f.path).toBe(sha256(f.data));
    expect(modeOf(await stat(p)), f.path).toBe(stagedMode(f.mode));
  }
  for (const d of [...expectedTree].filter((e) => e.endsWith('/'))) {
    expect(modeOf(await stat(path.join(staging, d))), d).toBe(0o755);
  }
  expect(modeOf(await stat(staging))).toBe(0o755);
}

describe('stageArchive: good packages', () => {
  it('stagedMode: exec bit → 0755, else 0644, never more', () => {
    expect(stagedMode(undefined)).toBe(0o644);
    expect(stagedMode(420)).toBe(0o644);
    expect(stagedMode(493)).toBe(0o755);
    expect(stagedMode(0o4777)).toBe(0o755);
    expect(stagedMode(0o100)).toBe(0o755);
    expect(stagedMode(0o666)).toBe(0o644);
  });

  it('extracts a yazl-made package: contents, modes from the manifest (not the zip), progress', async () => {
    const l = await layout();
    const files = richFiles();
    await writeYazl(l.archive, [
      { name: 'app/', dir: true },
      // The zip's own modes lie in both directions; only the manifest counts.
      ...files.map((f) => ({
        name: f.path,
        data: f.data,
        mode: f.path === 'runtime/bin/run.sh' ? 0o644 : 0o777,
        compress: !f.path.endsWith('.bin'),
      })),
    ]);
    const manifest = manifestFor(files);
    expect(manifest.files.find((f) => f.path === 'runtime/bin/run.sh')?.mode).toBe(493);

    const events: StageProgress[] = [];
    const res = await stageArchive({ archive: l.archive, manifest, stagingDir: l.staging, onProgress: (p) => events.push(p) });
    const total = files.reduce((n, f) => n + Buffer.byteLength(f.data), 0);
    expect(res).toEqual({ files: files.length, bytes: total });
    await expectStaged(l.staging, files);
    expect(modeOf(await stat(path.join(l.staging, 'runtime/bin/run.sh')))).toBe(0o755);
    expect(modeOf(await stat(path.join(l.staging, 'app/main.py')))).toBe(0o644);

    expect(events.length).toBeGreaterThanOrEqual(files.length);
    for (let i = 1; i < events.length; i++) expect(events[i]?.bytesDone).toBeGreaterThanOrEqual(events[i - 1]?.bytesDone ?? 0);
    expect(events.at(-1)?.bytesDone).toBe(total);
    expect(events.every((e) => e.bytesTotal === total)).toBe(true);
    expect(new Set(events.map((e) => e.file))).toEqual(new Set(files.map((f) => f.path)));
    // Nothing besides staging appeared.
    expect((await tree(l.base)).filter((p) => !p.startsWith('outer/inner/staging/'))).toEqual(['archive.zip', 'outer/', 'outer/inner/']);
    expect(await tree(l.inner)).toContain('staging/');
  });

  it('extracts a package made by our packer, with the manifest as the engine parses it', async () => {
    const src = await tempDir('modelhub-stage-src-');
    const service = baseService({
      platforms: {
        'linux-x64': { exec: { type: 'argv', program: 'runtime/bin/run.sh', args: ['app/main.py'] } },
        'windows-x64': { exec: { type: 'argv', program: 'runtime/python.exe' } },
      },
      health_check: { type: 'http', endpoint: '/health' }, // the schema fills in its timings
    });
    const put = async (rel: string, data: string | Buffer, mode = 0o644): Promise<void> => {
      const p = path.join(src, ...rel.split('/'));
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, data);
      await chmod(p, mode);
    };
    await put('service.json', JSON.stringify(service, null, 2));
    await put('app/main.py', 'print("hi")\n'.repeat(500));
    await put('runtime/bin/run.sh', '#!/bin/sh\nexec python3 "$@"\n', 0o755);
    await put('runtime/python.exe', randomBytes(4096));
    await put('models/w.safetensors', randomBytes(1024 * 1024 + 3));
    await put('health/empty', '');
    const out = path.join(await tempDir('modelhub-stage-out-'), 'out');
    const packed = await pack(src, out, { platform: 'linux-x64' });

    const manifest = serviceManifestSchema.parse(JSON.parse(await readFile(packed.manifestPath, 'utf8')));
    expect(manifest.files.find((f) => f.path === 'runtime/bin/run.sh')?.mode).toBe(493);
    const staging = path.join(await tempDir(), 'staging');
    expect(packed.archivePath).toBe(path.join(out, 'service.zip'));
    const res = await stageArchive({ archive: path.join(out, 'service.zip'), manifest, stagingDir: staging });
    expect(res.files).toBe(manifest.files.length);
    for (const f of manifest.files) {
      const p = path.join(staging, ...f.path.split('/'));
      expect(sha256(await readFile(p))).toBe(f.sha256);
      expect(modeOf(await stat(p))).toBe(stagedMode(f.mode));
    }
    expect(modeOf(await stat(path.join(staging, 'runtime/bin/run.sh')))).toBe(0o755);
    expect(JSON.parse(await readFile(path.join(staging, 'service.json'), 'utf8'))).toEqual(service);
  });

  it('service.json equal as JSON though written with other key order and spacing', async () => {
    const l = await layout();
    const service = baseService();
    const reordered = Object.fromEntries(Object.entries(service).reverse());
    const files = standardFiles().map((f) => (f.path === 'service.json' ? { ...f, data: JSON.stringify(reordered) } : f));
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data })));
    await stageArchive({ archive: l.archive, manifest: manifestFor(files, service), stagingDir: l.staging });
    await expectStaged(l.staging, files);
  });

  it('a parsed manifest (defaults filled in) still detects a real difference in service.json', async () => {
    const l = await layout();
    const signed = baseService({ health_check: { type: 'http', endpoint: '/health' } });
    const shipped = baseService({ health_check: { type: 'http', endpoint: '/health', interval_ms: 1 } });
    const files = standardFiles(shipped);
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data })));
    const manifest = serviceManifestSchema.parse(manifestFor(files, signed));
    expect(manifest.service.health_check?.interval_ms).toBe(500);
    const err = await rejection(stageArchive({ archive: l.archive, manifest, stagingDir: l.staging }));
    expect(err.code).toBe('MANIFEST_MISMATCH');
    expect(err.message).toContain('health_check.interval_ms');
    await expectNothingLeaked(l);

    // While the same service.json without the defaults written out is equal to it.
    const same = standardFiles(signed);
    await writeYazl(l.archive, same.map((f) => ({ name: f.path, data: f.data })));
    const parsed = serviceManifestSchema.parse(manifestFor(same, signed));
    await stageArchive({ archive: l.archive, manifest: parsed, stagingDir: l.staging });
    await expectStaged(l.staging, same);
  });

  it('redoes a leftover staging directory from scratch', async () => {
    const l = await layout();
    const files = standardFiles();
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data, mode: f.mode })));
    // Leftovers of an interrupted run: a stale file where a directory goes, junk, a stale file.
    await mkdir(path.join(l.staging, 'junk', 'deeper'), { recursive: true });
    await writeFile(path.join(l.staging, 'junk', 'deeper', 'x'), 'x');
    await writeFile(path.join(l.staging, 'app'), 'a file where app/ goes');
    await writeFile(path.join(l.staging, 'service.json'), 'stale');

    const manifest = manifestFor(files);
    await stageArchive({ archive: l.archive, manifest, stagingDir: l.staging });
    await expectStaged(l.staging, files);
    // And once more over a complete one.
    await stageArchive({ archive: l.archive, manifest, stagingDir: l.staging });
    await expectStaged(l.staging, files);
  });

  it('a staging path that is a leftover symlink is replaced, its target untouched', async () => {
    const l = await layout();
    const files = standardFiles();
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data })));
    const elsewhere = path.join(l.base, 'elsewhere');
    await mkdir(elsewhere);
    await writeFile(path.join(elsewhere, 'precious'), 'keep me');
    await symlink(elsewhere, l.staging);
    expect(await readlink(l.staging)).toBe(elsewhere);

    await stageArchive({ archive: l.archive, manifest: manifestFor(files), stagingDir: l.staging });
    expect((await lstat(l.staging)).isDirectory()).toBe(true);
    expect(await tree(elsewhere)).toEqual(['precious']);
    await expectStaged(l.staging, files);
  });

  it('creates missing parents of the staging directory', async () => {
    const l = await layout();
    const files = standardFiles();
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data })));
    const staging = path.join(l.inner, 'a', 'b', 'staging');
    await stageArchive({ archive: l.archive, manifest: manifestFor(files), stagingDir: staging });
    await expectStaged(staging, files);
  });

  it('an abort mid-way removes the staging directory and rejects with the signal reason', async () => {
    const l = await layout();
    const files = richFiles();
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data, compress: false })));
    const ac = new AbortController();
    const reason = new Error('user cancelled');
    let calls = 0;
    const p = stageArchive({
      archive: l.archive,
      manifest: manifestFor(files),
      stagingDir: l.staging,
      signal: ac.signal,
      onProgress: () => {
        calls += 1;
        if (calls === 2) ac.abort(reason);
      },
    });
    await expect(p).rejects.toBe(reason);
    await expectNothingLeaked(l);
  });

  it('an abort in the middle of a big streamed entry removes the staging directory', async () => {
    const l = await layout();
    const files = richFiles();
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data, compress: false })));
    const ac = new AbortController();
    const p = stageArchive({
      archive: l.archive,
      manifest: manifestFor(files),
      stagingDir: l.staging,
      signal: ac.signal,
      onProgress: (e) => {
        if (e.file === 'models/nmt/w.bin') ac.abort();
      },
    });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    await expectNothingLeaked(l);
  });

  it('an already-aborted signal: nothing is created, a leftover is still removed', async () => {
    const l = await layout();
    const files = standardFiles();
    await writeYazl(l.archive, files.map((f) => ({ name: f.path, data: f.data })));
    await mkdir(l.staging);
    await writeFile(path.join(l.staging, 'old'), 'old');
    const p = stageArchive({ archive: l.archive, manifest: manifestFor(files), stagingDir: l.staging, signal: AbortSignal.abort() });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    await expectNothingLeaked(l);
  });

  it('a missing archive is NOT_FOUND and leaves no staging directory', async () => {
    const l = await layout();
    const err = await rejection(stageArchive({ archive: l.archive, manifest: manifestFor(standardFiles()), stagingDir: l.staging }));
    expect(err.code).toBe('NOT_FOUND');
    expect(await tree(l.base)).toEqual(['outer/', 'outer/inner/']);
  });
});
