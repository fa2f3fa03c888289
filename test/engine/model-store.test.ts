// The content-addressed model store (src/store/blobs.ts), through the real CLI against a real
// hub behind the counting proxy: a second version (or another model) sharing a file neither
// downloads nor stores it twice; uninstalling one version keeps what another still uses, the
// last one frees it; where hard links cannot be made the bytes are copied, and the job says so.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { ModelManifest } from '../../src/schemas/manifest.js';
import { diskUsage, publishModel } from '../helpers/delta.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import { makeBench, type Bench } from './fixture.js';

let b: Bench;
const onShm: string[] = [];
afterAll(async () => {
  await Promise.all(onShm.map((d) => rm(d, { recursive: true, force: true })));
});
const MiB = 1024 * 1024;
const manifests = new Map<string, ModelManifest>();
const SHARED = { size: 8 * MiB, seed: 101 };

const fileUrl = (id: string, version: string, rel: string): string => `/storage/models/${id}/${version}/${rel}`;

async function publish(id: string, version: string, files: Record<string, { size: number; seed: number }>): Promise<void> {
  const r = await publishModel(b.work, b.key, { url: b.hub.url, token: TEST_TOKEN }, { id, version, files });
  if (r.manifest.kind !== 'model') throw new Error('model');
  manifests.set(`${id}@${version}`, r.manifest);
}

function shaOf(target: string, rel: string): string {
  const f = manifests.get(target)?.files.find((x) => x.path === rel);
  if (f === undefined) throw new Error(`${target} has no ${rel}`);
  return f.sha256;
}

interface EventLine {
  type: string;
  payload: { output?: Record<string, unknown> };
}

async function pull(home: string, target: string): Promise<Record<string, unknown>> {
  const r = await b.cli(home, ['models', 'pull', target]);
  expect(r.result, r.stderr).toMatchObject({ ok: true });
  const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { id: string; target: string }[];
  const job = jobs.filter((j) => j.target === target).at(-1)!;
  const events = (await b.cli(home, ['events', job.id])).result!.events as EventLine[];
  return { ...r, stderr: r.stderr, download: events.find((e) => e.type === 'xstate.done.actor.downloadModelFiles')?.payload.output };
}

beforeAll(async () => {
  b = await makeBench();
  await publish('nmt', '1.0.0', { 'weights/shared.bin': SHARED, 'weights/head.bin': { size: 1 * MiB, seed: 102 } });
  await publish('nmt', '1.1.0', { 'weights/shared.bin': SHARED, 'weights/head.bin': { size: 1 * MiB, seed: 103 } });
  await publish('other', '2.0.0', { 'base.bin': SHARED });
}, 120_000);

