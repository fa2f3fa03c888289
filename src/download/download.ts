// The engine's downloader: one file, resumable, with the signed size enforced while streaming
// and the signed SHA-256 computed while the bytes arrive (no second full read of the file).
//
// On disk, next to `dest`:
//   `${dest}.part`       the bytes received so far
//   `${dest}.part.json`  sidecar (sidecar.ts): which URL/ETag/signed size the bytes belong to,
//                        and for a download in segments, which ranges are there
// Only a verified file is ever renamed to `dest`.
//
// Big files from a server that answers ranges are fetched over several connections once that
// pays off (transfer.ts, ramp.ts, segments.ts); an outage waits for the network
// (network-wait.ts); a finished file whose hash is wrong is fetched once more from zero, and so
// is one whose `.part` was deleted meanwhile.
import { mkdir, rename, rm, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { fsyncDir } from '../fs/durable.js';
import { abortable, sleep, throwIfAborted } from './abort.js';
import { newStats, type Config, type DownloadProgress, type Stats } from './config.js';
import type { ConnectionPool } from './connection-pool.js';
import { isErrno, PartLost } from './errors.js';
import { defaultFetch, type FetchLike } from './fetch-like.js';
import { DEFAULT_MAX_NETWORK_WAIT_MS, defaultProbeDelayMs } from './network-wait.js';
import { hashFile, resumePoint } from './resume.js';
import type { TokenBucket } from './token-bucket.js';
import { Transfer } from './transfer.js';

export type { DownloadProgress };

export interface DownloadRequest {
  url: string;
  /** Final file; bytes go to `${dest}.part`, metadata to `${dest}.part.json`. */
  dest: string;
  /** Signed size: enforced while streaming. */
  expectedSize: number;
  /** Signed SHA-256 (hex): computed while streaming. A mismatch costs one more download from zero, then CHECKSUM_MISMATCH. */
  expectedSha256: string;
  /** Default `defaultFetch()` (node-fetch). */
  fetch?: FetchLike;
  signal?: AbortSignal;
  /**
   * No bytes for this long → abort the attempt and retry (not counted as an attempt). Default
   * 30 s. No answer at all (not even headers) for this long is an outage (maxNetworkWaitMs).
   */
  stallTimeoutMs?: number;
  /** Failed attempts allowed per connection (HTTP errors, truncated bodies, bad ranges). Default 3. */
  maxAttempts?: number;
  /** Stalls of a started body allowed before giving up with a retryable NETWORK_ERROR. Default 10. */
  maxStalls?: number;
  /** Delay before retry number `attempt` (1-based). Default 500 ms · 2^(attempt-1), capped at 8 s, ±25 % jitter. */
  backoffMs?: (attempt: number) => number;
  /**
   * A continuous outage (no HTTP answer at all: refused, reset, DNS, unreachable, no answer
   * within stallTimeoutMs) this long fails the download with a retryable NETWORK_ERROR; shorter
   * ones are waited out. Default 30 min.
   */
  maxNetworkWaitMs?: number;
  /** Delay before the `probe`-th request of an outage. Default 250 ms · 2^(probe-1), capped at 2 s. */
  probeDelayMs?: (probe: number) => number;
  /** Connections for this file at most (segments); 1 never splits. Default 8. */
  maxConnections?: number;
  /** Only files bigger than this are fetched in segments. Default 32 MiB. */
  segmentMinSize?: number;
  /** A piece is split only when each half gets at least this many bytes. Default 1 MiB. */
  minSplitSize?: number;
  /** Shared bandwidth limit (one per engine). */
  bandwidth?: TokenBucket;
  /** Shared connection limit (one per engine): extra connections only while it has room. */
  connectionPool?: ConnectionPool;
  /** Called per chunk received. See DownloadProgress for the ordering guarantee. */
  onProgress?: (p: DownloadProgress) => void;
  /** Free bytes in a directory. Default via fs.statfs. */
  freeBytes?: (dir: string) => Promise<number>;
  /** Free space kept in hand beyond the bytes still to download (default DISK_MARGIN_BYTES, 64 MiB). */
  diskMarginBytes?: number;
  /**
   * Called when the first `bytesOnDisk` bytes of `${dest}.part` are written and readable, in
   * increasing order (with segments: the contiguous prefix): lets a reader (the streaming
   * stager) follow the download.
   */
  onFlushed?: (bytesOnDisk: number) => void;
  /** Called when bytes of the part that onFlushed announced become void (a restart from zero, a new part). */
  onRestart?: () => void;
  /** Called with true when the download starts waiting for the network, with false when it answers again. */
  onNetworkWait?: (waiting: boolean) => void;
  /**
   * Called before every change to the part, its sidecar or dest (each write, truncation and
   * removal) and before the final rename. If it throws, the download stops at once with that
   * error and touches none of these files again (e.g. "this process still holds the job's
   * lease": another process may own them now).
   */
  guard?: () => void;
  /**
   * fsync the file and its directory before returning (default true). An archive that is only
   * a verified cache (its hash is checked again before any reuse) can skip it.
   */
  durable?: boolean;
  /**
   * Downloads from zero again after a wrong hash before CHECKSUM_MISMATCH (default 1: a torn
   * part, a byte flipped in transit). A mirror gets 0: its bad bytes mean the next source.
   */
  checksumRefetches?: number;
  /**
   * For a server that must hold exactly this file (a mirror, sources.ts): a 200 whose
   * Content-Length is not the signed size (a soft 404 page, a truncated copy), or a response
   * that would throw away bytes the part already holds (a 200 to a ranged request, a 416, a
   * Content-Range or ETag other than asked), fails the download with a non-retryable
   * NETWORK_ERROR at once, leaving the part as it is for another source to resume.
   */
  strictServer?: boolean;
}

export interface DownloadResult {
  path: string;
  size: number;
  sha256: string;
  /** Bytes of an existing `.part` the download continued from (0 if it started over). */
  resumedFrom: number;
  /** HTTP requests made by this call (stalled and unanswered ones included). */
  attempts: number;
  stalls: number;
  /** True when bytes we had (an old `.part` or bytes of this call) were thrown away and the file was fetched from byte 0. */
  restartedFromZero: boolean;
  /** Body bytes received over the network by this call (including any that were later thrown away). */
  bytesFetched: number;
  /** Most connections open at once. */
  connections: number;
  /** Pieces split off for another connection. */
  splits: number;
  /**
   * Bytes written ahead of the hash frontier (pieces finished out of order) and read back from
   * disk to be hashed; time spent waiting for those reads (the extra cost; thread-pool queueing
   * included) and hashing them (paid anyway: from memory had they come in order).
   */
  readBack: { bytes: number; readMs: number; hashMs: number };
  /** Time spent waiting for the network. */
  networkWaitMs: number;
}

const MiB = 1024 * 1024;
/** Free space we keep in hand on top of the bytes still to download. */
export const DISK_MARGIN_BYTES = 64 * MiB;
const DEFAULT_STALL_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_ATTEMPTS = 3;
const DEFAULT_MAX_STALLS = 10;
const DEFAULT_MAX_CONNECTIONS = 8;
const DEFAULT_SEGMENT_MIN_SIZE = 32 * MiB;
const DEFAULT_MIN_SPLIT_SIZE = MiB;
/** Downloads from zero again after a wrong hash (a torn part, a flipped byte) before CHECKSUM_MISMATCH. */
const DEFAULT_CHECKSUM_REFETCHES = 1;
/** Parts deleted under a running download that are fetched again before it gives up. */
const PART_LOSSES = 3;

export function defaultBackoffMs(attempt: number): number {
  const base = Math.min(8_000, 500 * 2 ** Math.max(0, attempt - 1));
  const jittered = base * (0.75 + Math.random() * 0.5);
  return Math.min(8_000, Math.round(jittered));
}

export async function defaultFreeBytes(dir: string): Promise<number> {
  try {
    const s = await statfs(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return Number.POSITIVE_INFINITY; // unknown: don't block the download on it
  }
}

/** Downloads in progress in this process, by absolute destination: calls for one dest queue up. */
const active = new Map<string, Promise<unknown>>();

export async function downloadFile(req: DownloadRequest): Promise<DownloadResult> {
  const cfg = validate(req);
  const key = cfg.dest;
  for (let prev = active.get(key); prev !== undefined; prev = active.get(key)) {
    await abortable(
      prev.then(
        () => undefined,
        () => undefined,
      ),
      cfg.signal,
    );
  }
  const run = download(cfg, req.freeBytes ?? defaultFreeBytes);
  active.set(key, run);
  try {
    return await run;
  } finally {
    if (active.get(key) === run) active.delete(key);
  }
}

function validate(req: DownloadRequest): Config {
  const bad = (msg: string): never => {
    throw new ModelhubError('INVALID_REQUEST', `downloadFile: ${msg}`, { retryable: false });
  };
  if (typeof req.url !== 'string' || req.url === '') bad('url is required');
  if (typeof req.dest !== 'string' || req.dest === '') bad('dest is required');
  if (!Number.isSafeInteger(req.expectedSize) || req.expectedSize < 0) bad(`bad expectedSize ${String(req.expectedSize)}`);
  if (typeof req.expectedSha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(req.expectedSha256)) bad('expectedSha256 must be 64 hex digits');
  const stallTimeoutMs = req.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
  if (!(stallTimeoutMs > 0)) bad('stallTimeoutMs must be > 0');
  const maxAttempts = req.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) bad('maxAttempts must be an integer ≥ 1');
  const maxStalls = req.maxStalls ?? DEFAULT_MAX_STALLS;
  if (!Number.isInteger(maxStalls) || maxStalls < 0) bad('maxStalls must be an integer ≥ 0');
  const maxNetworkWaitMs = req.maxNetworkWaitMs ?? DEFAULT_MAX_NETWORK_WAIT_MS;
  if (!(maxNetworkWaitMs >= 0)) bad('maxNetworkWaitMs must be ≥ 0');
  const maxConnections = req.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) bad('maxConnections must be an integer ≥ 1');
  const segmentMinSize = req.segmentMinSize ?? DEFAULT_SEGMENT_MIN_SIZE;
  if (!(segmentMinSize >= 0)) bad('segmentMinSize must be ≥ 0');
  const minSplitSize = req.minSplitSize ?? DEFAULT_MIN_SPLIT_SIZE;
  if (!Number.isInteger(minSplitSize) || minSplitSize < 1) bad('minSplitSize must be an integer ≥ 1');
  const checksumRefetches = req.checksumRefetches ?? DEFAULT_CHECKSUM_REFETCHES;
  if (!Number.isInteger(checksumRefetches) || checksumRefetches < 0) bad('checksumRefetches must be an integer ≥ 0');
  const diskMarginBytes = req.diskMarginBytes ?? DISK_MARGIN_BYTES;
  if (!Number.isSafeInteger(diskMarginBytes) || diskMarginBytes < 0) bad('diskMarginBytes must be an integer ≥ 0');
  const dest = path.resolve(req.dest);
  return {
    url: req.url,
    dest,
    part: `${dest}.part`,
    meta: `${dest}.part.json`,
    expectedSize: req.expectedSize,
    expectedSha256: req.expectedSha256.toLowerCase(),
    fetch: req.fetch ?? defaultFetch(),
    signal: req.signal,
    stallTimeoutMs,
    maxAttempts,
    maxStalls,
    backoffMs: req.backoffMs ?? defaultBackoffMs,
    maxNetworkWaitMs,
    probeDelayMs: req.probeDelayMs ?? defaultProbeDelayMs,
    maxConnections,
    segmentMinSize,
    minSplitSize,
    bandwidth: req.bandwidth,
    pool: req.connectionPool,
    onProgress: req.onProgress,
    onFlushed: req.onFlushed,
    onRestart: req.onRestart,
    onNetworkWait: req.onNetworkWait,
    guard: req.guard,
    durable: req.durable ?? true,
    checksumRefetches,
    strictServer: req.strictServer ?? false,
    diskMarginBytes,
  };
}

