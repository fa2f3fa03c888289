// `hub serve --accel-redirect PREFIX` behind a real nginx (Debian's, started here) running the
// shipped deploy/nginx/modelhub.conf: the hub checks the catalog and the path, nginx sends the
// bytes (whole, Range, HEAD); unknown releases are the hub's 404s; no probe reaches a file the
// hub would not serve. And deploy/nginx/mirror.conf: nginx alone, serving a copy of the storage
// folder at the hub's own paths (the storage layout is the URL layout, models included).
import { once } from 'node:events';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { deployConfig, nginx, startNginx, type RunningNginx } from '../helpers/nginx.js';
import { rawRequest } from '../helpers/raw-http.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

const PREFIX = '/_modelhub_storage';
const ZIP = '/storage/services/demo-echo/1.0.0/linux-x64/service.zip';
const SECRET = 'TOP-SECRET-OUTSIDE-THE-RELEASES';

/** Model file paths nginx and the hub must agree on, byte for byte, once percent-encoded and decoded. */
const PATHS = [
  'w/plain.bin',
  'w/with space.bin',
  'w/100%.bin',
  'w/hash#tag.bin',
  'w/what?.bin',
  'w/plus+semi;colon,comma=eq.bin',
  'w/modèle-日本語.bin',
  'w/quote"d <angle>.bin',
  "w/it's (1) [x].bin",
  'files/inner.bin',
  'w/manifest.json',
];

function modelUrl(p: string): string {
  return `/storage/models/tricky/1.0.0/${p.split('/').map(encodeURIComponent).join('/')}`;
}

