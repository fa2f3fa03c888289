// The downloader against a scripted hostile HTTP server, with real files in a temp dir.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelhubError } from '../../src/errors.js';
import { DISK_MARGIN_BYTES, downloadFile, type DownloadProgress, type DownloadRequest } from '../../src/download/download.js';
import type { FetchLike } from '../../src/download/fetch-like.js';
import { sha256, startHostileServer, type HostileServer } from './hostile-server.js';

const MiB = 1024 * 1024;
const SIZE = 5 * MiB + 12_345; // not a multiple of the write buffer
const DATA = randomBytes(SIZE);
const SHA = sha256(DATA);

let server: HostileServer;
let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'modelhub-download-'));
  server = await startHostileServer({ file: DATA, empty: Buffer.alloc(0) });
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  server.reset();
});

/** A fresh destination path for each test. */
function dest(): string {
  n += 1;
  return path.join(dir, `f${n}.bin`);
}

function progress(): { events: DownloadProgress[]; onProgress: (p: DownloadProgress) => void; assertSane: () => void } {
  const events: DownloadProgress[] = [];
  return {
    events,
    onProgress: (p) => events.push({ ...p }),
    assertSane() {
      for (let i = 1; i < events.length; i++) {
        const a = events[i - 1];
        const b = events[i];
        if (a === undefined || b === undefined) continue;
        expect(b.bytesDone).toBeLessThanOrEqual(b.bytesTotal);
        if (b.bytesDone < a.bytesDone) {
          // only a restart from 0 may go backwards, and it says so
          expect(b.bytesDone).toBe(0);
          expect(b.resumedFrom).toBe(0);
        }
      }
    },
  };
}

function req(d: string, extra: Partial<DownloadRequest> = {}): DownloadRequest {
  return {
    url: server.url(),
    dest: d,
    expectedSize: SIZE,
    expectedSha256: SHA,
    backoffMs: () => 5,
    // The default: a test that is not about stalls must not see one because the machine is busy
    // (server and client share this process; a pause of it looks like a silent server).
    stallTimeoutMs: 30_000,
    ...extra,
  };
}

/** The start offset each request asked for (0: no Range). */
function offsets(): number[] {
  return server.requests.map((q) => (q.range === undefined ? 0 : Number(/^bytes=(\d+)-$/.exec(q.range)?.[1] ?? NaN)));
}

/** Every request after the first resumed where the bytes before it ended: offsets never go back. */
function expectResumesOnly(): void {
  const o = offsets();
  expect(o[0]).toBe(0);
  for (let i = 1; i < o.length; i++) expect(o[i]!, `request ${i} of ${JSON.stringify(o)}`).toBeGreaterThanOrEqual(o[i - 1]!);
}

