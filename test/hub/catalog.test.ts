// Every public endpoint of SPEC §4 against a real hub with real published releases, once with
// the catalog in SQLite and once in PostgreSQL (a throwaway cluster).
import { postgres } from '../helpers/postgres.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishDir } from '../../src/admin/publish-client.js';
import type { Hub } from '../../hub/server.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

const variants: { name: string; skip: boolean; db: () => Promise<string | undefined> }[] = [
  { name: 'SQLite', skip: false, db: async () => undefined },
  { name: 'PostgreSQL', skip: !postgres.available, db: () => postgres.newDatabase() },
];

for (const v of variants) {
  describe.skipIf(v.skip)(`catalog (${v.name})`, () => {
    let hub: Hub;
    let v1: BuiltRelease;
    let v2: BuiltRelease;
    let win: BuiltRelease;
    let model: BuiltRelease;

    async function getJson(p: string): Promise<{ status: number; body: unknown; headers: Headers }> {
      const res = await fetch(hub.url + p);
      return { status: res.status, body: await res.json(), headers: res.headers };
    }

    beforeAll(async () => {
      const work = await tempDir();
      const key = await makeKey(work);
      hub = await startHub(work, [key], { db: await v.db() });
      v1 = await buildServiceRelease(work, key, { version: '1.0.0' });
      v2 = await buildServiceRelease(work, key, { version: '1.1.0' });
      win = await buildServiceRelease(work, key, { version: '1.1.0', platform: 'windows-x64' });
      model = await buildModelRelease(work, key, { version: '1.0.0' });
      for (const r of [v1, v2, win, model]) await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
      await publishDir(v1.dir, { hub: hub.url, token: TEST_TOKEN }).catch(() => undefined);
    });

    it('GET /health', async () => {
      expect(await getJson('/health')).toMatchObject({ status: 200, body: { status: 'ok' } });
    });

    it('GET /api/services lists versions newest first, filtered by platform', async () => {
      const all = await getJson('/api/services');
      expect(all.status).toBe(200);
      expect(all.body).toEqual([
        expect.objectContaining({
          service_id: 'demo-echo',
          service_name: 'Demo echo service',
          latest_version: '1.1.0',
          versions: [
            expect.objectContaining({ version: '1.1.0', platforms: expect.arrayContaining(['linux-x64', 'windows-x64']) as unknown, stable: false }),
            expect.objectContaining({ version: '1.0.0', platforms: ['linux-x64'] }),
          ],
        }),
      ]);
      const linux = await getJson('/api/services?platform=linux-x64');
      const entry = (linux.body as { versions: { version: string; platforms: string[]; size_bytes: number }[] }[])[0]!;
      expect(entry.versions.map((v) => v.version)).toEqual(['1.1.0', '1.0.0']);
      expect(entry.versions[0]!.platforms).toEqual(['linux-x64']);
      expect(entry.versions[0]!.size_bytes).toBe(v2.manifest.kind === 'service' ? v2.manifest.archive.size : -1);
      const mac = await getJson('/api/services?platform=darwin-arm64');
      expect(mac.body).toEqual([]);
      const bad = await getJson('/api/services?platform=amiga');
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ success: false, error: 'INVALID_REQUEST' });
    });

    it('GET /api/services/{id} gives sha256 and size per platform', async () => {
      const r = await getJson('/api/services/demo-echo');
      expect(r.status).toBe(200);
      const body = r.body as { versions: { version: string; platforms: Record<string, { sha256: string; size_bytes: number }> }[] };
      const latest = body.versions.find((v) => v.version === '1.1.0')!;
      if (v2.manifest.kind !== 'service' || win.manifest.kind !== 'service') throw new Error('service manifests expected');
      expect(latest.platforms['linux-x64']).toMatchObject({ sha256: v2.manifest.archive.sha256, size_bytes: v2.manifest.archive.size });
      expect(latest.platforms['windows-x64']).toMatchObject({ sha256: win.manifest.archive.sha256 });
      expect(await getJson('/api/services/nope')).toMatchObject({ status: 404, body: { success: false, error: 'NOT_FOUND' } });
    });

    it('GET checksum, with the right code for each miss', async () => {
      if (v1.manifest.kind !== 'service') throw new Error('service manifest expected');
      const ok = await getJson('/api/services/demo-echo/1.0.0/checksum?platform=linux-x64');
      expect(ok).toMatchObject({ status: 200, body: { service_id: 'demo-echo', version: '1.0.0', platform: 'linux-x64', sha256: v1.manifest.archive.sha256, size_bytes: v1.manifest.archive.size } });
      expect((await getJson('/api/services/demo-echo/1.0.0/checksum')).body).toMatchObject({ platform: 'linux-x64' });
      expect(await getJson('/api/services/demo-echo/9.9.9/checksum?platform=linux-x64')).toMatchObject({ status: 404, body: { error: 'VERSION_NOT_FOUND' } });
      expect(await getJson('/api/services/demo-echo/1.0.0/checksum?platform=darwin-arm64')).toMatchObject({ status: 404, body: { error: 'PLATFORM_NOT_SUPPORTED' } });
      expect(await getJson('/api/services/ghost/1.0.0/checksum?platform=linux-x64')).toMatchObject({ status: 404, body: { error: 'NOT_FOUND' } });
    });

    it('serves the signed manifest and signature byte for byte', async () => {
      const m = await fetch(`${hub.url}/api/services/demo-echo/1.1.0/linux-x64/manifest`);
      expect(m.status).toBe(200);
      expect(await m.text()).toBe(v2.manifestText);
      const s = await fetch(`${hub.url}/api/services/demo-echo/1.1.0/linux-x64/manifest.minisig`);
      expect(await s.text()).toBe(await readFile(path.join(v2.dir, 'manifest.json.minisig'), 'utf8'));
      const mm = await fetch(`${hub.url}/api/models/demo-tiny-nmt/1.0.0/manifest`);
      expect(await mm.text()).toBe(model.manifestText);
      const ms = await fetch(`${hub.url}/api/models/demo-tiny-nmt/1.0.0/manifest.minisig`);
      expect(ms.status).toBe(200);
    });

    it('serves the package, also on the legacy path', async () => {
      const want = await readFile(path.join(v2.dir, 'service.zip'));
      const res = await fetch(`${hub.url}/storage/services/demo-echo/1.1.0/linux-x64/service.zip`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/zip');
      expect(res.headers.get('content-disposition')).toBe('attachment; filename="demo-echo-1.1.0.zip"');
      expect(Buffer.from(await res.arrayBuffer()).equals(want)).toBe(true);
      const legacy = await fetch(`${hub.url}/storage/services/demo-echo/1.1.0.zip`);
      expect(Buffer.from(await legacy.arrayBuffer()).equals(want)).toBe(true);
      const legacyWin = await fetch(`${hub.url}/storage/services/demo-echo/1.1.0.zip?platform=windows-x64`);
      expect(Buffer.from(await legacyWin.arrayBuffer()).equals(await readFile(path.join(win.dir, 'service.zip')))).toBe(true);
      expect((await fetch(`${hub.url}/storage/services/demo-echo/1.0.0.zip?platform=windows-x64`)).status).toBe(404);
    });

    it('GET /api/models and /api/models/{id} in the seed-003 shape', async () => {
      const list = await getJson('/api/models');
      expect(list.status).toBe(200);
      if (model.manifest.kind !== 'model') throw new Error('model manifest expected');
      const files = model.manifest.files.map((f) => ({ path: f.path, size_bytes: f.size, sha256: f.sha256 }));
      const expected = {
        id: 'demo-tiny-nmt',
        name: 'Tiny demo NMT',
        task: 'nmt',
        languages: ['en', 'zh'],
        default_version: '1.0.0',
        versions: [expect.objectContaining({ version: '1.0.0', size_bytes: files.reduce((s, f) => s + f.size_bytes, 0), files, checksum_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown, updated_at: expect.any(String) as unknown })],
      };
      expect(list.body).toEqual([expect.objectContaining(expected)]);
      expect(await getJson('/api/models/demo-tiny-nmt')).toMatchObject({ status: 200, body: { id: 'demo-tiny-nmt' } });
      expect(await getJson('/api/models/ghost')).toMatchObject({ status: 404, body: { success: false, error: 'NOT_FOUND' } });
    });

    it('serves each model file, nested paths included', async () => {
      if (model.manifest.kind !== 'model') throw new Error('model manifest expected');
      for (const f of model.manifest.files) {
        const res = await fetch(`${hub.url}/storage/models/demo-tiny-nmt/1.0.0/${f.path}`);
        expect(res.status).toBe(200);
        const bytes = Buffer.from(await res.arrayBuffer());
        expect(bytes.equals(await readFile(path.join(model.dir, f.path)))).toBe(true);
        expect(res.headers.get('etag')).toBe(`"${f.sha256}"`);
      }
      expect((await fetch(`${hub.url}/storage/models/demo-tiny-nmt/1.0.0/nope.bin`)).status).toBe(404);
      expect((await fetch(`${hub.url}/storage/models/demo-tiny-nmt/2.0.0/model.bin`)).status).toBe(404);
    });

    it('GET /api/keys lists the publisher keys', async () => {
      const r = await getJson('/api/keys');
      expect(r.status).toBe(200);
      const keys = r.body as { key_id: string; public_key: string }[];
      expect(keys).toHaveLength(1);
      expect(keys[0]!.key_id).toMatch(/^[0-9A-F]{16}$/);
      expect(keys[0]!.public_key).toContain('untrusted comment:');
    });

    it('ranks model demand', async () => {
      const post = (body: unknown, token = TEST_TOKEN): Promise<Response> =>
        fetch(`${hub.url}/api/model-usage`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
      expect((await post({ model_id: 'marian-zh-en', count: 1500 })).status).toBe(200);
      expect((await post({ model_id: 'whisper', count: 900 })).status).toBe(200);
      expect((await post({ model_id: 'whisper', count: 100 })).status).toBe(200);
      expect((await post({ model_id: 'marian-zh-en', count: 23 })).status).toBe(200);
      expect((await post({ model_id: 'tiny' })).status).toBe(200);
      const bad = await post({ model_id: '../x', count: -1 });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ success: false, error: 'INVALID_REQUEST' });
      expect((await post({ model_id: 'x', count: 1 }, 'wrong')).status).toBe(401);
      const r = await getJson('/api/model-usage/ranking?limit=2');
      expect(r.body).toEqual([
        { model_id: 'marian-zh-en', request_count: 1523, unavailable_count: 0, rank: 1 },
        { model_id: 'whisper', request_count: 1000, unavailable_count: 0, rank: 2 },
      ]);
      expect((await getJson('/api/model-usage/ranking')).body).toHaveLength(3);
      expect((await getJson('/api/model-usage/ranking?limit=zero')).status).toBe(400);
    });

    it('marks a version stable', async () => {
      const res = await fetch(`${hub.url}/api/admin/services/demo-echo/1.0.0/stable`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      expect(res.status).toBe(200);
      const s = await getJson('/api/services/demo-echo');
      expect(s.body).toMatchObject({ stable_version: '1.0.0', latest_version: '1.1.0' });
      const missing = await fetch(`${hub.url}/api/admin/services/demo-echo/7.0.0/stable`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      expect(missing.status).toBe(404);
    });

    it('answers unknown routes with the error envelope', async () => {
      const r = await getJson('/api/nothing-here');
      expect(r.status).toBe(404);
      expect(r.body).toMatchObject({ success: false, error: 'NOT_FOUND', message: expect.any(String) as unknown, details: {}, timestamp: expect.any(String) as unknown });
      expect(Number.isNaN(Date.parse((r.body as { timestamp: string }).timestamp))).toBe(false);
    });
  });
}
