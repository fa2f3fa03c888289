// The downloader's parts on their own: the piece plan (splits, undo, what the sidecar keeps),
// the ramp's decisions, the token bucket, the connection pool, the part file's in-order hash,
// and what counts as an outage.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionPool } from '../../src/download/connection-pool.js';
import { isOutage, NetworkWait } from '../../src/download/network-wait.js';
import { PartFile } from '../../src/download/part-file.js';
import { Ramp, DEFAULT_RAMP } from '../../src/download/ramp.js';
import { Plan, type Piece } from '../../src/download/segments.js';
import { TokenBucket } from '../../src/download/token-bucket.js';
import { ModelhubError } from '../../src/errors.js';

const MiB = 1024 * 1024;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'modelhub-dl-units-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Plan', () => {
  /** `p`'s owner reads a response that started at t = 1 ms with `p.recv` at `base`. */
  const streaming = (p: Piece, base = p.recv): void => {
    Object.assign(p, { respEnd: p.end, since: 1, base, idle: 1e9 }); // waiting for the network throughout
  };

  it('splits the piece with the most left in half, page-aligned, and never below twice the minimum', () => {
    const plan = Plan.whole(10 * MiB);
    const a = plan.take(1)!;
    streaming(a, 0);
    a.recv = MiB; // 1 MiB/s: 9 s to go
    const b = plan.split(2, MiB, 1001)!;
    expect(b.start % (64 * 1024)).toBe(0);
    expect(a.end).toBe(b.start);
    expect(b.end).toBe(10 * MiB);
    expect(b.start - a.recv).toBeGreaterThanOrEqual(4 * MiB);
    expect(plan.saved()).toEqual([
      [0, 0, b.start],
      [b.start, b.start, 10 * MiB],
    ]);
    // Not the new piece: how fast it goes is not known yet.
    const c = plan.split(3, MiB, 1001)!;
    expect(c.splitFrom).toBe(a);
    // Pieces with less than twice the minimum left are not split.
    expect(plan.split(4, 4 * MiB, 1001)).toBeNull();
  });

  it('steals from the piece that would finish last, never from one about to finish', () => {
    const plan = Plan.whole(64 * MiB);
    const a = plan.take(1)!;
    Object.assign(a, { respEnd: 64 * MiB, since: 1, base: 0, recv: 8 * MiB, idle: 900 }); // 8 MiB in 1 s, waiting for bytes
    const b = plan.split(2, MiB, 1001)!;
    expect(b.start).toBe(36 * MiB);
    // b is fast (28 MiB in 0.5 s: done in 0 s), a is slow (28 MiB left at 8 MiB/s: 3.5 s).
    Object.assign(b, { respEnd: 64 * MiB, since: 1001, base: 36 * MiB, recv: 64 * MiB - 2 * MiB, idle: 400 });
    expect(plan.stealable(MiB, 1501)).toBe(a);
    // Nor one whose connection is busy (this machine is the slow end: cutting it wastes its window).
    a.idle = 100;
    expect(plan.stealable(MiB, 1501)).toBeNull();
    // A piece that its own speed finishes within MIN_STEAL_MS is left alone.
    Object.assign(a, { recv: 36 * MiB - 4 * MiB, base: 0, since: 1, idle: 1400 }); // 32 MiB in 1.5 s: 4 MiB left, 0.19 s
    expect(plan.stealable(MiB, 1501)).toBeNull();
  });

  it('gives a split back while the piece it came from still reads a body covering it', () => {
    const plan = Plan.whole(8 * MiB);
    const a = plan.take(1)!;
    streaming(a);
    const b = plan.split(2, MiB, 1001)!;
    expect(plan.undoSplit(b)).toBe(true);
    expect(a.end).toBe(8 * MiB);
    expect(plan.saved()).toEqual([[0, 0, 8 * MiB]]);
    // Not once the new piece has bytes, or the old one's response ended.
    const c = plan.split(2, MiB, 1001)!;
    c.recv += 1;
    expect(plan.undoSplit(c)).toBe(false);
    const plan2 = Plan.whole(8 * MiB);
    const e = plan2.take(1)!;
    streaming(e);
    const d = plan2.split(2, MiB, 1001)!;
    e.respEnd = 0; // between responses
    expect(plan2.undoSplit(d)).toBe(false);
  });

  it('cuts what nobody fetches into pieces, keeping the written prefix with the first', () => {
    const plan = Plan.fromSaved(40 * MiB, [[0, 3 * MiB, 40 * MiB]])!;
    plan.cut(8 * MiB);
    const saved = plan.saved();
    expect(saved[0]).toEqual([0, 3 * MiB, 11 * MiB]);
    expect(saved.at(-1)![2]).toBe(40 * MiB);
    for (let i = 1; i < saved.length; i++) expect(saved[i]![0]).toBe(saved[i - 1]![2]);
    expect(saved.every(([s, , e]) => e - s >= 8 * MiB && e - s < 16 * MiB)).toBe(true);
    expect(plan.take(1)).toMatchObject({ start: 0, pos: 3 * MiB });
    expect(plan.take(2)).toMatchObject({ start: 11 * MiB }); // a piece of its own, nobody cut short
  });

  it('saves written ranges with complete pieces merged, and rejects inconsistent saved pieces', () => {
    const plan = Plan.fromSaved(100, [
      [0, 30, 30],
      [30, 50, 60],
      [60, 60, 100],
    ])!;
    expect(plan.written()).toBe(50);
    expect(plan.writtenRanges()).toEqual([
      [0, 30],
      [30, 50],
    ]);
    expect(plan.saved()).toEqual([
      [0, 50, 60],
      [60, 60, 100],
    ]);
    expect(plan.highestWritten()).toBe(50);
    expect(Plan.fromSaved(100, [[0, 10, 90]])).toBeNull(); // does not cover the file
    expect(Plan.fromSaved(100, [[0, 20, 10], [10, 10, 100]])).toBeNull(); // pos past end
    expect(Plan.fromSaved(100, [[5, 5, 100]])).toBeNull();
  });
});