async function until(cond: () => boolean, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

async function expectCode(p: Promise<unknown>, code: string, retryable?: boolean): Promise<ModelhubError> {
  const err: unknown = await p.then(
    () => new Error('expected a rejection'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelhubError);
  const me = err as ModelhubError;
  expect(me.code).toBe(code);
  if (retryable !== undefined) expect(me.retryable).toBe(retryable);
  return me;
}

async function expectFileIs(file: string, data: Buffer): Promise<void> {
  const got = await readFile(file);
  expect(got.length).toBe(data.length);
  expect(got.equals(data)).toBe(true);
}

function partFiles(d: string): { part: boolean; meta: boolean } {
  return { part: existsSync(`${d}.part`), meta: existsSync(`${d}.part.json`) };
}

const globalFetch: FetchLike = (url, init) => fetch(url, init);

describe('downloadFile: happy paths', () => {
  it('downloads a fresh file, streams progress, leaves no part files', async () => {
    const d = dest();
    const pr = progress();
    const r = await downloadFile(req(d, { onProgress: pr.onProgress }));
    expect(r).toEqual({
      path: path.resolve(d),
      size: SIZE,
      sha256: SHA,
      resumedFrom: 0,
      attempts: 1,
      stalls: 0,
      restartedFromZero: false,
      bytesFetched: SIZE,
      // A file this small is never split: one connection, hashed in order, nothing read back.
      connections: 1,
      splits: 0,
      readBack: { bytes: 0, readMs: 0, hashMs: 0 },
      networkWaitMs: 0,
    });
    await expectFileIs(d, DATA);
    expect(partFiles(d)).toEqual({ part: false, meta: false });
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]?.range).toBeUndefined();
    expect(server.bytesSent()).toBe(SIZE);
    pr.assertSane();
    expect(pr.events.length).toBeGreaterThan(2);
    expect(pr.events.at(-1)).toEqual({ bytesDone: SIZE, bytesTotal: SIZE, resumedFrom: 0 });
  });

  it('is idempotent: a complete, correct dest returns at once', async () => {
    const d = dest();
    await downloadFile(req(d));
    server.reset();
    const r = await downloadFile(req(d));
    expect(r.bytesFetched).toBe(0);
    expect(r.attempts).toBe(0);
    expect(server.requests).toHaveLength(0);
    await expectFileIs(d, DATA);
  });

  it('replaces a dest of the right size but wrong content, and one of the wrong size', async () => {
    const d1 = dest();
    await writeFile(d1, randomBytes(SIZE));
    const r1 = await downloadFile(req(d1));
    expect(r1.bytesFetched).toBe(SIZE);
    await expectFileIs(d1, DATA);

    const d2 = dest();
    await writeFile(d2, DATA.subarray(0, 1000));
    const r2 = await downloadFile(req(d2));
    expect(r2.bytesFetched).toBe(SIZE);
    await expectFileIs(d2, DATA);
  });

  it('downloads an empty file', async () => {
    const d = dest();
    const r = await downloadFile(req(d, { url: server.url('empty'), expectedSize: 0, expectedSha256: sha256(Buffer.alloc(0)) }));
    expect(r.size).toBe(0);
    expect((await stat(d)).size).toBe(0);
  });

  it('queues concurrent calls for one dest: one fetch, both succeed', async () => {
    const d = dest();
    const [a, b] = await Promise.all([downloadFile(req(d)), downloadFile(req(d))]);
    expect(server.requests).toHaveLength(1);
    expect(a.bytesFetched + b.bytesFetched).toBe(SIZE);
    await expectFileIs(d, DATA);
  });

  it('works with an injected FetchLike built on global fetch (fresh, resume, truncation)', async () => {
    const d = dest();
    const r = await downloadFile(req(d, { fetch: globalFetch }));
    expect(r.bytesFetched).toBe(SIZE);
    await expectFileIs(d, DATA);

    const d2 = dest();
    const K = 2 * MiB + 3;
    await writeFile(`${d2}.part`, DATA.subarray(0, K));
    server.reset();
    server.plan = [{ kind: 'truncate', after: MiB }];
    const r2 = await downloadFile(req(d2, { fetch: globalFetch }));
    expect(r2.resumedFrom).toBe(K);
    expect(server.requests.map((q) => q.range)).toEqual([`bytes=${K}-`, `bytes=${K + MiB}-`]);
    expect(server.bytesSent()).toBe(SIZE - K);
    expect(r2.bytesFetched).toBe(SIZE - K);
    await expectFileIs(d2, DATA);
  });
});

