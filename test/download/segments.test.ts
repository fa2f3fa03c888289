// The downloader over several connections, through the test proxy (per-connection rate caps,
// blackouts) in front of the scripted file server: segments open when a capped connection makes
// them pay off, a slow connection's work is stolen, a server ignoring Range falls back to one
// connection, every segment resumes from its own offset, outages are waited out, the bandwidth
// limit holds across downloads, the guard stops everything, a deleted part is fetched again.
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { downloadFile, type DownloadRequest } from '../../src/download/download.js';
import { TokenBucket } from '../../src/download/token-bucket.js';
import { ModelhubError } from '../../src/errors.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';
import { sha256, startHostileServer, type HostileServer } from './hostile-server.js';

const MiB = 1024 * 1024;
const BIG = randomBytes(24 * MiB + 4321);
const MID = randomBytes(12 * MiB + 77);
const SMALL = [randomBytes(3 * MiB), randomBytes(3 * MiB)] as const;

let server: HostileServer;
let proxy: Proxy;
let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'modelhub-segments-'));
  server = await startHostileServer({ 'storage/big': BIG, 'storage/mid': MID, 'storage/s0': SMALL[0], 'storage/s1': SMALL[1] });
  proxy = await startProxy(server.base);
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  server.reset();
  proxy.rate = 0;
  proxy.rates = [];
  proxy.log = [];
  proxy.bytes.clear();
  proxy.mode = { kind: 'none' };
});

function dest(): string {
  n += 1;
  return path.join(dir, `f${n}.bin`);
}

/** A request for `file` through the proxy; files over 1 MiB may use segments. */
function req(file: 'big' | 'mid' | 's0' | 's1', d: string, extra: Partial<DownloadRequest> = {}): DownloadRequest {
  const data = file === 'big' ? BIG : file === 'mid' ? MID : SMALL[file === 's0' ? 0 : 1];
  return {
    url: `${proxy.url}/storage/${file}`,
    dest: d,
    expectedSize: data.length,
    expectedSha256: sha256(data),
    backoffMs: () => 5,
    stallTimeoutMs: 30_000,
    segmentMinSize: MiB,
    ...extra,
  };
}

const served = (): number => [...proxy.bytes.values()].reduce((a, b) => a + b, 0);