describe('Ramp', () => {
  const o = { ...DEFAULT_RAMP, max: 8 };

  it('one connection that finishes soon gets no company', () => {
    const r = new Ramp(o, 0, 0);
    // 500 MB/s with 50 MB left: done in 0.1 s.
    expect(r.decide(250, 125e6, 50e6, 1, 1)).toBe(0);
  });

  it('grows ×4 while each step pays off, and stops at the first step that brings nothing', () => {
    const r = new Ramp(o, 0, 0);
    let t = 0;
    let got = 0;
    // A server capping each connection at 8 MB/s, 100 MB to go: 1 → 4 → 8.
    const steps: number[] = [];
    let conns = 1;
    for (let i = 0; i < 6; i++) {
      t += 250;
      got += 8e6 * conns * 0.25;
      const add = r.decide(t, got, 100e6 - got, conns, 1);
      steps.push(add);
      if (add > 0) {
        r.added(add);
        conns += add;
        for (let k = 0; k < add; k++) r.settled(t + 1, got);
      }
    }
    expect(conns).toBe(8);
    expect(steps.filter((s) => s > 0)).toEqual([3, 4]);

    // A link capped at 8 MB/s in total: the second connection brings nothing, the ramp stops.
    const r2 = new Ramp(o, 0, 0);
    expect(r2.decide(250, 2e6, 98e6, 1, 1)).toBe(3);
    r2.added(3);
    for (let k = 0; k < 3; k++) r2.settled(260, 2.08e6);
    expect(r2.decide(510, 2.08e6 + 2.08e6, 96e6, 4, 1)).toBe(0);
    expect(r2.decide(760, 6.2e6, 94e6, 4, 1)).toBe(0); // stays stopped while no window shows a gain
    // A window that does show it (the machine was busy for a moment) lets the ramp go on.
    expect(r2.decide(1010, 6.2e6 + 4e6, 90e6, 4, 1)).toBe(4);
  });

  it('no company for a connection that never waits for bytes: this machine, not the network, is the slow end', () => {
    const r = new Ramp(o, 0, 0);
    expect(r.decide(250, 2e6, 98e6, 1, 0.1)).toBe(0); // 12 s to go, but the bytes are always there already
    expect(r.decide(500, 4e6, 96e6, 1, 0.9)).toBe(3); // the same rate, waiting on the network
  });

  it('no company while this process is busy moving the bytes: a loopback hub starved of CPU, not the network', () => {
    const r = new Ramp(o, 0, 0);
    // Waiting for bytes most of the time, yet this process uses 90 % of a core: no second connection.
    expect(r.decide(250, 50e6, 350e6, 1, 0.8, 0.9)).toBe(0);
    expect(r.decide(500, 100e6, 300e6, 1, 0.8, 0.5)).toBe(0);
    // The same waiting at 2 % of a core (a capped connection): company.
    expect(r.decide(750, 102e6, 298e6, 1, 0.8, 0.02)).toBe(3);
  });

  it('waits for added connections to get bytes before judging them', () => {
    const r = new Ramp(o, 0, 0);
    expect(r.decide(250, 1e6, 99e6, 1, 1)).toBe(3);
    r.added(3);
    r.settled(400, 1.3e6);
    r.settled(450, 1.4e6);
    expect(r.decide(500, 1.5e6, 98e6, 4, 1)).toBe(0); // one of them has no byte yet
    r.settled(600, 1.6e6);
    expect(r.decide(900, 1.6e6 + 2.4e6, 96e6, 4, 1)).toBe(4);
  });
});

