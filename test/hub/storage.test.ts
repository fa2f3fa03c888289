// /storage semantics (SPEC §4): Range, If-Range, If-None-Match, HEAD, headers; and no request
// path, however encoded, reaching a file outside the storage root.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishDir } from '../../src/admin/publish-client.js';
import type { Hub } from '../../hub/server.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { rawRequest } from '../helpers/raw-http.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

let hub: Hub;
let rel: BuiltRelease;
let zip: Buffer;
let work: string;
const ZIP = '/storage/services/demo-echo/1.0.0/linux-x64/service.zip';
const SECRET = 'TOP-SECRET-OUTSIDE-STORAGE';

beforeAll(async () => {
  work = await tempDir();
  const key = await makeKey(work);
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