describe('downloadFile: resume', () => {
  it('resumes a truncated .part without a sidecar: Range, no If-Range, only the missing bytes fetched', async () => {
    const d = dest();
    const K = 3 * MiB + 77;
    await writeFile(`${d}.part`, DATA.subarray(0, K));
    const pr = progress();
    const r = await downloadFile(req(d, { onProgress: pr.onProgress }));
    expect(r.resumedFrom).toBe(K);
    expect(r.bytesFetched).toBe(SIZE - K);
    expect(r.restartedFromZero).toBe(false);
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]?.range).toBe(`bytes=${K}-`);
    expect(server.requests[0]?.ifRange).toBeUndefined();
    expect(server.requests[0]?.status).toBe(206);
    expect(server.bytesSent()).toBe(SIZE - K);
    await expectFileIs(d, DATA);
    pr.assertSane();
    expect(pr.events[0]?.bytesDone).toBe(K);
    expect(pr.events.every((e) => e.resumedFrom === K)).toBe(true);
  });

  it('sends If-Range with the sidecar ETag for the same URL', async () => {
    const d = dest();
    const K = MiB;
    await writeFile(`${d}.part`, DATA.subarray(0, K));
    await writeFile(`${d}.part.json`, JSON.stringify({ url: server.url(), etag: server.etagOf(), size: SIZE }));
    const r = await downloadFile(req(d));
    expect(server.requests[0]?.ifRange).toBe(server.etagOf());
    expect(server.requests[0]?.status).toBe(206);
    expect(r.bytesFetched).toBe(SIZE - K);
    expect(partFiles(d)).toEqual({ part: false, meta: false });
    await expectFileIs(d, DATA);
  });

  it('writes the sidecar when a response starts, and a later call resumes with it', async () => {
    const d = dest();
    const N = 2 * MiB + 11;
    server.plan = [{ kind: 'truncate', after: N }];
    const first = await expectCode(downloadFile(req(d, { maxAttempts: 1 })), 'NETWORK_ERROR', true);
    expect(first.message).toMatch(/ended early|connection lost/i);
    expect((await stat(`${d}.part`)).size).toBe(N);
    const meta = JSON.parse(await readFile(`${d}.part.json`, 'utf8')) as { url: string; etag: string; size: number; sha256: string };
    expect(meta).toEqual({ url: server.url(), etag: server.etagOf(), size: SIZE, sha256: SHA });

    const r = await downloadFile(req(d));
    expect(r.resumedFrom).toBe(N);
    expect(server.requests[1]?.range).toBe(`bytes=${N}-`);
    expect(server.requests[1]?.ifRange).toBe(server.etagOf());
    expect(server.bytesSent()).toBe(SIZE);
    await expectFileIs(d, DATA);
  });

  it('restarts from 0 when the file changed on the server (If-Range → 200)', async () => {
    const d = dest();
    const old = randomBytes(SIZE);
    await writeFile(`${d}.part`, old.subarray(0, 2 * MiB));
    await writeFile(`${d}.part.json`, JSON.stringify({ url: server.url(), etag: '"old-version"', size: SIZE }));
    const pr = progress();
    const r = await downloadFile(req(d, { onProgress: pr.onProgress }));
    expect(server.requests[0]?.ifRange).toBe('"old-version"');
    expect(server.requests[0]?.status).toBe(200);
    expect(r.restartedFromZero).toBe(true);
    expect(r.resumedFrom).toBe(0);
    await expectFileIs(d, DATA);
    pr.assertSane();
  });

  it('restarts from 0 when a server ignoring If-Range answers 206 for another ETag', async () => {
    const d = dest();
    const newer = randomBytes(SIZE);
    server.setFile('changing', newer);
    await writeFile(`${d}.part`, DATA.subarray(0, 2 * MiB));
    await writeFile(`${d}.part.json`, JSON.stringify({ url: server.url('changing'), etag: server.etagOf(), size: SIZE }));
    server.plan = [{ kind: 'ignore-if-range' }];
    const r = await downloadFile(req(d, { url: server.url('changing'), expectedSha256: sha256(newer) }));
    expect(server.requests.map((q) => [q.range, q.status])).toEqual([
      [`bytes=${2 * MiB}-`, 206],
      [undefined, 200],
    ]);
    expect(r.restartedFromZero).toBe(true);
    await expectFileIs(d, newer);
  });

  it('truncates a .part whose sidecar names another URL', async () => {
    const d = dest();
    await writeFile(`${d}.part`, randomBytes(MiB));
    await writeFile(`${d}.part.json`, JSON.stringify({ url: server.url('other'), etag: server.etagOf(), size: SIZE }));
    const r = await downloadFile(req(d));
    expect(server.requests[0]?.range).toBeUndefined();
    expect(r.restartedFromZero).toBe(true);
    expect(r.resumedFrom).toBe(0);
    await expectFileIs(d, DATA);
  });

  it('truncates a .part larger than the expected size', async () => {
    const d = dest();
    await writeFile(`${d}.part`, Buffer.concat([DATA, Buffer.from('junk')]));
    const r = await downloadFile(req(d));
    expect(server.requests[0]?.range).toBeUndefined();
    expect(r.restartedFromZero).toBe(true);
    await expectFileIs(d, DATA);
  });

  it('verifies a .part that is already complete without fetching', async () => {
    const d = dest();
    await writeFile(`${d}.part`, DATA);
    const r = await downloadFile(req(d));
    expect(server.requests).toHaveLength(0);
    expect(r.bytesFetched).toBe(0);
    await expectFileIs(d, DATA);
  });

  it('retries a body truncated mid-stream, resuming exactly where the server stopped', async () => {
    const d = dest();
    const N = 3 * MiB + 123;
    server.plan = [{ kind: 'truncate', after: N }];
    const pr = progress();
    const r = await downloadFile(req(d, { onProgress: pr.onProgress }));
    expect(r.attempts).toBe(2);
    expect(server.requests.map((q) => q.range)).toEqual([undefined, `bytes=${N}-`]);
    expect(server.requests[0]?.bytesSent).toBe(N);
    expect(server.bytesSent()).toBe(SIZE);
    expect(r.bytesFetched).toBe(SIZE);
    expect(r.restartedFromZero).toBe(false);
    await expectFileIs(d, DATA);
    pr.assertSane();
    // no reset at all in this sequence
    expect(pr.events.every((e, i) => i === 0 || e.bytesDone >= (pr.events[i - 1]?.bytesDone ?? 0))).toBe(true);
  });
});

