// /storage semantics (SPEC §4): Range, If-Range, If-None-Match, HEAD, headers; and no request
// path, however encoded, reaching a file outside the storage root.
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishDir } from '../../src/admin/publish-client.js';
import type { Hub } from '../../hub/server.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { rawRequest } from '../helpers/raw-http.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

let hub: Hub;
let rel: BuiltRelease;
let zip: Buffer;
let work: string;
let key: TestKey;
const ZIP = '/storage/services/demo-echo/1.0.0/linux-x64/service.zip';
const SECRET = 'TOP-SECRET-OUTSIDE-STORAGE';

beforeAll(async () => {
  work = await tempDir();
  key = await makeKey(work);
  hub = await startHub(work, [key]);
  rel = await buildServiceRelease(work, key, { version: '1.0.0', modelBytes: 300_000 });
  await publishDir(rel.dir, { hub: hub.url, token: TEST_TOKEN });
  await publishDir((await buildModelRelease(work, key, { version: '1.0.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
  zip = await readFile(path.join(rel.dir, 'service.zip'));
  // Bait beside and above the storage root.
  await writeFile(path.join(work, 'secret.txt'), SECRET);
  await writeFile(path.join(work, 'storage', 'secret.txt'), SECRET);
});

describe('ranges and validators', () => {
  it('GET answers the whole file with the validators', async () => {
    const r = await rawRequest(hub.url, ZIP);
    expect(r.status).toBe(200);
    expect(r.body.equals(zip)).toBe(true);
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(r.headers['content-length']).toBe(String(zip.length));
    expect(r.headers['content-type']).toBe('application/zip');
    expect(r.headers['content-disposition']).toBe('attachment; filename="demo-echo-1.0.0.zip"');
    if (rel.manifest.kind !== 'service') throw new Error('service');
    expect(r.headers.etag).toBe(`"${rel.manifest.archive.sha256}"`);
  });

  it('HEAD has the headers and no body', async () => {
    const r = await rawRequest(hub.url, ZIP, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(zip.length));
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(r.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
    expect(r.body.length).toBe(0);
  });

  it('a single range is 206 with Content-Range', async () => {
    const r = await rawRequest(hub.url, ZIP, { headers: { range: 'bytes=100-1099' } });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 100-1099/${zip.length}`);
    expect(r.headers['content-length']).toBe('1000');
    expect(r.body.equals(zip.subarray(100, 1100))).toBe(true);
    const open = await rawRequest(hub.url, ZIP, { headers: { range: `bytes=${zip.length - 10}-` } });
    expect(open.status).toBe(206);
    expect(open.body.equals(zip.subarray(zip.length - 10))).toBe(true);
    const suffix = await rawRequest(hub.url, ZIP, { headers: { range: 'bytes=-5' } });
    expect(suffix.body.equals(zip.subarray(zip.length - 5))).toBe(true);
  });

  it('an unsatisfiable range is 416 with the size', async () => {
    const r = await rawRequest(hub.url, ZIP, { headers: { range: `bytes=${zip.length}-` } });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe(`bytes */${zip.length}`);
    expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ success: false, error: 'INVALID_REQUEST' });
  });

  it('If-Range with the current ETag keeps the range; another tag gets the whole file', async () => {
    const etag = (await rawRequest(hub.url, ZIP, { method: 'HEAD' })).headers.etag!;
    const same = await rawRequest(hub.url, ZIP, { headers: { range: 'bytes=0-9', 'if-range': etag } });
    expect(same.status).toBe(206);
    expect(same.body.length).toBe(10);
    const other = await rawRequest(hub.url, ZIP, { headers: { range: 'bytes=0-9', 'if-range': '"0000"' } });
    expect(other.status).toBe(200);
    expect(other.body.equals(zip)).toBe(true);
    const weak = await rawRequest(hub.url, ZIP, { headers: { range: 'bytes=0-9', 'if-range': `W/${etag}` } });
    expect(weak.status).toBe(200);
  });

  it('If-None-Match with the ETag is 304', async () => {
    const etag = (await rawRequest(hub.url, ZIP, { method: 'HEAD' })).headers.etag!;
    const r = await rawRequest(hub.url, ZIP, { headers: { 'if-none-match': etag } });
    expect(r.status).toBe(304);
    expect(r.body.length).toBe(0);
    expect(r.headers.etag).toBe(etag);
    expect((await rawRequest(hub.url, ZIP, { headers: { 'if-none-match': '"other", *' } })).status).toBe(304);
    expect((await rawRequest(hub.url, ZIP, { headers: { 'if-none-match': '"other"' } })).status).toBe(200);
    const m = await rawRequest(hub.url, '/api/services/demo-echo/1.0.0/linux-x64/manifest');
    expect((await rawRequest(hub.url, '/api/services/demo-echo/1.0.0/linux-x64/manifest', { headers: { 'if-none-match': m.headers.etag! } })).status).toBe(304);
  });

  it('model files support ranges too', async () => {
    const r = await rawRequest(hub.url, '/storage/models/demo-tiny-nmt/1.0.0/model.bin', { headers: { range: 'bytes=0-0' } });
    expect(r.status).toBe(206);
    expect(r.body.length).toBe(1);
  });
});

describe('path traversal probes', () => {
  const probes = [
    '/storage/models/demo-tiny-nmt/1.0.0/../../../../secret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/../../../hub.db',
    '/storage/models/demo-tiny-nmt/1.0.0/%2e%2e/%2e%2e/%2e%2e/secret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/%252e%252e%252f%252e%252e%252fsecret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/..%5c..%5c..%5csecret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/..\\..\\..\\secret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/model.bin%00.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/%00../../secret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/....//....//....//secret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0/..%2f..%2f..%2f..%2fsecret.txt',
    '/storage/models/demo-tiny-nmt/1.0.0//etc/passwd',
    '/storage/models/demo-tiny-nmt/1.0.0/%2fetc%2fpasswd',
    '/storage/models/%2e%2e/%2e%2e/secret.txt',
    '/storage/models/../secret.txt',
    '/storage/models/demo-tiny-nmt/..%2f..%2f/secret.txt',
    '/storage/services/demo-echo/1.0.0/..%2f..%2f..%2f/service.zip',
    '/storage/services/demo-echo/..%2f..%2fsecret.txt.zip',
    '/storage/services/%2e%2e/%2e%2e%2fsecret.zip',
    '/storage/services/demo-echo/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt%00.zip',
    '/storage/services/demo-echo/1.0.0/linux-x64/..%2f..%2f..%2f..%2fsecret.txt',
    '/storage/secret.txt',
    '/storage/hub.db',
    '/storage/%2e%2e/secret.txt',
    '/storage/..%5csecret.txt',
    '/api/models/demo-tiny-nmt/..%2f..%2f/manifest',
    '/api/services/demo-echo/1.0.0/..%2f..%2f..%2f/manifest',
  ];

  for (const probe of probes) {
    it(`refuses ${probe}`, async () => {
      const r = await rawRequest(hub.url, probe);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      const text = r.body.toString('latin1');
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain('SQLite format 3');
      expect(text).not.toContain('root:');
      expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ success: false });
    });
  }
});

describe('HEAD on the signed manifest', () => {
  it('has the length and no body', async () => {
    const get = await rawRequest(hub.url, '/api/services/demo-echo/1.0.0/linux-x64/manifest');
    const head = await rawRequest(hub.url, '/api/services/demo-echo/1.0.0/linux-x64/manifest', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(get.body.length));
    expect(head.body.length).toBe(0);
  });
});

describe('large files: many 1 MiB reads, reused buffers', () => {
  const BIG = 'big.bin';
  const SIZE = 24 * 1024 * 1024 + 12345;
  let big: Buffer;
  let url: string;
  let file: string;

  beforeAll(async () => {
    const r = await buildModelRelease(work, key, { id: 'big-model', version: '1.0.0', files: { [BIG]: SIZE } });
    await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
    big = await readFile(path.join(r.dir, BIG));
    url = `/storage/models/big-model/1.0.0/${BIG}`;
    file = hub.layout.modelFile('big-model', '1.0.0', BIG);
  });

  it('the whole file, and ranges across read boundaries, byte for byte', async () => {
    const whole = await rawRequest(hub.url, url);
    expect(whole.status).toBe(200);
    expect(whole.body.equals(big)).toBe(true);
    const MiB = 1024 * 1024;
    for (const [a, b] of [
      [MiB - 10, 3 * MiB + 10],
      [5 * MiB, 5 * MiB],
      [SIZE - 2 * MiB - 1, SIZE - 1],
    ] as const) {
      const r = await rawRequest(hub.url, url, { headers: { range: `bytes=${a}-${b}` } });
      expect(r.status).toBe(206);
      expect(r.body.equals(big.subarray(a, b + 1)), `${a}-${b}`).toBe(true);
    }
  });

  /** This process's open descriptors on the stored file (the hub runs in the test's process). */
  async function openOnFile(): Promise<number> {
    if (process.platform !== 'linux') return 0;
    const fds = await readdir('/proc/self/fd');
    const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
    return targets.filter((t) => t === file).length;
  }

  it('a client that goes away mid-download: the hub closes the file and serves the next one', async () => {
    const before = await openOnFile();
    const u = new URL(hub.url);
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: u.hostname, port: u.port, path: url }, (res) => {
        res.once('data', () => {
          // Stop reading: the socket fills, the hub waits on its writes; then hang up.
          res.pause();
          setTimeout(() => {
            req.destroy();
            resolve();
          }, 200);
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve() : reject(err)));
    });
    const deadline = Date.now() + 5000;
    while ((await openOnFile()) > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await openOnFile()).toBe(before);
    const again = await rawRequest(hub.url, url);
    expect(again.status).toBe(200);
    expect(again.body.equals(big)).toBe(true);
  });
});
