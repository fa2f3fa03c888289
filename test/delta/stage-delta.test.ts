// The delta stager (src/delta/stage-delta.ts) against the package stager (src/stage/stage.ts),
// on a real packed release: the same folder from the verified files by hash as from the zip,
// redone cleanly over a half-made staging folder (a crash), a file whose mode differs copied
// rather than linked, and a missing file refused with the staging folder gone.
import { chmod, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeDemoService } from '../../src/demo/fixtures.js';
import { stageFromContent } from '../../src/delta/stage-delta.js';
import { pack } from '../../src/pack/index.js';
import type { ServiceManifest } from '../../src/schemas/manifest.js';
import { stageArchive } from '../../src/stage/stage.js';
import { stagedMode } from '../../src/stage/staged-mode.js';
import { treeOf } from '../helpers/delta.js';
import { tempDir } from '../helpers/tmp.js';

let work: string;
let out: string;
let src: string;
let manifest: ServiceManifest;

/** The content folder service-delta.ts would have made: every file under its SHA-256. */
async function contentDir(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  for (const f of manifest.files) {
    const dest = path.join(dir, f.sha256);
    await copyFile(path.join(src, ...f.path.split('/')), dest).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    });
    await chmod(dest, stagedMode(f.mode));
  }
  return dir;
}

beforeAll(async () => {
  work = await tempDir();
  src = await writeDemoService(path.join(work, 'src'), { version: '1.0.0', modelBytes: 100_000 });
  await writeFile(path.join(src, 'app', 'run.sh'), '#!/bin/sh\nexec node app/server.mjs\n', { mode: 0o755 });
  out = path.join(work, 'out');
  await pack(src, out, { platform: 'linux-x64' });
  manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as ServiceManifest;
});

describe('staging from the verified files of a delta update', () => {
  it('gives the folder the package stager gives, every file a hard link', async () => {
    const full = path.join(work, 'full');
    await stageArchive({ archive: path.join(out, 'service.zip'), manifest, stagingDir: full });
    const content = await contentDir('content-a');
    const staged = path.join(work, 'delta');
    const r = await stageFromContent({ manifest, contentDir: content, stagingDir: staged });
    expect(r).toMatchObject({ files: manifest.files.length, linked: manifest.files.length, copied: 0 });
    expect(await treeOf(staged)).toEqual(await treeOf(full));
    expect((await stat(path.join(staged, 'app', 'run.sh'))).mode & 0o777).toBe(0o755);
  });

  it('is redone cleanly over a staging folder a crash left half made', async () => {
    const content = await contentDir('content-b');
    const staged = path.join(work, 'redo');
    await mkdir(path.join(staged, 'app'), { recursive: true });
    await writeFile(path.join(staged, 'app', 'server.mjs'), 'half written');
    await writeFile(path.join(staged, 'debris.txt'), 'left by the crash');
    await stageFromContent({ manifest, contentDir: content, stagingDir: staged });
    const full = path.join(work, 'full-b');
    await stageArchive({ archive: path.join(out, 'service.zip'), manifest, stagingDir: full });
    expect(await treeOf(staged)).toEqual(await treeOf(full));
  });

  it('copies a file whose stored mode differs from the signed one, leaving the stored file as it was', async () => {
    const content = await contentDir('content-c');
    const server = manifest.files.find((f) => f.path === 'app/server.mjs')!;
    await chmod(path.join(content, server.sha256), 0o755);
    const staged = path.join(work, 'modes');
    const r = await stageFromContent({ manifest, contentDir: content, stagingDir: staged });
    expect(r.copied).toBe(1);
    expect((await stat(path.join(staged, 'app', 'server.mjs'))).mode & 0o777).toBe(0o644);
    expect((await stat(path.join(content, server.sha256))).mode & 0o777).toBe(0o755);
  });

  it('refuses a release whose verified bytes are missing, and leaves no staging folder', async () => {
    const content = await contentDir('content-d');
    const model = manifest.files.find((f) => f.path === 'models/tiny.bin')!;
    await writeFile(path.join(content, model.sha256), 'truncated');
    const staged = path.join(work, 'missing');
    await expect(stageFromContent({ manifest, contentDir: content, stagingDir: staged })).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    await expect(stat(staged)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