describe('downloadFile: misbehaving servers', () => {
  it('a 200 to a ranged request restarts from 0 and never appends', async () => {
    const d = dest();
    const K = 2 * MiB;
    await writeFile(`${d}.part`, DATA.subarray(0, K));
    await writeFile(`${d}.part.json`, JSON.stringify({ url: server.url(), etag: server.etagOf(), size: SIZE }));
    server.plan = [{ kind: 'ignore-range' }];
    const pr = progress();
    const r = await downloadFile(req(d, { onProgress: pr.onProgress }));
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]?.range).toBe(`bytes=${K}-`);
    expect(server.requests[0]?.status).toBe(200);
    expect(r.restartedFromZero).toBe(true);
    expect(r.resumedFrom).toBe(0);
    expect(r.bytesFetched).toBe(SIZE);
    await expectFileIs(d, DATA); // exactly SIZE bytes: nothing appended to the old prefix
    pr.assertSane();
    expect(pr.events[0]).toEqual({ bytesDone: K, bytesTotal: SIZE, resumedFrom: K });
    expect(pr.events.some((e) => e.bytesDone === 0 && e.resumedFrom === 0)).toBe(true);
  });

  it.each(['start', 'total'] as const)('a 206 with a wrong Content-Range %s restarts from 0 on the next attempt', async (field) => {
    const d = dest();
    await writeFile(`${d}.part`, DATA.subarray(0, MiB));
    server.plan = [{ kind: 'wrong-content-range', field }];
    const pr = progress();
    const r = await downloadFile(req(d, { onProgress: pr.onProgress }));
    expect(server.requests.map((q) => q.range)).toEqual([`bytes=${MiB}-`, undefined]);
    expect(r.restartedFromZero).toBe(true);
    expect(r.attempts).toBe(2);
    await expectFileIs(d, DATA);
    pr.assertSane();
  });

  it('a 416 on an incomplete part truncates and restarts', async () => {
    const d = dest();
    await writeFile(`${d}.part`, DATA.subarray(0, MiB));
    server.plan = [{ kind: 'status', status: 416 }];
    const r = await downloadFile(req(d));
    expect(server.requests.map((q) => q.range)).toEqual([`bytes=${MiB}-`, undefined]);
    expect(r.restartedFromZero).toBe(true);
    await expectFileIs(d, DATA);
  });

  it('404 → NOT_FOUND, not retried', async () => {
    const d = dest();
    await expectCode(downloadFile(req(d, { url: server.url('missing') })), 'NOT_FOUND', false);
    expect(server.requests).toHaveLength(1);
    expect(existsSync(d)).toBe(false);
  });

  it('other 4xx → NETWORK_ERROR, not retryable, not retried', async () => {
    const d = dest();
    server.fallback = { kind: 'status', status: 403 };
    await expectCode(downloadFile(req(d)), 'NETWORK_ERROR', false);
    expect(server.requests).toHaveLength(1);
  });

  it('500 then OK: retried with back-off and succeeds', async () => {
    const d = dest();
    server.plan = [{ kind: 'status', status: 500 }];
    const delays: number[] = [];
    const r = await downloadFile(
      req(d, {
        backoffMs: (a) => {
          delays.push(a);
          return 5;
        },
      }),
    );
    expect(r.attempts).toBe(2);
    expect(delays).toEqual([1]);
    await expectFileIs(d, DATA);
  });

  it('5xx every time: gives up after maxAttempts with a retryable NETWORK_ERROR', async () => {
    const d = dest();
    server.fallback = { kind: 'status', status: 503 };
    const e = await expectCode(downloadFile(req(d, { maxAttempts: 3 })), 'NETWORK_ERROR', true);
    expect(server.requests).toHaveLength(3);
    expect(e.details['status']).toBe(503);
  });

  it('connection refused is an outage: waited out, not an attempt; past maxNetworkWaitMs a retryable NETWORK_ERROR', async () => {
    const s = http.createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    const d = dest();
    const waits: boolean[] = [];
    const probes: number[] = [];
    const e = await expectCode(
      downloadFile(
        req(d, {
          url: `http://127.0.0.1:${port}/file`,
          maxAttempts: 1, // an attempt spent on a refusal would fail at once, with no wait
          maxNetworkWaitMs: 400,
          probeDelayMs: (n) => {
            probes.push(n);
            return 50;
          },
          onNetworkWait: (w) => waits.push(w),
        }),
      ),
      'NETWORK_ERROR',
      true,
    );
    expect(e.details.waitedMs).toBeGreaterThanOrEqual(400);
    expect(e.message).toMatch(/no network/);
    expect(waits).toEqual([true]);
    expect(probes.length).toBeGreaterThanOrEqual(2); // probed again and again, with the back-off asked for
    expect(probes.slice(0, 2)).toEqual([1, 2]);
  });

  it('a flipped byte → downloaded once more from zero; flipped again → CHECKSUM_MISMATCH, .part and sidecar deleted, no dest', async () => {
    const d = dest();
    server.plan = [{ kind: 'flip', at: 4 * MiB + 1 }];
    let restarts = 0;
    const r = await downloadFile(req(d, { onRestart: () => (restarts += 1) }));
    expect(r.restartedFromZero).toBe(true);
    expect(r.resumedFrom).toBe(0);
    expect(restarts).toBe(1); // a reader following the part is told its bytes are void
    expect(server.requests.map((q) => q.range)).toEqual([undefined, undefined]); // the second time from zero
    expect(server.bytesSent()).toBe(2 * SIZE);
    await expectFileIs(d, DATA);

    server.reset();
    const d2 = dest();
    server.plan = [
      { kind: 'flip', at: 7 },
      { kind: 'flip', at: SIZE - 1 },
    ];
    const e = await expectCode(downloadFile(req(d2)), 'CHECKSUM_MISMATCH', false);
    expect(e.message).toMatch(/downloaded 2 times/);
    expect(server.requests).toHaveLength(2);
    expect(partFiles(d2)).toEqual({ part: false, meta: false });
    expect(existsSync(d2)).toBe(false);
  });

  it('a torn .part (its bytes claimed but wrong, as after a power cut) costs one download from zero', async () => {
    const d = dest();
    const torn = Buffer.from(DATA.subarray(0, 3 * MiB));
    torn.fill(0, MiB, 2 * MiB); // pages that never reached the disk
    await writeFile(`${d}.part`, torn);
    const r = await downloadFile(req(d));
    expect(server.requests.map((q) => q.range)).toEqual([`bytes=${3 * MiB}-`, undefined]);
    expect(r.restartedFromZero).toBe(true);
    await expectFileIs(d, DATA);
  });

  it('extra bytes with an honest Content-Length → SIZE_EXCEEDED before reading, .part deleted', async () => {
    const d = dest();
    server.plan = [{ kind: 'extra', extra: 10, contentLength: true }];
    const pr = progress();
    await expectCode(downloadFile(req(d, { onProgress: pr.onProgress })), 'SIZE_EXCEEDED', false);
    expect(pr.events.filter((e) => e.bytesDone > 0)).toHaveLength(0); // nothing was read
    expect(partFiles(d)).toEqual({ part: false, meta: false });
    expect(server.requests).toHaveLength(1);
  });

  it('extra bytes without a Content-Length → SIZE_EXCEEDED while streaming, .part deleted', async () => {
    const d = dest();
    server.plan = [{ kind: 'extra', extra: 1, contentLength: false }];
    const pr = progress();
    await expectCode(downloadFile(req(d, { onProgress: pr.onProgress })), 'SIZE_EXCEEDED', false);
    expect(Math.max(...pr.events.map((e) => e.bytesDone))).toBeLessThanOrEqual(SIZE);
    expect(partFiles(d)).toEqual({ part: false, meta: false });
    expect(existsSync(d)).toBe(false);
  });

  it('an endless body is cut off at the signed size', async () => {
    const d = dest();
    server.plan = [{ kind: 'endless' }];
    // An endless body read to its end would never settle: settling at all is the cut-off.
    await expectCode(downloadFile(req(d)), 'SIZE_EXCEEDED', false);
    // The client hung up: the server sees the connection close and stops pushing, having pushed
    // no more than fits in socket buffers past the cut-off.
    expect(await until(() => server.requests[0]?.closed === true)).toBe(true);
    expect(server.bytesSent()).toBeLessThan(SIZE + 32 * MiB);
    expect(partFiles(d)).toEqual({ part: false, meta: false });
  });
});