describe.skipIf(!nginx.available)('hub behind nginx with --accel-redirect (deploy/nginx/modelhub.conf)', () => {
  let hub: Hub;
  let front: RunningNginx;
  let work: string;
  let zip: Buffer;
  let model: BuiltRelease;

  beforeAll(async () => {
    work = await tempDir();
    const key = await makeKey(work);
    hub = await startHub(work, [key], { accelRedirect: `${PREFIX}/` });
    const rel = await buildServiceRelease(work, key, { version: '1.0.0', modelBytes: 300_000 });
    await publishDir(rel.dir, { hub: hub.url, token: TEST_TOKEN });
    zip = await readFile(path.join(rel.dir, 'service.zip'));
    model = await buildModelRelease(work, key, { id: 'tricky', version: '1.0.0', files: Object.fromEntries(PATHS.map((p) => [p, 1000])) });
    await publishDir(model.dir, { hub: hub.url, token: TEST_TOKEN });
    // A second model whose file will go missing on disk.
    await publishDir((await buildModelRelease(work, key, { id: 'gone', version: '1.0.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
    await writeFile(path.join(work, 'secret.txt'), SECRET);
    await writeFile(path.join(hub.layout.root, 'secret.txt'), SECRET);
    front = await startNginx({ config: await deployConfig('modelhub.conf', { hub: hub.url, storage: hub.layout.root }) });
  });

  it('the hub alone answers X-Accel-Redirect with the percent-encoded storage path and no body', async () => {
    const r = await rawRequest(hub.url, ZIP);
    expect(r.status).toBe(200);
    expect(r.headers['x-accel-redirect']).toBe(`${PREFIX}/services/demo-echo/1.0.0/linux-x64/service.zip`);
    expect(r.headers['content-type']).toBe('application/zip');
    expect(r.headers['content-disposition']).toBe('attachment; filename="demo-echo-1.0.0.zip"');
    expect(r.body.length).toBe(0);
    const m = await rawRequest(hub.url, modelUrl('w/with space.bin'));
    expect(m.headers['x-accel-redirect']).toBe(`${PREFIX}/models/tricky/1.0.0/w/with%20space.bin`);
  });

  it('GET through nginx: the whole package, with the hub’s Content-Type and Content-Disposition', async () => {
    const r = await rawRequest(front.url, ZIP);
    expect(r.status, await front.errorLog()).toBe(200);
    expect(r.body.equals(zip)).toBe(true);
    expect(r.headers['content-length']).toBe(String(zip.length));
    expect(r.headers['content-type']).toBe('application/zip');
    expect(r.headers['content-disposition']).toBe('attachment; filename="demo-echo-1.0.0.zip"');
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(r.headers.etag).toBeDefined();
    expect(r.headers['x-accel-redirect']).toBeUndefined();
  });

  it('Range through nginx: 206 with Content-Range; If-Range with nginx’s ETag keeps it; 416 past the end', async () => {
    const r = await rawRequest(front.url, ZIP, { headers: { range: 'bytes=100-1099' } });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 100-1099/${zip.length}`);
    expect(r.body.equals(zip.subarray(100, 1100))).toBe(true);
    const suffix = await rawRequest(front.url, ZIP, { headers: { range: 'bytes=-5' } });
    expect(suffix.body.equals(zip.subarray(zip.length - 5))).toBe(true);
    const etag = r.headers.etag!;
    expect((await rawRequest(front.url, ZIP, { headers: { range: 'bytes=0-9', 'if-range': etag } })).status).toBe(206);
    expect((await rawRequest(front.url, ZIP, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await rawRequest(front.url, ZIP, { headers: { range: `bytes=${zip.length}-` } })).status).toBe(416);
  });

  it('HEAD through nginx: the length and no body', async () => {
    const r = await rawRequest(front.url, ZIP, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(zip.length));
    expect(r.headers['content-type']).toBe('application/zip');
    expect(r.body.length).toBe(0);
  });

  it('model files with awkward names: the exact bytes of each, by its manifest path', async () => {
    for (const p of PATHS) {
      const r = await rawRequest(front.url, modelUrl(p));
      expect(r.status, `${p}: ${r.body.toString('utf8').slice(0, 200)}`).toBe(200);
      expect(r.body.equals(await readFile(path.join(model.dir, ...p.split('/')))), p).toBe(true);
      expect(r.headers['content-type']).toBe('application/octet-stream');
      expect(r.headers['content-disposition']).toMatch(/^attachment; filename=/);
    }
  });

  it('unknown releases and files are the hub’s 404s, in its envelope', async () => {
    const cases: [string, string][] = [
      ['/storage/services/demo-echo/9.9.9/linux-x64/service.zip', 'VERSION_NOT_FOUND'],
      ['/storage/services/nope/1.0.0/linux-x64/service.zip', 'NOT_FOUND'],
      ['/storage/models/tricky/1.0.0/w/unlisted.bin', 'NOT_FOUND'],
      ['/storage/models/tricky/1.0.0/.modelhub/manifest.json', 'NOT_FOUND'],
    ];
    for (const [url, code] of cases) {
      const r = await rawRequest(front.url, url);
      expect(r.status, url).toBe(404);
      expect(JSON.parse(r.body.toString('utf8')), url).toMatchObject({ success: false, error: code });
    }
  });

  it('a release whose file is missing on disk is the hub’s 404, not nginx’s', async () => {
    await rm(hub.layout.modelFile('gone', '1.0.0', 'model.bin'));
    const r = await rawRequest(front.url, '/storage/models/gone/1.0.0/model.bin');
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ success: false, error: 'NOT_FOUND' });
  });

  it('path-traversal probes and the internal location are refused; nothing outside the releases leaks', async () => {
    const probes = [
      '/storage/models/tricky/1.0.0/../../../../secret.txt',
      '/storage/models/tricky/1.0.0/%2e%2e/%2e%2e/%2e%2e/secret.txt',
      '/storage/models/tricky/1.0.0/..%2f..%2f..%2fsecret.txt',
      '/storage/models/tricky/1.0.0/%252e%252e%252f%252e%252e%252fsecret.txt',
      '/storage/models/tricky/1.0.0/..%5c..%5c..%5csecret.txt',
      '/storage/models/tricky/1.0.0/w%2fplain.bin%00.txt',
      '/storage/services/demo-echo/1.0.0/linux-x64/..%2f..%2f..%2f..%2fsecret.txt',
      '/storage/services/demo-echo/..%2f..%2fsecret.txt.zip',
      '/storage/secret.txt',
      '/storage/hub.db',
      '/storage/metadata.key',
      `${PREFIX}/services/demo-echo/1.0.0/linux-x64/service.zip`,
      `${PREFIX}/models/tricky/1.0.0/w/plain.bin`,
      `${PREFIX}/../secret.txt`,
      `${PREFIX}/models/../hub.db`,
      `${PREFIX}/models/%2e%2e/metadata.key`,
      '/_modelhub_storage%2fservices/demo-echo/1.0.0/linux-x64/service.zip',
    ];
    const key = await readFile(path.join(hub.layout.root, 'metadata.key'), 'utf8');
    for (const probe of probes) {
      const r = await rawRequest(front.url, probe);
      expect(r.status, probe).toBeGreaterThanOrEqual(400);
      expect(r.status, probe).toBeLessThan(500);
      const text = r.body.toString('latin1');
      expect(text, probe).not.toContain(SECRET);
      expect(text, probe).not.toContain('SQLite format 3');
      expect(text, probe).not.toContain(key.trim().split('\n').at(-1));
      expect(r.body.length === zip.length && r.body.equals(zip), probe).toBe(false);
    }
  });

  it('the catalog and publishing pass through nginx to the hub', async () => {
    const list = await rawRequest(front.url, '/api/models/tricky');
    expect(list.status).toBe(200);
    expect(JSON.parse(list.body.toString('utf8'))).toMatchObject({ id: 'tricky' });
    const manifest = await rawRequest(front.url, '/api/models/tricky/1.0.0/manifest');
    expect(manifest.body.toString('utf8')).toBe(model.manifestText);
    const key = await makeKey(work, 'other');
    // Through the front: refused for its key by the hub, not by nginx.
    const r = await publishDir((await buildModelRelease(work, key, { id: 'via-front', version: '1.0.0' })).dir, { hub: front.url, token: TEST_TOKEN }).then(
      () => 'published',
      (err: unknown) => (err as { code?: string }).code,
    );
    expect(r).toBe('UNTRUSTED_KEY');
  });
});

describe.skipIf(!nginx.available)('nginx alone as a static mirror of the storage folder (deploy/nginx/mirror.conf)', () => {
  let hub: Hub;
  let mirror: RunningNginx;
  let zip: Buffer;
  let model: BuiltRelease;

  beforeAll(async () => {
    const work = await tempDir();
    const key = await makeKey(work);
    hub = await startHub(work, [key]);
    const rel = await buildServiceRelease(work, key, { version: '1.0.0', modelBytes: 100_000 });
    await publishDir(rel.dir, { hub: hub.url, token: TEST_TOKEN });
    zip = await readFile(path.join(rel.dir, 'service.zip'));
    model = await buildModelRelease(work, key, { id: 'tricky', version: '1.0.0', files: Object.fromEntries(PATHS.map((p) => [p, 500])) });
    await publishDir(model.dir, { hub: hub.url, token: TEST_TOKEN });
    mirror = await startNginx({ config: await deployConfig('mirror.conf', { storage: hub.layout.root }) });
  });

  it('serves the service zip and every model file at the hub’s paths, byte for byte', async () => {
    for (const url of [ZIP, ...PATHS.map(modelUrl)]) {
      const fromHub = await rawRequest(hub.url, url);
      const fromMirror = await rawRequest(mirror.url, url);
      expect(fromHub.status, url).toBe(200);
      expect(fromMirror.status, `${url}: ${await mirror.errorLog()}`).toBe(200);
      expect(fromMirror.body.equals(fromHub.body), url).toBe(true);
    }
    expect((await rawRequest(mirror.url, ZIP)).body.equals(zip)).toBe(true);
    const ranged = await rawRequest(mirror.url, ZIP, { headers: { range: 'bytes=10-19' } });
    expect(ranged.status).toBe(206);
    expect(ranged.body.equals(zip.subarray(10, 20))).toBe(true);
  });

  it('exposes nothing but the release folders', async () => {
    for (const url of ['/storage/hub.db', '/storage/metadata.key', '/storage/', '/storage/models/', '/hub.db', '/storage/models/../hub.db']) {
      const r = await rawRequest(mirror.url, url);
      expect(r.status, url).toBeGreaterThanOrEqual(400);
      expect(r.body.toString('latin1'), url).not.toContain('SQLite format 3');
    }
  });
});

describe('`modelhub hub serve --accel-redirect`', () => {
  it('refuses a prefix nginx could not route as bad usage (exit 2)', async () => {
    const work = await tempDir();
    const prefixes = ['relative/path', '/a b', '/x?y', '/%2e%2e', '/a/../b'];
    const runs = await Promise.all(prefixes.map((p) => runCli(['hub', 'serve', '--storage', path.join(work, 'storage'), '--port', '0', '--accel-redirect', p, '--json'])));
    for (const [i, r] of runs.entries()) {
      const prefix = prefixes[i];
      expect(r.code, prefix).toBe(2);
      expect(r.result, prefix).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
      expect(JSON.stringify(r.result), prefix).toContain('--accel-redirect');
    }
  });

  it('answers /storage/… with X-Accel-Redirect under the prefix (its trailing "/" dropped)', async () => {
    const work = await tempDir();
    const key = await makeKey(work);
    const hub = await startHub(work, [key]);
    await publishDir((await buildServiceRelease(work, key, { version: '1.0.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
    // A second hub on the same storage folder and catalog, from the CLI.
    const child = spawnCli(['hub', 'serve', '--storage', hub.layout.root, '--port', '0', '--accel-redirect', '/_files/', '--json']);
    try {
      const ready = await waitForLine(child, 'ready');
      const r = await rawRequest(String(ready.url), ZIP);
      expect(r.status).toBe(200);
      expect(r.headers['x-accel-redirect']).toBe('/_files/services/demo-echo/1.0.0/linux-x64/service.zip');
      expect(r.body.length).toBe(0);
      // The hub's own checks still come first.
      expect((await rawRequest(String(ready.url), '/storage/services/demo-echo/2.0.0/linux-x64/service.zip')).status).toBe(404);
    } finally {
      const exited = child.exitCode !== null ? Promise.resolve() : once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
  });
});

describe('`--trust-proxy`: the per-client rate limits behind a proxy', () => {
  /** Failed admin authentications from one client (as X-Forwarded-For names it) until 429. */
  async function failures(url: string, client: string, n: number): Promise<number[]> {
    const statuses: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = await rawRequest(url, '/api/admin/services/x/1.0.0/stable', { method: 'POST', headers: { authorization: 'Bearer wrong', 'x-forwarded-for': client } });
      statuses.push(r.status);
    }
    return statuses;
  }

  it('with the proxy trusted, each client behind it has its own count', async () => {
    const hub = await startHub(await tempDir(), [], { trustProxy: ['127.0.0.1'], authFailureLimit: 3 });
    expect(await failures(hub.url, '203.0.113.1', 4)).toEqual([401, 401, 401, 429]);
    expect(await failures(hub.url, '203.0.113.2', 1)).toEqual([401]);
  });

  it('without it, X-Forwarded-For is ignored: every request counts against the address it came from', async () => {
    const hub = await startHub(await tempDir(), [], { authFailureLimit: 3 });
    expect(await failures(hub.url, '203.0.113.1', 3)).toEqual([401, 401, 401]);
    expect(await failures(hub.url, '203.0.113.2', 1)).toEqual([429]);
  });

  it('refuses what is no address or CIDR range', async () => {
    for (const bad of [['nginx'], ['10.0.0.0/33'], ['::1/129'], ['1.2.3.4/8/1']]) {
      await expect(startHub(await tempDir(), [], { trustProxy: bad })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    }
  });
});