async function expectFileIs(file: string, data: Buffer): Promise<void> {
  const got = await readFile(file);
  expect(got.length).toBe(data.length);
  expect(got.equals(data)).toBe(true);
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Meta {
  pieces?: [number, number, number][];
  ino?: string;
}
async function sidecar(d: string): Promise<Meta | null> {
  try {
    return JSON.parse(await readFile(`${d}.part.json`, 'utf8')) as Meta;
  } catch {
    return null;
  }
}

describe('segments', () => {
  it('a server capping each connection gets more connections: the file whole, ≤ 1.05× served, each range inside the file', async () => {
    proxy.rate = 3 * MiB;
    const d = dest();
    const r = await downloadFile(req('big', d));
    await expectFileIs(d, BIG);
    expect(r.connections).toBeGreaterThan(1);
    expect(served()).toBeLessThanOrEqual(1.05 * BIG.length);
    expect(r.bytesFetched).toBeLessThanOrEqual(1.05 * BIG.length);
    // Pieces finished out of order were read back to be hashed, and the cost is reported.
    expect(r.readBack.bytes).toBeGreaterThan(0);
    expect(r.readBack.bytes).toBeLessThan(BIG.length);
    expect(r.readBack.readMs + r.readBack.hashMs).toBeGreaterThan(0);
    // Cut into pieces from the start: every request asks for one piece, nobody is cut short.
    for (const e of proxy.log) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(e.range ?? '');
      expect(m, e.range).not.toBeNull();
      expect(Number(m![1])).toBeLessThan(BIG.length);
      if (m![2] !== '') expect(Number(m![2])).toBeLessThan(BIG.length);
      expect(e.status).toBe(206);
    }
    expect(await sidecar(d)).toBeNull();
  });

  it('work stealing: the free connection takes half of a slow one’s range, again and again', async () => {
    proxy.rates = [256 * 1024]; // only the first connection is slow
    const d = dest();
    const r = await downloadFile(req('big', d, { minSplitSize: 256 * 1024 }));
    await expectFileIs(d, BIG);
    expect(r.splits).toBeGreaterThanOrEqual(2);
    // Without stealing the slow connection would have had to send half the file.
    expect(proxy.log[0]!.bytes).toBeLessThan(BIG.length / 4);
    expect(served()).toBeLessThanOrEqual(1.05 * BIG.length);
  });

  it('a server that ignores Range (200 to a ranged request) falls back to one connection, using that answer', async () => {
    server.fallback = { kind: 'ignore-range' }; // and still says Accept-Ranges: bytes
    proxy.rate = 4 * MiB;
    const d = dest();
    let restarts = 0;
    const r = await downloadFile(req('mid', d, { onRestart: () => (restarts += 1) }));
    await expectFileIs(d, MID);
    expect(proxy.log).toHaveLength(1);
    expect(proxy.log[0]).toMatchObject({ range: expect.stringMatching(/^bytes=0-\d+$/) as unknown, status: 200 });
    expect(r.connections).toBe(1);
    expect(r.restartedFromZero).toBe(false); // nothing had been received: nothing thrown away
    expect(restarts).toBe(0);
    expect(served()).toBe(MID.length);
  });

  it('a server that stops answering ranges midway: the other connections stop, one takes the whole file from byte 0', async () => {
    server.plan = [{ kind: 'normal' }]; // the first piece as asked, then 200s with the whole file
    server.fallback = { kind: 'ignore-range' };
    proxy.rate = 2 * MiB;
    const d = dest();
    const r = await downloadFile(req('mid', d));
    await expectFileIs(d, MID);
    expect(proxy.log[0]?.status).toBe(206);
    expect(proxy.log.slice(1).every((e) => e.status === 200)).toBe(true);
    expect(r.connections).toBeGreaterThanOrEqual(2);
    expect(r.restartedFromZero).toBe(true);
    expect(proxy.log.filter((e) => e.bytes === MID.length)).toHaveLength(1); // one answer carried the file
  });

  it('stopped mid-way, every segment resumes from its own offset', async () => {
    proxy.rate = 2 * MiB;
    const d = dest();
    const ac = new AbortController();
    const first = downloadFile(req('big', d, { signal: ac.signal }));
    first.catch(() => undefined);
    // Several pieces with bytes on disk, as the sidecar says.
    await until('three pieces with bytes', async () => ((await sidecar(d))?.pieces ?? []).filter(([s, p]) => p > s).length >= 3);
    ac.abort(new Error('stop'));
    await expect(first).rejects.toThrow('stop');
    const saved = (await sidecar(d))!.pieces!;
    const open = saved.filter(([s, p, e]) => p > s && p < e);
    expect(open.length).toBeGreaterThanOrEqual(2);
    const written = saved.reduce((a, [s, p]) => a + (p - s), 0);
    const servedBefore = served();

    proxy.rate = 0;
    proxy.log = [];
    proxy.bytes.clear();
    const r = await downloadFile(req('big', d));
    await expectFileIs(d, BIG);
    expect(r.resumedFrom).toBe(written);
    const starts = proxy.log.map((e) => Number(/^bytes=(\d+)-/.exec(e.range ?? '')?.[1] ?? 0));
    for (const [, p] of open) expect(starts).toContain(p);
    expect(served()).toBeLessThanOrEqual(BIG.length - written + 64 * 1024);
    expect(servedBefore + served()).toBeLessThanOrEqual(1.1 * BIG.length);
  });

  it('resuming pieces from a server that now ignores Range starts over from zero in place', async () => {
    const d = dest();
    const part = Buffer.alloc(9 * MiB);
    BIG.copy(part, 0, 0, MiB);
    BIG.copy(part, 8 * MiB, 8 * MiB, 9 * MiB);
    await writeFile(`${d}.part`, part);
    const ino = (await stat(`${d}.part`, { bigint: true })).ino.toString();
    const pieces = [
      [0, MiB, 8 * MiB],
      [8 * MiB, 9 * MiB, BIG.length],
    ];
    await writeFile(`${d}.part.json`, JSON.stringify({ url: req('big', d).url, etag: server.etagOf('storage/big'), size: BIG.length, ino, pieces }));
    server.fallback = { kind: 'ignore-range' };
    let restarts = 0;
    const r = await downloadFile(req('big', d, { onRestart: () => (restarts += 1) }));
    await expectFileIs(d, BIG);
    expect(proxy.log.map((e) => [e.range, e.status])).toEqual([[`bytes=${MiB}-${8 * MiB - 1}`, 200]]);
    expect(r.restartedFromZero).toBe(true);
    expect(restarts).toBe(1);
  });

  it('saved pieces that do not fit the part (another inode) are not trusted', async () => {
    const d = dest();
    await writeFile(`${d}.part`, randomBytes(2 * MiB));
    await writeFile(`${d}.part.json`, JSON.stringify({ url: req('big', d).url, etag: null, size: BIG.length, ino: '1', pieces: [[0, 2 * MiB, BIG.length]] }));
    const r = await downloadFile(req('big', d));
    expect(r.restartedFromZero).toBe(true);
    expect(proxy.log[0]?.range).toMatch(/^bytes=0-/);
    await expectFileIs(d, BIG);
  });
});

