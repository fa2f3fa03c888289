// Model folders in the old layout (models/<id>/<version>/{manifest.json, manifest.json.minisig,
// files/<path>}) are converted at hub start into the URL layout (<path> beside .modelhub/), with
// renames only: a hub started on an old storage folder serves every file from its new place; a
// folder left half-converted by a killed hub is completed by the next start; two hubs starting
// at once on one storage folder both serve everything; a second start has nothing to do; and a
// folder the new layout cannot hold is left alone, named, and the hub still starts.
// PostgreSQL's helper first: its cluster must stop after the hubs close (see postgres.ts).
import { postgres } from '../helpers/postgres.js';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { migrateModelLayout, MOVING, PENDING } from '../../hub/storage-migrate.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { rawRequest } from '../helpers/raw-http.js';
import { buildModelRelease, buildServiceRelease, makeKey, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** Model files whose names the old layout's own names could be mistaken for. */
const TRICKY: Record<string, string> = {
  'manifest.json': '{"not":"the release manifest"}\n',
  'manifest.json.minisig': 'not a signature\n',
  'files/inner.bin': 'inside a folder named files\n',
  'files.moving': 'named like the migration folder\n',
  'model.bin': 'weights\n',
};

/**
 * A model release with exactly these files, uploaded as a publisher's client would (`modelhub
 * pack` writes its own manifest.json into the output folder, so it cannot pack a model file of
 * that name).
 */
async function publishRaw(hub: Hub, key: TestKey, id: string, version: string, files: Record<string, string>): Promise<void> {
  const manifest = {
    schema: 1,
    kind: 'model',
    id,
    version,
    files: Object.entries(files).map(([p, d]) => ({ path: p, sha256: sha256(d), size: Buffer.byteLength(d) })),
    model: { name: id, task: 'nmt', languages: ['en'] },
    created_at: '2026-01-01T00:00:00Z',
  };
  const text = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  const sig = formatSignature(signBytes(text, await readSecretKeyFile(key.key)));
  const form = new FormData();
  form.append('manifest', new Blob([text]), 'manifest.json');
  form.append('signature', new Blob([sig]), 'manifest.json.minisig');
  for (const [p, d] of Object.entries(files)) form.append(`file:${p}`, new Blob([d]), path.posix.basename(p));
  const res = await fetch(`${hub.url}/api/admin/models/${id}/${version}`, { method: 'PUT', body: form, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  expect(res.status, await res.text()).toBe(201);
}

/** Rewrites a model folder as an older hub wrote it. */
async function toOldLayout(dir: string): Promise<void> {
  const staging = path.join(dir, '..', `${path.basename(dir)}.old-files`);
  await mkdir(staging);
  for (const name of await readdir(dir)) if (name !== '.modelhub') await rename(path.join(dir, name), path.join(staging, name));
  for (const name of ['manifest.json', 'manifest.json.minisig']) await rename(path.join(dir, '.modelhub', name), path.join(dir, name));
  await rmdir(path.join(dir, '.modelhub'));
  await rename(staging, path.join(dir, 'files'));
}

/** The old layout after the migration's step 1 (the records moved into .modelhub/) — a hub killed there. */
async function killedAfterRecords(dir: string): Promise<void> {
  await mkdir(path.join(dir, '.modelhub'));
  await rename(path.join(dir, 'manifest.json.minisig'), path.join(dir, '.modelhub', 'manifest.json.minisig'));
  await rename(path.join(dir, 'manifest.json'), path.join(dir, '.modelhub', PENDING));
}

/** …killed in step 3: files/ moved aside, `moved` of its entries already up in the folder. */
async function killedWhileMoving(dir: string, moved: string[]): Promise<void> {
  await killedAfterRecords(dir);
  const moving = path.join(dir, '.modelhub', MOVING);
  await rename(path.join(dir, 'files'), moving);
  for (const name of moved) await rename(path.join(moving, name), path.join(dir, name));
}

/** …killed between step 4 (the manifest in place) and 5 (the emptied folder removed). */
async function killedBeforeCleanup(dir: string): Promise<void> {
  await killedWhileMoving(dir, []);
  const moving = path.join(dir, '.modelhub', MOVING);
  for (const name of await readdir(moving)) await rename(path.join(moving, name), path.join(dir, name));
  await rename(path.join(dir, '.modelhub', PENDING), path.join(dir, '.modelhub', 'manifest.json'));
}

interface Fixture {
  work: string;
  key: TestKey;
  /** url → the bytes it must serve. */
  expected: Map<string, Buffer>;
  manifests: Map<string, string>;
  modelDirs: string[];
}

/** A storage folder with a service and four models, published by a hub that is then closed. */
async function publishedStorage(db?: string): Promise<{ fx: Fixture; hub: Hub }> {
  const work = await tempDir();
  const key = await makeKey(work);
  const hub = await startHub(work, [key], { db });
  const expected = new Map<string, Buffer>();
  const manifests = new Map<string, string>();
  const svc = await buildServiceRelease(work, key, { version: '1.0.0' });
  await publishDir(svc.dir, { hub: hub.url, token: TEST_TOKEN });
  expected.set('/storage/services/demo-echo/1.0.0/linux-x64/service.zip', await readFile(path.join(svc.dir, 'service.zip')));
  for (const id of ['tricky-a', 'tricky-b', 'tricky-c', 'tricky-d']) {
    await publishRaw(hub, key, id, '1.0.0', TRICKY);
    for (const [p, d] of Object.entries(TRICKY)) expected.set(`/storage/models/${id}/1.0.0/${p}`, Buffer.from(d));
    manifests.set(id, await readFile(hub.layout.modelRecord(id, '1.0.0', 'manifest.json'), 'utf8'));
  }
  const packed = await buildModelRelease(work, key, { id: 'packed', version: '2.0.0', files: { 'weights/model.bin': 5000, 'files/x.bin': 10, 'config.json': 0 } });
  await publishDir(packed.dir, { hub: hub.url, token: TEST_TOKEN });
  for (const f of packed.manifest.files) expected.set(`/storage/models/packed/2.0.0/${f.path}`, await readFile(path.join(packed.dir, ...f.path.split('/'))));
  manifests.set('packed', packed.manifestText);
  const modelDirs = [...['tricky-a', 'tricky-b', 'tricky-c', 'tricky-d'].map((id) => hub.layout.modelDir(id, '1.0.0')), hub.layout.modelDir('packed', '2.0.0')];
  await hub.close();
  return { fx: { work, key, expected, manifests, modelDirs }, hub };
}

async function expectServed(hub: Hub, fx: Fixture): Promise<void> {
  for (const [url, bytes] of fx.expected) {
    const r = await rawRequest(hub.url, url.split('/').map(encodeURIComponent).join('/'));
    expect(r.status, `${url}: ${r.body.toString('utf8').slice(0, 300)}`).toBe(200);
    expect(r.body.equals(bytes), url).toBe(true);
  }
  for (const [id, text] of fx.manifests) {
    const version = id === 'packed' ? '2.0.0' : '1.0.0';
    const r = await rawRequest(hub.url, `/api/models/${id}/${version}/manifest`);
    expect(r.body.toString('utf8'), id).toBe(text);
  }
}

/** Every model file at its URL path, the records in .modelhub/, nothing of the migration left. */
async function expectNewLayout(fx: Fixture): Promise<void> {
  for (const [url, bytes] of fx.expected) {
    if (!url.startsWith('/storage/models/')) continue;
    const [, , , id = '', version = '', ...rest] = url.split('/');
    const dir = fx.modelDirs.find((d) => d.endsWith(path.join(id, version)))!;
    expect((await readFile(path.join(dir, ...rest))).equals(bytes), url).toBe(true);
  }
  for (const dir of fx.modelDirs) {
    expect((await readdir(path.join(dir, '.modelhub'))).sort(), dir).toEqual(['manifest.json', 'manifest.json.minisig']);
    expect(existsSync(path.join(dir, 'files', 'model.bin')), dir).toBe(false);
  }
}

/** Two hubs on one storage folder and catalog, started at once on the old layout. */
async function twoHubsAtOnce(db: string | undefined): Promise<void> {
  const { fx } = await publishedStorage(db);
  for (const dir of fx.modelDirs) await toOldLayout(dir);
  // What each hub logs at start, one line per folder it converted.
  const logged: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    logged.push(String(chunk));
    return true;
  });
  let hubs: Hub[];
  try {
    hubs = await Promise.all([startHub(fx.work, [fx.key], { db }), startHub(fx.work, [fx.key], { db })]);
  } finally {
    spy.mockRestore();
  }
  const [one, two] = hubs;
  const converted = logged.filter((l) => l.includes('model files moved')).map((l) => l.split(':')[1]?.trim());
  expect(converted.sort()).toEqual(fx.modelDirs.map((d) => path.relative(one!.layout.root, d).split(path.sep).join('/')).sort());
  await expectServed(one!, fx);
  await expectServed(two!, fx);
  await expectNewLayout(fx);
}

describe('the old model layout', () => {
  it('is converted at start: every file served and at its URL path; the next start has nothing to do', async () => {
    const { fx } = await publishedStorage();
    for (const dir of fx.modelDirs) await toOldLayout(dir);
    expect(existsSync(path.join(fx.modelDirs[0]!, 'files', 'files', 'inner.bin'))).toBe(true);
    const hub = await startHub(fx.work, [fx.key]);
    await expectServed(hub, fx);
    await expectNewLayout(fx);
    expect(await migrateModelLayout(hub.layout, hub.catalog)).toEqual({ converted: [], skipped: [] });
  });

  it('left half-converted by a killed hub, at each step, is completed by the next start', async () => {
    const { fx } = await publishedStorage();
    for (const dir of fx.modelDirs) await toOldLayout(dir);
    const [a, b, c, d] = fx.modelDirs;
    await killedAfterRecords(a!);
    await killedWhileMoving(b!, ['files', 'manifest.json']);
    await killedWhileMoving(c!, ['model.bin', 'files.moving', 'manifest.json.minisig']);
    await killedBeforeCleanup(d!);
    // The fifth (packed) stays entirely old.
    const hub = await startHub(fx.work, [fx.key]);
    await expectServed(hub, fx);
    await expectNewLayout(fx);
  });

  it('two hubs starting at once on the storage folder both convert it, once, and both serve it', async () => {
    await twoHubsAtOnce(undefined);
  });

  it('a folder with a model file the new layout reserves (.modelhub/…) is left as it was and named; the others are served', async () => {
    const { fx } = await publishedStorage();
    const dir = fx.modelDirs[0]!;
    await toOldLayout(dir);
    await mkdir(path.join(dir, 'files', '.modelhub'));
    await writeFile(path.join(dir, 'files', '.modelhub', 'x.bin'), 'x');
    const lines: string[] = [];
    const hub = await startHub(fx.work, [fx.key]);
    const again = await migrateModelLayout(hub.layout, hub.catalog, (l) => lines.push(l));
    expect(again.skipped.map((x) => x.path)).toEqual(['models/tricky-a/1.0.0']);
    expect(again.skipped[0]?.reason).toContain('.modelhub');
    expect(lines.join('\n')).toContain('models/tricky-a/1.0.0 is left in the old layout');
    expect(existsSync(path.join(dir, 'files', 'model.bin'))).toBe(true);
    expect((await rawRequest(hub.url, '/storage/models/tricky-a/1.0.0/model.bin')).status).toBe(404);
    expect((await rawRequest(hub.url, '/storage/models/tricky-b/1.0.0/model.bin')).status).toBe(200);
  });
});

describe.skipIf(!postgres.available)('the old model layout, hubs on PostgreSQL', () => {
  it('two hubs starting at once on one storage folder and catalog both convert it, once, and both serve it', async () => {
    await twoHubsAtOnce(await postgres.newDatabase());
  });
});