describe('downloadFile: stalls and aborts', () => {
  it.each([
    ['node-fetch', undefined],
    ['global fetch', globalFetch],
  ] as const)('a stall mid-body is retried without spending an attempt (%s)', async (_name, f) => {
    const d = dest();
    const N = MiB + 5;
    server.plan = [{ kind: 'stall', after: N }];
    const pr = progress();
    const t0 = Date.now();
    const r = await downloadFile(req(d, { stallTimeoutMs: 500, maxAttempts: 1, onProgress: pr.onProgress, ...(f ? { fetch: f } : {}) }));
    // The scripted stall was detected by the 500 ms timeout (the default would take 30 s) …
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.stalls).toBeGreaterThanOrEqual(1);
    // … and only stalls made new requests: with maxAttempts 1, any spent attempt would have
    // failed the download. (A busy machine may add a stall of its own; that changes nothing.)
    expect(r.attempts).toBe(r.stalls + 1);
    expect(server.requests).toHaveLength(r.attempts);
    expect(server.requests[0]?.bytesSent).toBe(N);
    // Each retry resumed after the bytes already received: none fetched twice, none lost.
    expectResumesOnly();
    expect(offsets()[1]).toBeLessThanOrEqual(N);
    expect(r.restartedFromZero).toBe(false);
    expect(r.bytesFetched).toBe(SIZE);
    await expectFileIs(d, DATA);
    pr.assertSane();
  });

  it('a server that never sends headers counts as a stall', async () => {
    const d = dest();
    server.plan = [{ kind: 'no-headers' }];
    const r = await downloadFile(req(d, { stallTimeoutMs: 500, maxAttempts: 1 }));
    expect(r.stalls).toBeGreaterThanOrEqual(1);
    expect(r.attempts).toBe(r.stalls + 1); // with maxAttempts 1: no attempt was spent on it
    expect(server.requests[0]?.behaviour).toBe('no-headers');
    expect(server.requests[0]?.status).toBe(0); // it never answered
    expect(r.bytesFetched).toBe(SIZE);
    await expectFileIs(d, DATA);
  });

  it('too many stalls → retryable NETWORK_ERROR, .part kept', async () => {
    const d = dest();
    server.plan = [
      { kind: 'stall', after: 1000 },
      { kind: 'stall', after: 1000 },
      { kind: 'stall', after: 1000 },
    ];
    const e = await expectCode(downloadFile(req(d, { stallTimeoutMs: 500, maxStalls: 2 })), 'NETWORK_ERROR', true);
    // Three requests, each ending in a stall: the third is one more than maxStalls allows.
    expect(server.requests).toHaveLength(3);
    expect(e.details.stalls).toBe(3);
    // The part keeps every byte received (each stalled response sent 1000), resumable as is.
    const at = e.details.at as number;
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThanOrEqual(3000);
    expect(await readFile(`${d}.part`)).toEqual(DATA.subarray(0, at));
    expectResumesOnly();
  });

  it('abort via signal stops promptly, keeps .part, rejects with the reason; a later call resumes', async () => {
    const d = dest();
    const N = 2 * MiB + 999;
    server.plan = [{ kind: 'stall', after: N }];
    const ac = new AbortController();
    const reason = new Error('user cancelled');
    let abortedAt = 0;
    const p = downloadFile(
      req(d, {
        signal: ac.signal,
        stallTimeoutMs: 60_000,
        onProgress: (e) => {
          if (e.bytesDone >= N && abortedAt === 0) {
            abortedAt = Date.now();
            setTimeout(() => ac.abort(reason), 20);
          }
        },
      }),
    );
    await expect(p).rejects.toBe(reason);
    // Promptly: at the abort, not when the 60 s stall timeout would have ended the attempt.
    expect(Date.now() - abortedAt).toBeLessThan(20_000);
    expect((await stat(`${d}.part`)).size).toBe(N);
    expect(existsSync(`${d}.part.json`)).toBe(true);

    const r = await downloadFile(req(d));
    expect(r.resumedFrom).toBe(N);
    expect(server.requests[1]?.range).toBe(`bytes=${N}-`);
    expect(server.requests[1]?.ifRange).toBe(server.etagOf());
    expect(server.bytesSent()).toBe(SIZE);
    await expectFileIs(d, DATA);
  });

  it('abort during back-off is prompt; an already-aborted signal fetches nothing', async () => {
    const d = dest();
    server.fallback = { kind: 'status', status: 500 };
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 100);
    const err: unknown = await downloadFile(req(d, { signal: ac.signal, backoffMs: () => 60_000 })).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    // Promptly: at the abort, not after the 60 s back-off.
    expect(Date.now() - t0).toBeLessThan(20_000);

    server.reset();
    const ac2 = new AbortController();
    ac2.abort();
    await expect(downloadFile(req(dest(), { signal: ac2.signal }))).rejects.toBeTruthy();
    expect(server.requests).toHaveLength(0);
  });
});