describe('TokenBucket', () => {
  it('holds the rate across takers after its burst', async () => {
    const bucket = new TokenBucket(4 * MiB, { burstBytes: 64 * 1024 });
    const chunk = 64 * 1024;
    const t0 = performance.now();
    await Promise.all(
      [0, 1].map(async () => {
        for (let i = 0; i < 16; i++) await bucket.take(chunk);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    // 2 MiB through a 4 MiB/s bucket: at least (2 MiB - burst) / rate; load can only slow it.
    expect(seconds).toBeGreaterThanOrEqual((2 * MiB - 64 * 1024) / (4 * MiB) - 0.02);
  });

  it('a waiting taker stops at an abort', async () => {
    const bucket = new TokenBucket(1024, { burstBytes: 1024 });
    const ac = new AbortController();
    const p = bucket.take(1024 * 1024, ac.signal); // a thousand seconds of debt
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
  });

  it('refuses a rate of zero', () => {
    expect(() => new TokenBucket(0)).toThrow(ModelhubError);
  });
});

describe('ConnectionPool', () => {
  it('always grants a first connection, extra ones only below the limit', () => {
    const pool = new ConnectionPool(2);
    const a = pool.first();
    const b = pool.extra();
    expect(b).not.toBeNull();
    expect(pool.extra()).toBeNull();
    const c = pool.first(); // a second download is never kept waiting for its only connection
    expect(pool.inUse).toBe(3);
    a();
    a(); // idempotent
    c();
    expect(pool.inUse).toBe(1);
    expect(pool.extra()).not.toBeNull();
  });
});

describe('PartFile', () => {
  it('hashes writes at the frontier from memory and reads back only what was written ahead of it', async () => {
    const data = randomBytes(5 * MiB + 3);
    const file = path.join(dir, 'out-of-order.part');
    const flushed: number[] = [];
    const part = await PartFile.open(file, (n) => flushed.push(n));
    const cut = 2 * MiB;
    // The second half first (ahead of the frontier), then the first half in order.
    await part.write(data.subarray(cut), cut);
    expect(flushed).toEqual([]); // nothing contiguous from byte 0 yet
    for (let pos = 0; pos < cut; pos += MiB) await part.write(data.subarray(pos, Math.min(cut, pos + MiB)), pos);
    const sha = await part.digest(data.length);
    expect(sha).toBe(createHash('sha256').update(data).digest('hex'));
    expect(part.readBack.bytes).toBe(data.length - cut);
    expect(flushed.at(-1)).toBe(data.length);
    expect(flushed).toEqual([...flushed].sort((a, b) => a - b));
    await part.close();
    expect((await readFile(file)).equals(data)).toBe(true);

    const inOrder = await PartFile.open(path.join(dir, 'in-order.part'), undefined);
    for (let pos = 0; pos < data.length; pos += MiB) await inOrder.write(data.subarray(pos, Math.min(data.length, pos + MiB)), pos);
    expect(await inOrder.digest(data.length)).toBe(sha);
    expect(inOrder.readBack.bytes).toBe(0);
    await inOrder.close();
  });

  it('a hole means no digest, and truncate starts the hash over', async () => {
    const part = await PartFile.open(path.join(dir, 'hole.part'), undefined);
    await part.write(Buffer.alloc(10, 1), 0);
    await part.write(Buffer.alloc(10, 2), 20);
    expect(await part.digest(30)).toBeNull();
    await part.truncate();
    await part.write(Buffer.alloc(5, 3), 0);
    expect(await part.digest(5)).toBe(createHash('sha256').update(Buffer.alloc(5, 3)).digest('hex'));
    await part.close();
  });
});

describe('outages', () => {
  it('tells a missing network from other failures', () => {
    expect(isOutage(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isOutage(new TypeError('fetch failed', { cause: Object.assign(new Error('getaddrinfo'), { code: 'ENOTFOUND' }) }))).toBe(true);
    expect(isOutage(new AggregateError([Object.assign(new Error('x'), { code: 'ENETUNREACH' })]))).toBe(true);
    expect(isOutage(new Error('net::ERR_INTERNET_DISCONNECTED'))).toBe(true);
    expect(isOutage(new TypeError('Invalid URL'))).toBe(false);
    expect(isOutage(Object.assign(new Error('max redirect'), { type: 'max-redirect' }))).toBe(false);
  });

  it('waits while the outage lasts less than the limit, then gives up with a retryable NETWORK_ERROR', async () => {
    let now = 0;
    const changes: boolean[] = [];
    const net = new NetworkWait({ url: 'u', maxWaitMs: 1000, probeDelayMs: () => 1, now: () => now, onChange: (w) => changes.push(w) });
    const signal = new AbortController().signal;
    await net.wait(new Error('refused'), 1, signal);
    now = 900;
    await net.wait(new Error('refused'), 2, signal);
    net.ok(); // it answered: the next outage is counted from its own start
    now = 1500;
    await net.wait(new Error('refused'), 1, signal);
    now = 2600;
    const err = await net.wait(new Error('refused'), 2, signal).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelhubError);
    expect(err).toMatchObject({ code: 'NETWORK_ERROR', retryable: true, details: { waitedMs: 1100 } });
    expect(changes).toEqual([true, false, true]);
    expect(net.totalWaitedMs()).toBe(900 + 1100);
  });
});