describe('outages', () => {
  it.each(['reset', 'refuse'] as const)('a short blackout (%s) is waited out and the download resumes where it stopped, no attempt spent', async (how) => {
    proxy.rate = 4 * MiB;
    const d = dest();
    const waits: boolean[] = [];
    let dark = false;
    const r = await downloadFile(
      req('mid', d, {
        maxConnections: 1,
        maxAttempts: 2, // each refused probe spent as an attempt would fail it
        onNetworkWait: (w) => waits.push(w),
        onFlushed: (bytes) => {
          if (!dark && bytes >= 2 * MiB) {
            dark = true;
            proxy.blackout(1500, how);
          }
        },
      }),
    );
    await expectFileIs(d, MID);
    expect(waits[0]).toBe(true);
    expect(waits.at(-1)).toBe(false);
    expect(r.networkWaitMs).toBeGreaterThan(0);
    expect(r.restartedFromZero).toBe(false);
    expect(served()).toBeLessThanOrEqual(1.05 * MID.length);
    expect(proxy.log.length).toBeGreaterThanOrEqual(2);
  });

  it('a blackout longer than maxNetworkWaitMs fails with a retryable NETWORK_ERROR and keeps the part', async () => {
    proxy.rate = 4 * MiB;
    const d = dest();
    let dark = false;
    const e: unknown = await downloadFile(
      req('mid', d, {
        maxNetworkWaitMs: 800,
        probeDelayMs: () => 100,
        onFlushed: (bytes) => {
          if (!dark && bytes >= MiB) {
            dark = true;
            proxy.blackout(4000);
          }
        },
      }),
    ).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ModelhubError);
    expect(e).toMatchObject({ code: 'NETWORK_ERROR', retryable: true });
    expect((e as ModelhubError).details.waitedMs).toBeGreaterThanOrEqual(800);
    expect((await stat(`${d}.part`)).size).toBeGreaterThanOrEqual(MiB);
    await until('the blackout to end', () => !proxy.dark);
  });
});

describe('bandwidth limit, guard, deleted part', () => {
  it('one token bucket caps two downloads together', async () => {
    const limit = 2 * MiB;
    const bucket = new TokenBucket(limit);
    const t0 = performance.now();
    await Promise.all([downloadFile(req('s0', dest(), { bandwidth: bucket })), downloadFile(req('s1', dest(), { bandwidth: bucket }))]);
    const rate = (SMALL[0].length + SMALL[1].length) / ((performance.now() - t0) / 1000);
    // A busy machine can only make it slower; the cap itself allows the burst on top.
    expect(rate).toBeLessThanOrEqual(1.2 * limit);
    expect(rate).toBeGreaterThan(0.1 * limit);
  });

  it('a guard that throws stops the download with its error and nothing is written after', async () => {
    proxy.rate = 8 * MiB;
    const d = dest();
    const stop = new Error('lease lost');
    let calls = 0;
    const e = await downloadFile(
      req('mid', d, {
        guard: () => {
          calls += 1;
          if (calls > 3) throw stop;
        },
      }),
    ).catch((err: unknown) => err);
    expect(e).toBe(stop);
    const size = (await stat(`${d}.part`)).size;
    expect(existsSync(`${d}.part.json`)).toBe(true); // not cleaned up: another process may own it now
    await new Promise((r) => setTimeout(r, 300));
    expect((await stat(`${d}.part`)).size).toBe(size);
    expect(calls).toBe(4); // not called again after it threw

    // Before the final rename too: the complete part stays a part.
    const d2 = dest();
    const e2 = await downloadFile(
      req('s0', d2, {
        guard: () => {
          if (existsSync(`${d2}.part`) && statSizeSync(`${d2}.part`) === SMALL[0].length) throw stop;
        },
      }),
    ).catch((err: unknown) => err);
    expect(e2).toBe(stop);
    expect(existsSync(d2)).toBe(false);
    expect((await stat(`${d2}.part`)).size).toBe(SMALL[0].length);
  });

  it.each([
    ['one connection', 1],
    ['segments', 8],
  ] as const)('a .part deleted mid-download is fetched again (%s)', async (_name, maxConnections) => {
    proxy.rate = 4 * MiB;
    const d = dest();
    let deleted = false;
    let restarts = 0;
    const r = await downloadFile(
      req('mid', d, {
        maxConnections,
        onRestart: () => (restarts += 1),
        onFlushed: (bytes) => {
          if (!deleted && bytes >= 2 * MiB) {
            deleted = true;
            void unlink(`${d}.part`).then(() => (proxy.rate = 0));
          }
        },
      }),
    );
    await expectFileIs(d, MID);
    expect(deleted).toBe(true);
    expect(r.restartedFromZero).toBe(true);
    expect(restarts).toBeGreaterThanOrEqual(1);
    expect(served()).toBeGreaterThanOrEqual(MID.length + 2 * MiB);
  });
});

function statSizeSync(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return -1;
  }
}