describe('downloadFile: arguments', () => {
  it('rejects a bad request with INVALID_REQUEST before touching anything', async () => {
    await expectCode(downloadFile(req(dest(), { expectedSha256: 'abc' })), 'INVALID_REQUEST', false);
    await expectCode(downloadFile(req(dest(), { expectedSize: -1 })), 'INVALID_REQUEST', false);
    await expectCode(downloadFile(req(dest(), { maxAttempts: 0 })), 'INVALID_REQUEST', false);
    expect(server.requests).toHaveLength(0);
  });

  it('accepts an upper-case hash', async () => {
    const d = dest();
    const r = await downloadFile(req(d, { expectedSha256: SHA.toUpperCase() }));
    expect(r.sha256).toBe(SHA);
  });
});

describe('downloadFile: disk space', () => {
  it('INSUFFICIENT_DISK (retryable) when free space < remaining + margin, before any request', async () => {
    const d = dest();
    const seen: string[] = [];
    await expectCode(
      downloadFile(
        req(d, {
          freeBytes: async (p) => {
            seen.push(p);
            return SIZE + DISK_MARGIN_BYTES - 1;
          },
        }),
      ),
      'INSUFFICIENT_DISK',
      true,
    );
    expect(seen).toEqual([path.dirname(path.resolve(d))]);
    expect(server.requests).toHaveLength(0);
  });

  it('counts only the remaining bytes when resuming', async () => {
    const d = dest();
    const K = 2 * MiB;
    await writeFile(`${d}.part`, DATA.subarray(0, K));
    const r = await downloadFile(req(d, { freeBytes: async () => SIZE - K + DISK_MARGIN_BYTES }));
    expect(r.resumedFrom).toBe(K);
    await expectFileIs(d, DATA);
  });
});