function result(cfg: Config, stats: Stats, sha256: string): DownloadResult {
  return {
    path: cfg.dest,
    size: cfg.expectedSize,
    sha256,
    resumedFrom: stats.resumedFrom,
    attempts: stats.requests,
    stalls: stats.stalls,
    restartedFromZero: stats.restartedFromZero,
    bytesFetched: stats.bytesFetched,
    connections: stats.connections,
    splits: stats.splits,
    readBack: { bytes: stats.readBack.bytes, readMs: Math.round(stats.readBack.readMs), hashMs: Math.round(stats.readBack.hashMs) },
    networkWaitMs: stats.networkWaitMs,
  };
}

async function download(cfg: Config, freeBytes: (dir: string) => Promise<number>): Promise<DownloadResult> {
  throwIfAborted(cfg.signal);
  const dir = path.dirname(cfg.dest);
  await mkdir(dir, { recursive: true });
  const stats = newStats();

  // Already there and right? Then nothing to do.
  if (await existingDestIsGood(cfg)) {
    cfg.guard?.();
    await Promise.all([rm(cfg.part, { force: true }), rm(cfg.meta, { force: true })]);
    return result(cfg, stats, cfg.expectedSha256);
  }

  let fromZero = false;
  let refetches = 0;
  let losses = 0;
  for (;;) {
    const r = await once(cfg, stats, fromZero, freeBytes);
    if (r.kind === 'done') return result(cfg, stats, r.sha256);
    if (r.kind === 'lost') {
      losses += 1;
      if (losses > PART_LOSSES) {
        throw new ModelhubError('INTERNAL', `${cfg.part} was deleted or replaced ${losses} times during the download`, { retryable: true, details: { part: cfg.part } });
      }
    } else {
      refetches += 1;
      if (refetches > cfg.checksumRefetches) {
        cfg.guard?.();
        // Whoever followed these bytes (the prestager) must not use what it read of them.
        cfg.onRestart?.();
        await Promise.all([rm(cfg.part, { force: true }), rm(cfg.meta, { force: true })]);
        throw new ModelhubError('CHECKSUM_MISMATCH', `SHA-256 of ${cfg.url} is ${r.sha256 ?? '(unreadable)'}, expected ${cfg.expectedSha256} (downloaded ${refetches} times)`, {
          retryable: false,
          details: { url: cfg.url, expected: cfg.expectedSha256, actual: r.sha256 },
        });
      }
    }
    fromZero = true;
  }
}

