// Mirrors, then the hub (SPEC §12), at the downloader's level: two scripted servers on loopback
// (a mirror laid out like the storage folder, a hub with /storage/), and a refused port.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelhubError } from '../../src/errors.js';
import type { DownloadRequest } from '../../src/download/download.js';
import { BlobSources, downloadFromSources, mirrorsFromEnv, parseMirrors, servicePackagePath } from '../../src/download/sources.js';
import { refusedUrl } from '../helpers/static-mirror.js';
import { sha256, startHostileServer, type HostileServer } from './hostile-server.js';

const MiB = 1024 * 1024;
const SIZE = 3 * MiB + 4321;
const DATA = randomBytes(SIZE);
const SHA = sha256(DATA);
const BLOB = servicePackagePath('demo', '1.0.0', 'linux-x64');

let mirror: HostileServer;
let hub: HostileServer;
let dead: string;
let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'modelhub-sources-'));
  mirror = await startHostileServer({ [BLOB]: DATA });
  hub = await startHostileServer({ [`storage/${BLOB}`]: DATA });
  dead = await refusedUrl();
});
afterAll(async () => {
  await Promise.all([mirror.close(), hub.close()]);
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  mirror.reset();
  hub.reset();
});

function dest(): string {
  n += 1;
  return path.join(dir, `f${n}.bin`);
}

function req(d: string, extra: Partial<DownloadRequest> = {}): DownloadRequest {
  return { url: hub.url(`storage/${BLOB}`), dest: d, expectedSize: SIZE, expectedSha256: SHA, backoffMs: () => 5, stallTimeoutMs: 30_000, ...extra };
}

const mirrorBase = (): string => `${mirror.base}/`;

async function expectFileIs(file: string, data: Buffer): Promise<void> {
  const got = await readFile(file);
  expect(got.length).toBe(data.length);
  expect(got.equals(data)).toBe(true);
}