describe('the model store', () => {
  it('a second version sharing a file downloads and stores it once; uninstall frees a blob only when no version uses it', async () => {
    const home = await b.newHome();
    await pull(home, 'nmt@1.0.0');
    const shared = fileUrl('nmt', '1.1.0', 'weights/shared.bin');
    b.proxy.bytes.delete(shared);
    const second = await pull(home, 'nmt@1.1.0');
    // Not one byte of the shared file; the changed one in full.
    expect(b.proxy.bytes.get(shared) ?? 0).toBe(0);
    expect(b.proxy.bytes.get(fileUrl('nmt', '1.1.0', 'weights/head.bin'))).toBe(1 * MiB);
    expect(second.download).toMatchObject({ store: { reused: 1, bytesReused: SHARED.size, linked: 2, copied: 0, stored: 1 } });

    // One inode for both versions and the store.
    const blob = path.join(home, 'blobs', 'sha256', shaOf('nmt@1.1.0', 'weights/shared.bin'));
    const inodes = await Promise.all([blob, path.join(home, 'models', 'nmt', '1.0.0', 'weights', 'shared.bin'), path.join(home, 'models', 'nmt', '1.1.0', 'weights', 'shared.bin')].map(async (p) => (await stat(p)).ino));
    expect(new Set(inodes).size).toBe(1);
    // Two versions on disk: well under 1.3 times one (hard links counted once).
    const one = await diskUsage([path.join(home, 'models', 'nmt', '1.0.0')]);
    const both = await diskUsage([path.join(home, 'models', 'nmt'), path.join(home, 'blobs')]);
    expect(both / one).toBeLessThanOrEqual(1.3);

    // Uninstall 1.0.0: the shared blob stays (1.1.0 uses it), 1.0.0's own head.bin goes.
    const un = await b.cli(home, ['uninstall', 'nmt@1.0.0']);
    expect(un.result, un.stderr).toMatchObject({ ok: true, removed: ['1.0.0'] });
    expect((await stat(blob)).nlink).toBe(2);
    await expect(stat(path.join(home, 'blobs', 'sha256', shaOf('nmt@1.0.0', 'weights/head.bin')))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readFile(path.join(home, 'models', 'nmt', '1.1.0', 'weights', 'shared.bin'))).toHaveLength(SHARED.size);
    expect((await b.cli(home, ['models', 'list'])).result).toMatchObject({ models: [{ id: 'nmt', versions: ['1.1.0'] }] });

    // Uninstall the last version: every blob is freed.
    expect((await b.cli(home, ['uninstall', 'nmt'])).result).toMatchObject({ ok: true, removed: ['1.1.0'] });
    expect(await readdir(path.join(home, 'blobs', 'sha256'))).toEqual([]);
    expect((await b.cli(home, ['models', 'list'])).result).toMatchObject({ models: [] });
    await expect(stat(path.join(home, 'models', 'nmt'))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 120_000);

  it('another model with the same bytes takes them from the store too', async () => {
    const home = await b.newHome();
    await pull(home, 'nmt@1.0.0');
    const base = fileUrl('other', '2.0.0', 'base.bin');
    b.proxy.bytes.delete(base);
    const r = await pull(home, 'other@2.0.0');
    expect(b.proxy.bytes.get(base) ?? 0).toBe(0);
    expect(r.download).toMatchObject({ store: { reused: 1 } });
    // Removing the first model keeps the bytes the second one uses.
    await b.cli(home, ['uninstall', 'nmt']);
    expect((await stat(path.join(home, 'blobs', 'sha256', shaOf('other@2.0.0', 'base.bin')))).nlink).toBe(2);
    expect(await readFile(path.join(home, 'models', 'other', '2.0.0', 'base.bin'))).toHaveLength(SHARED.size);
  }, 120_000);

  it('a damaged blob is not trusted: the file is downloaded again and the blob replaced', async () => {
    const home = await b.newHome();
    await pull(home, 'nmt@1.0.0');
    const blob = path.join(home, 'blobs', 'sha256', shaOf('nmt@1.0.0', 'weights/shared.bin'));
    // Damaged in place (same size): every link of it is damaged too, which is for `verify --repair`;
    // the next version must not take it.
    const bytes = await readFile(blob);
    bytes[1234] = bytes[1234]! ^ 0xff;
    await writeFile(blob, bytes);
    const shared = fileUrl('nmt', '1.1.0', 'weights/shared.bin');
    b.proxy.bytes.delete(shared);
    const r = await pull(home, 'nmt@1.1.0');
    expect(b.proxy.bytes.get(shared)).toBe(SHARED.size);
    expect(r.stderr).toContain('damaged');
    const good = await readFile(path.join(home, 'models', 'nmt', '1.1.0', 'weights', 'shared.bin'));
    expect((await stat(blob)).ino).toBe((await stat(path.join(home, 'models', 'nmt', '1.1.0', 'weights', 'shared.bin'))).ino);
    expect(good.equals(await readFile(blob))).toBe(true);
  }, 120_000);

  it('without hard links (the models folder on another file system) the bytes are copied, and the job says so', async () => {
    const shm = '/dev/shm';
    const home = await b.newHome();
    // The store lives in the home's file system; models/ is moved to a tmpfs, where links from it cannot reach.
    const elsewhere = await mkdtemp(path.join(shm, 'modelhub-models-'));
    onShm.push(elsewhere);
    expect((await stat(elsewhere)).dev, `${shm} must be a file system of its own for this test (it is on Debian)`).not.toBe((await stat(os.tmpdir())).dev);
    await mkdir(home, { recursive: true });
    await symlink(elsewhere, path.join(home, 'models'));
    const first = await pull(home, 'nmt@1.0.0');
    expect(first.download).toMatchObject({ store: { stored: 2, copied: 2 } });
    expect(first.stderr).toContain('hard links are not possible');
    const shared = fileUrl('nmt', '1.1.0', 'weights/shared.bin');
    b.proxy.bytes.delete(shared);
    const second = await pull(home, 'nmt@1.1.0');
    // Still not downloaded twice: copied from the store.
    expect(b.proxy.bytes.get(shared) ?? 0).toBe(0);
    expect(second.download).toMatchObject({ store: { reused: 1, copied: 2 } });
    // A copy is no link: the blob stays while a version lists it, and goes with the last one.
    await b.cli(home, ['uninstall', 'nmt@1.0.0']);
    const blob = path.join(home, 'blobs', 'sha256', shaOf('nmt@1.1.0', 'weights/shared.bin'));
    expect((await stat(blob)).nlink).toBe(1);
    await b.cli(home, ['uninstall', 'nmt']);
    expect(await readdir(path.join(home, 'blobs', 'sha256'))).toEqual([]);
  }, 120_000);

  it('gc frees blobs that nothing uses (left by a crash between removal and freeing)', async () => {
    const home = await b.newHome();
    await pull(home, 'nmt@1.0.0');
    const orphan = path.join(home, 'blobs', 'sha256', 'f'.repeat(64));
    await writeFile(orphan, 'no version lists these bytes');
    const kept = path.join(home, 'blobs', 'sha256', shaOf('nmt@1.0.0', 'weights/shared.bin'));
    // Past the sweep's grace period, as a later run would be.
    const engine = new Engine({ home, hub: b.proxy.url, now: () => Date.now() + 60_000 });
    try {
      const swept = await engine.gc();
      expect(swept.map((s) => s.path)).toContain(orphan);
    } finally {
      engine.close();
    }
    await expect(stat(orphan)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await stat(kept)).nlink).toBe(2);
  }, 120_000);
});