type Once = { kind: 'done'; sha256: string } | { kind: 'mismatch'; sha256: string | null } | { kind: 'lost' };

/** One pass: open the part, resume what it holds, fetch the rest, verify, move into place. */
async function once(cfg: Config, stats: Stats, fromZero: boolean, freeBytes: (dir: string) => Promise<number>): Promise<Once> {
  const { part, plan, etag } = await resumePoint(cfg, stats, fromZero);
  let closed = false;
  let discard = false;
  try {
    const remaining = cfg.expectedSize - plan.written();
    const dir = path.dirname(cfg.dest);
    if (remaining > 0) {
      const free = await freeBytes(dir);
      if (free < remaining + cfg.diskMarginBytes) {
        throw new ModelhubError(
          'INSUFFICIENT_DISK',
          `not enough free space in ${dir}: ${free} bytes free, ${remaining} still to download (+${cfg.diskMarginBytes} margin)`,
          { retryable: true, details: { dir, free, needed: remaining + cfg.diskMarginBytes } },
        );
      }
    }
    const t = new Transfer(cfg, part, plan, stats, etag);
    try {
      await t.run();
    } catch (err) {
      if (err instanceof PartLost) return { kind: 'lost' };
      if (err instanceof ModelhubError && err.code === 'SIZE_EXCEEDED' && !t.guardFailed) discard = true;
      throw err;
    }
    const sha256 = await part.digest(cfg.expectedSize);
    stats.readBack.bytes += part.readBack.bytes;
    stats.readBack.readMs += part.readBack.readMs;
    stats.readBack.hashMs += part.readBack.hashMs;
    if (sha256 !== cfg.expectedSha256) return { kind: 'mismatch', sha256 };
    // The bytes are right, but are they still at the path? (A deleted part is fetched again.)
    if (!(await part.isStillAt())) return { kind: 'lost' };
    if (cfg.durable) await part.sync();
    closed = true;
    await part.close();
    cfg.guard?.();
    await renameWithRetry(cfg.part, cfg.dest);
    if (cfg.durable) await fsyncDir(dir);
    await rm(cfg.meta, { force: true });
    return { kind: 'done', sha256 };
  } finally {
    if (!closed) await part.close().catch(() => undefined);
    if (discard) {
      cfg.onRestart?.();
      await Promise.all([rm(cfg.part, { force: true }), rm(cfg.meta, { force: true })]);
    }
  }
}

async function existingDestIsGood(cfg: Config): Promise<boolean> {
  let s;
  try {
    s = await stat(cfg.dest);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
  if (!s.isFile()) {
    throw new ModelhubError('INTERNAL', `download destination ${cfg.dest} exists and is not a file`, { retryable: false });
  }
  if (s.size === cfg.expectedSize && (await hashFile(cfg.dest, cfg.signal)) === cfg.expectedSha256) return true;
  cfg.guard?.();
  await rm(cfg.dest, { force: true });
  return false;
}

async function renameWithRetry(from: string, to: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await rename(from, to);
      return;
    } catch (err) {
      // Windows: antivirus and indexers hold new files open for a moment.
      const transient = process.platform === 'win32' && (isErrno(err, 'EPERM') || isErrno(err, 'EBUSY') || isErrno(err, 'EACCES'));
      if (!transient || i >= 20) throw err;
      await sleep(50 * (i + 1), undefined);
    }
  }
}