describe('mirror URLs', () => {
  it('takes http and https, normalised to end with /, first of duplicates kept', () => {
    expect(parseMirrors(['http://127.0.0.1:9/m', 'https://cdn.example.com/a/b/', 'http://127.0.0.1:9/m/'])).toEqual(['http://127.0.0.1:9/m/', 'https://cdn.example.com/a/b/']);
    expect(mirrorsFromEnv(' http://a/ ,, https://b/x ')).toEqual(['http://a/', 'https://b/x']);
    expect(mirrorsFromEnv(undefined)).toEqual([]);
  });

  it.each([
    ['ftp://mirror.example.com/', /http:\/\/ or https:\/\//],
    ['file:///srv/storage', /http:\/\/ or https:\/\//],
    ['not a url', /not a URL/],
    ['http://user:pw@mirror.example.com/', /credentials/],
    ['http://mirror.example.com/?sig=1', /query or fragment/],
  ])('refuses %s with INVALID_REQUEST', (url, why) => {
    let err: unknown;
    try {
      parseMirrors([url]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModelhubError);
    expect((err as ModelhubError).code).toBe('INVALID_REQUEST');
    expect((err as ModelhubError).message).toMatch(why);
  });

  it('orders the mirrors, then the hub, then mirrors that failed in this job', () => {
    const s = new BlobSources(['http://a/', 'http://b/']);
    const hubUrl = `http://hub:1/storage/${BLOB}`;
    expect(s.for(hubUrl, BLOB).map((x) => [x.kind, x.base, x.url])).toEqual([
      ['mirror', 'http://a/', `http://a/${BLOB}`],
      ['mirror', 'http://b/', `http://b/${BLOB}`],
      ['hub', 'http://hub:1', hubUrl],
    ]);
    s.demote(s.for(hubUrl, BLOB)[0]!);
    expect(s.for(hubUrl, BLOB).map((x) => x.base)).toEqual(['http://b/', 'http://hub:1', 'http://a/']);
  });
});

describe('downloadFromSources', () => {
  it('takes every byte from the first mirror; the hub serves none', async () => {
    const d = dest();
    const sources = new BlobSources([mirrorBase()]);
    const r = await downloadFromSources(req(d), sources, BLOB);
    await expectFileIs(d, DATA);
    expect(r.source).toEqual({ kind: 'mirror', url: mirrorBase() });
    expect(hub.requests).toHaveLength(0);
    expect(mirror.bytesSent()).toBe(SIZE);
    expect(sources.report()).toEqual([{ kind: 'mirror', url: mirrorBase(), bytes: SIZE, served: 1, failures: 0, last_error: null }]);
  });

  it('a mirror with a flipped byte: downloaded once, its bytes void (onRestart), the hub serves it from zero', async () => {
    const d = dest();
    mirror.fallback = { kind: 'flip', at: SIZE - 10 };
    let restarts = 0;
    const sources = new BlobSources([mirrorBase()]);
    const r = await downloadFromSources(req(d, { onRestart: () => (restarts += 1) }), sources, BLOB);
    await expectFileIs(d, DATA);
    expect(r.source).toEqual({ kind: 'hub', url: hub.base });
    expect(mirror.requests).toHaveLength(1); // no second try of a mirror's bad bytes
    expect(hub.requests.map((q) => q.range)).toEqual([undefined]);
    expect(restarts).toBeGreaterThanOrEqual(1);
    const [m, h] = sources.report();
    expect(m).toMatchObject({ kind: 'mirror', served: 0, failures: 1, last_error: { code: 'CHECKSUM_MISMATCH' } });
    expect(h).toMatchObject({ kind: 'hub', bytes: SIZE, served: 1, failures: 0 });
  });

  it('a mirror answering 404 or 503: the hub serves it', async () => {
    for (const status of [404, 503]) {
      mirror.reset();
      hub.reset();
      mirror.fallback = { kind: 'status', status };
      const d = dest();
      const sources = new BlobSources([mirrorBase()]);
      const r = await downloadFromSources(req(d), sources, BLOB);
      await expectFileIs(d, DATA);
      expect(r.source.kind).toBe('hub');
      expect(sources.report()[0]?.last_error?.code).toBe(status === 404 ? 'NOT_FOUND' : 'NETWORK_ERROR');
    }
  });

  it('a mirror answering 200 with a page of another length (a soft 404): nothing of it is written', async () => {
    const page = Buffer.from('<html><body>Not found</body></html>');
    const soft = http.createServer((q, s) => {
      s.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': String(page.length) });
      s.end(page);
    });
    await new Promise<void>((resolve) => soft.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(soft.address() as AddressInfo).port}/`;
      const d = dest();
      const sources = new BlobSources([base]);
      const r = await downloadFromSources(req(d), sources, BLOB);
      await expectFileIs(d, DATA);
      expect(r.source.kind).toBe('hub');
      expect(sources.report()[0]?.last_error?.message).toMatch(/Content-Length 35, the signed size is/);
      // The hub was asked from byte 0: the page never reached the part.
      expect(hub.requests.map((q) => q.range)).toEqual([undefined]);
      expect(r.restartedFromZero).toBe(false);
    } finally {
      await new Promise<void>((resolve) => soft.close(() => resolve()));
    }
  });

  it('a refused mirror is passed over at once: no wait for the network', async () => {
    const d = dest();
    const waits: boolean[] = [];
    const t0 = Date.now();
    const sources = new BlobSources([dead, mirrorBase()]);
    const r = await downloadFromSources(req(d, { onNetworkWait: (w) => waits.push(w) }), sources, BLOB);
    await expectFileIs(d, DATA);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(waits).toEqual([]);
    expect(r.source).toEqual({ kind: 'mirror', url: mirrorBase() });
    expect(sources.report()[0]).toMatchObject({ url: dead, failures: 1, last_error: { code: 'NETWORK_ERROR' } });
    // It did not answer while another source did: asked after the hub for the rest of the job.
    expect(sources.for(req(d).url, BLOB).map((s) => s.base)).toEqual([mirrorBase(), hub.base, dead]);
  });

  it('a mirror that breaks off mid-file: the hub resumes the part from there, without the mirror ETag', async () => {
    const d = dest();
    const N = MiB + 17;
    mirror.plan = [{ kind: 'truncate', after: N }];
    mirror.fallback = { kind: 'status', status: 503 };
    const sources = new BlobSources([mirrorBase()]);
    const r = await downloadFromSources(req(d), sources, BLOB);
    await expectFileIs(d, DATA);
    expect(r.source.kind).toBe('hub');
    expect(hub.requests).toHaveLength(1);
    expect(hub.requests[0]?.range).toBe(`bytes=${N}-`);
    // ETags are per server: another server's is never sent as If-Range.
    expect(hub.requests[0]?.ifRange).toBeUndefined();
    expect(hub.bytesSent()).toBe(SIZE - N);
  });

  it('a mirror that ignores Range while the part holds bytes is left; the part is not thrown away', async () => {
    const d = dest();
    const K = MiB;
    await writeFile(`${d}.part`, DATA.subarray(0, K));
    await writeFile(`${d}.part.json`, JSON.stringify({ url: req(d).url, etag: hub.etagOf(`storage/${BLOB}`), size: SIZE, sha256: SHA }));
    mirror.fallback = { kind: 'ignore-range' };
    const sources = new BlobSources([mirrorBase()]);
    const r = await downloadFromSources(req(d), sources, BLOB);
    await expectFileIs(d, DATA);
    expect(r.source.kind).toBe('hub');
    expect(r.resumedFrom).toBe(K);
    expect(mirror.requests[0]?.range).toBe(`bytes=${K}-`);
    expect(sources.report()[0]?.last_error?.message).toMatch(/ignores Range/);
    expect(hub.requests.map((q) => q.range)).toEqual([`bytes=${K}-`]);
    expect(hub.bytesSent()).toBe(SIZE - K);
  });

  it('every source bad: the hub error, naming what the mirrors did; the bad bytes are gone', async () => {
    const d = dest();
    mirror.fallback = { kind: 'flip', at: 5 };
    hub.fallback = { kind: 'flip', at: 6 };
    const sources = new BlobSources([mirrorBase()]);
    const err = await downloadFromSources(req(d), sources, BLOB).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelhubError);
    const e = err as ModelhubError;
    expect(e.code).toBe('CHECKSUM_MISMATCH');
    expect(e.message).toContain(mirrorBase());
    expect(e.details['sources']).toEqual([
      expect.objectContaining({ url: mirrorBase(), code: 'CHECKSUM_MISMATCH' }),
      expect.objectContaining({ url: hub.base, code: 'CHECKSUM_MISMATCH' }),
    ]);
    expect(hub.requests).toHaveLength(2); // the hub keeps its one refetch after a wrong hash
    expect(existsSync(`${d}.part`)).toBe(false);
  });

  it('no source answers: it waits for the network, and goes on when one answers', async () => {
    // A "hub" that comes up only after a while, on a port that refuses until then.
    const late = http.createServer((q, s) => {
      s.writeHead(200, { 'Content-Length': String(SIZE) });
      s.end(DATA);
    });
    const hubBase = await refusedUrl();
    const port = Number(new URL(hubBase).port);
    const d = dest();
    const waits: boolean[] = [];
    const sources = new BlobSources([dead]);
    setTimeout(() => late.listen(port, '127.0.0.1'), 1_500);
    try {
      const r = await downloadFromSources(req(d, { url: `${hubBase}storage/${BLOB}`, onNetworkWait: (w) => waits.push(w), probeDelayMs: () => 100 }), sources, BLOB);
      await expectFileIs(d, DATA);
      expect(r.source).toEqual({ kind: 'hub', url: hubBase.replace(/\/$/, '') });
      expect(waits).toEqual([true, false]);
    } finally {
      await new Promise<void>((resolve) => late.close(() => resolve()));
    }
  });

  it('no source answers for maxNetworkWaitMs: a retryable NETWORK_ERROR', async () => {
    const d = dest();
    const hubDead = await refusedUrl();
    const err = await downloadFromSources(req(d, { url: `${hubDead}storage/${BLOB}`, maxNetworkWaitMs: 600, probeDelayMs: () => 100 }), new BlobSources([dead]), BLOB).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelhubError);
    expect((err as ModelhubError).code).toBe('NETWORK_ERROR');
    expect((err as ModelhubError).retryable).toBe(true);
    expect((err as ModelhubError).details['outage']).toBe(true);
  });
});
