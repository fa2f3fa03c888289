// The prestager: stages a package while it "downloads" (the .part grows in steps), gives up
// on anything unexpected without leaving anything behind, and its result is used only after
// verifyPrestaged has checked the central directory.
import { copyFile, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoService } from '../../src/demo/fixtures.js';
import { pack } from '../../src/pack/index.js';
import type { ServiceManifest } from '../../src/schemas/manifest.js';
import { Prestager, prestageMarker, verifyPrestaged } from '../../src/stage/prestage.js';
import { cleanupTempDirs, tempDir } from './helpers.js';
import { rawZip } from './raw-zip.js';

let work: string;
let zip: Buffer;
let manifest: ServiceManifest;

beforeAll(async () => {
  work = await tempDir();
  const src = await writeDemoService(path.join(work, 'src'), { version: '1.0.0', modelBytes: 3 * 1024 * 1024 + 17 });
  const r = await pack(src, path.join(work, 'out'), { platform: 'linux-x64' });
  if (r.manifest.kind !== 'service') throw new Error('service');
  manifest = r.manifest;
  zip = await readFile(path.join(work, 'out', 'service.zip'));
});
afterAll(cleanupTempDirs);

/** Writes `bytes` into dest.part in steps, telling the prestager after each, like the downloader. */
async function feed(p: Prestager, dest: string, bytes: Buffer, step: number, stopAt = bytes.length): Promise<void> {
  const fh = await open(`${dest}.part`, 'w');
  try {
    for (let at = 0; at < stopAt; at += step) {
      const end = Math.min(stopAt, at + step);
      await fh.write(bytes, at, end - at, at);
      p.flushedTo(end);
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    await fh.close();
  }
}

async function staged(dir: string): Promise<void> {
  for (const f of manifest.files) {
    const s = await stat(path.join(dir, f.path));
    expect(s.size, f.path).toBe(f.size);
    expect(s.mode & 0o777).toBe((f.mode ?? 0o644) & 0o111 ? 0o755 : 0o644);
  }
}

describe('Prestager', () => {
  it('stages while the part grows, and verifyPrestaged accepts the result', async () => {
    const dir = await tempDir();
    const dest = path.join(dir, 'pkg.zip');
    const stagingDir = path.join(dir, '.staging-job');
    const p = new Prestager({ dest, manifest, stagingDir });
    await feed(p, dest, zip, 256 * 1024);
    await copyFile(`${dest}.part`, dest);
    expect(await p.finish(zip.length)).toBe(true);
    await staged(stagingDir);
    await stat(prestageMarker(stagingDir));
    expect(await verifyPrestaged(dest, manifest, stagingDir)).toBe(true);
    await expect(stat(prestageMarker(stagingDir))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('works from a complete file when nothing was streamed (a resumed or cached download)', async () => {
    const dir = await tempDir();
    const dest = path.join(dir, 'pkg.zip');
    await writeFile(dest, zip);
    const stagingDir = path.join(dir, '.staging-job');
    const p = new Prestager({ dest, manifest, stagingDir });
    expect(await p.finish(zip.length)).toBe(true);
    await staged(stagingDir);
    expect(await verifyPrestaged(dest, manifest, stagingDir)).toBe(true);
  });

  it('abandoned midway (a restart from zero): false, and nothing left', async () => {
    const dir = await tempDir();
    const dest = path.join(dir, 'pkg.zip');
    const stagingDir = path.join(dir, '.staging-job');
    const p = new Prestager({ dest, manifest, stagingDir });
    await feed(p, dest, zip, 64 * 1024, Math.floor(zip.length / 2));
    p.abandon('restart from zero');
    expect(await p.settle()).toBe(false);
    await expect(stat(stagingDir)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(prestageMarker(stagingDir))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('abandoned after it had staged everything (the package hash failed: a mirror tampered with it): false', async () => {
    const dir = await tempDir();
    const dest = path.join(dir, 'pkg.zip');
    const stagingDir = path.join(dir, '.staging-job');
    // Stored entries without data descriptors: the worker finishes without waiting for the size.
    const plain = rawZip(await Promise.all(manifest.files.map(async (f) => ({ name: f.path, data: await readFile(path.join(work, 'src', ...f.path.split('/'))) }))));
    const p = new Prestager({ dest, manifest, stagingDir });
    await feed(p, dest, plain, 256 * 1024);
    // The worker is done (its marker is written last) before the download says the bytes are void.
    for (const end = Date.now() + 30_000; !(await stat(prestageMarker(stagingDir)).then(() => true, () => false)); ) {
      if (Date.now() > end) throw new Error('the prestager never finished');
      await new Promise((r) => setTimeout(r, 10));
    }
    p.abandon('the package hash failed');
    expect(await p.finish(plain.length)).toBe(false);
  });

  it('gives up on an entry the manifest does not list, leaving nothing', async () => {
    const dir = await tempDir();
    const dest = path.join(dir, 'evil.zip');
    const files = manifest.files.map((f) => ({ name: f.path, data: Buffer.alloc(f.size) }));
    const evil = rawZip([{ name: 'unlisted.sh', data: 'rm -rf /' }, ...files]);
    await writeFile(dest, evil);
    const stagingDir = path.join(dir, '.staging-job');
    const p = new Prestager({ dest, manifest, stagingDir });
    expect(await p.finish(evil.length)).toBe(false);
    await expect(stat(stagingDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('gives up on content that does not match the signed hashes', async () => {
    const dir = await tempDir();
    const dest = path.join(dir, 'wrong.zip');
    const wrong = rawZip(manifest.files.map((f) => ({ name: f.path, data: Buffer.alloc(f.size, 1) })));
    await writeFile(dest, wrong);
    const stagingDir = path.join(dir, '.staging-job');
    expect(await new Prestager({ dest, manifest, stagingDir }).finish(wrong.length)).toBe(false);
    await expect(stat(stagingDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('verifyPrestaged refuses without the marker or when the central directory disagrees', async () => {
    const dir = await tempDir();
    const dest = path.join(dir, 'pkg.zip');
    await writeFile(dest, zip);
    const stagingDir = path.join(dir, '.staging-job');
    expect(await new Prestager({ dest, manifest, stagingDir }).finish(zip.length)).toBe(true);
    const fewer: ServiceManifest = { ...manifest, files: manifest.files.filter((f) => f.path !== 'app/behavior.txt') };
    expect(await verifyPrestaged(dest, fewer, stagingDir)).toBe(false);
    // The marker is consumed by the first check: a second check without it refuses too.
    expect(await verifyPrestaged(dest, manifest, stagingDir)).toBe(false);
    await rm(stagingDir, { recursive: true, force: true });
  });
});
