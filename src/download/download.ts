// The engine's downloader: one file, one connection, resumable, with the signed size enforced
// while streaming and the signed SHA-256 computed inline (no second read of the file).
//
// On disk, next to `dest`:
//   `${dest}.part`       the bytes received so far (always a prefix of the file)
//   `${dest}.part.json`  sidecar `{ url, etag, size }`, rewritten atomically whenever a response
//                        starts; it says which URL/ETag/signed size the prefix belongs to.
// Only a verified file is ever renamed to `dest`.
import { createHash, type Hash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { fsyncDir } from '../fs/durable.js';
import { defaultFetch, type FetchLike, type FetchResponseLike } from './fetch-like.js';

export interface DownloadProgress {
  /** Bytes of the file we have (on disk or about to be written). */
  bytesDone: number;
  bytesTotal: number;
  /**
   * Where the current run of `bytesDone` values started: the size of the `.part` this call
   * resumed, or 0 once the download had to restart from the beginning. `bytesDone` never goes
   * down while `resumedFrom` stays the same; when it does go down (to 0), `resumedFrom` is 0.
   */
  resumedFrom: number;
}

export interface DownloadRequest {
  url: string;
  /** Final file; bytes go to `${dest}.part`, metadata to `${dest}.part.json`. */
  dest: string;
  /** Signed size: enforced while streaming. */
  expectedSize: number;
  /** Signed SHA-256 (hex): computed inline while streaming. */
  expectedSha256: string;
  /** Default `defaultFetch()` (node-fetch). */
  fetch?: FetchLike;
  signal?: AbortSignal;
  /** No bytes for this long → abort the attempt and retry (not counted as an attempt). Default 30 s. */
  stallTimeoutMs?: number;
  /** Failed attempts allowed (connection errors, 5xx, truncated bodies, bad ranges). Default 3. */
  maxAttempts?: number;
  /** Stalls allowed before giving up with a retryable NETWORK_ERROR. Default 10. */
  maxStalls?: number;
  /** Delay before retry number `attempt` (1-based). Default 500 ms · 2^(attempt-1), capped at 8 s, ±25 % jitter. */
  backoffMs?: (attempt: number) => number;
  /** Called per chunk received. See DownloadProgress for the ordering guarantee. */
  onProgress?: (p: DownloadProgress) => void;
  /** Free bytes in a directory. Default via fs.statfs. */
  freeBytes?: (dir: string) => Promise<number>;
  /**
   * Called when the first `bytesOnDisk` bytes of `${dest}.part` are written and readable, in
   * increasing order: lets a reader (the streaming stager) follow the download.
   */
  onFlushed?: (bytesOnDisk: number) => void;
  /** Called when the part is truncated to restart from zero: what was read of it is void. */
  onRestart?: () => void;
  /**
   * fsync the file and its directory before returning (default true). An archive that is only
   * a verified cache (its hash is checked again before any reuse) can skip it.
   */
  durable?: boolean;
}

export interface DownloadResult {
  path: string;
  size: number;
  sha256: string;
  /** Bytes of an existing `.part` the download continued from (0 if it started over). */
  resumedFrom: number;
  /** HTTP requests made by this call (stalled ones included). */
  attempts: number;
  stalls: number;
  /** True when bytes we had (an old `.part` or bytes of this call) were thrown away and the file was fetched from byte 0. */
  restartedFromZero: boolean;
  /** Body bytes received over the network by this call (including any that were later thrown away). */
  bytesFetched: number;
}

const MiB = 1024 * 1024;
/** Coalesce received chunks into writes of this size. */
const WRITE_BUFFER_BYTES = MiB;
/** Read buffer for hashing an existing file or prefix. */
const READ_BUFFER_BYTES = MiB;
/** Free space we keep in hand on top of the bytes still to download. */
export const DISK_MARGIN_BYTES = 64 * MiB;
/** Longest time received bytes wait in memory before they are written to the part. */
const FLUSH_MS = 250;
const DEFAULT_STALL_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_ATTEMPTS = 3;
const DEFAULT_MAX_STALLS = 10;

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

// ---------------------------------------------------------------------------------------------
// Internal control flow between an attempt and the retry loop.

/** The attempt saw no bytes for stallTimeoutMs. */
class StallError extends Error {
  constructor(ms: number) {
    super(`no data received for ${ms} ms`);
    this.name = 'StallError';
  }
}

/** The attempt failed in a way another attempt may fix. `restart`: drop the `.part` first. */
class RetryableAttempt extends Error {
  readonly error: ModelhubError;
  readonly restart: boolean;
  constructor(error: ModelhubError, restart = false) {
    super(error.message);
    this.name = 'RetryableAttempt';
    this.error = error;
    this.restart = restart;
  }
}

interface Sidecar {
  url: string;
  etag: string | null;
  size: number;
}

interface Ctx {
  url: string;
  dest: string;
  part: string;
  meta: string;
  expectedSize: number;
  expectedSha256: string;
  fetch: FetchLike;
  signal: AbortSignal | undefined;
  stallTimeoutMs: number;
  maxAttempts: number;
  maxStalls: number;
  backoffMs: (attempt: number) => number;
  onProgress: ((p: DownloadProgress) => void) | undefined;
  onFlushed: ((bytesOnDisk: number) => void) | undefined;
  onRestart: (() => void) | undefined;
  durable: boolean;
}

interface State {
  fh: FileHandle;
  /** Bytes hashed and written (or being written) to the part: the write position. */
  written: number;
  hash: Hash;
  etag: string | null;
  resumedFrom: number;
  restartedFromZero: boolean;
  requests: number;
  failures: number;
  stalls: number;
  bytesFetched: number;
  /** Two write buffers: one fills while the other is being written. */
  buffers: [Buffer, Buffer];
}

// ---------------------------------------------------------------------------------------------

/** Downloads in progress in this process, by absolute destination: calls for one dest queue up. */
const active = new Map<string, Promise<unknown>>();

export async function downloadFile(req: DownloadRequest): Promise<DownloadResult> {
  const ctx = validate(req);
  const key = ctx.dest;
  for (let prev = active.get(key); prev !== undefined; prev = active.get(key)) {
    await abortable(
      prev.then(
        () => undefined,
        () => undefined,
      ),
      ctx.signal,
    );
  }
  const run = download(ctx, req.freeBytes ?? defaultFreeBytes);
  active.set(key, run);
  try {
    return await run;
  } finally {
    if (active.get(key) === run) active.delete(key);
  }
}

function validate(req: DownloadRequest): Ctx {
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
    onProgress: req.onProgress,
    onFlushed: req.onFlushed,
    onRestart: req.onRestart,
    durable: req.durable ?? true,
  };
}

async function download(ctx: Ctx, freeBytes: (dir: string) => Promise<number>): Promise<DownloadResult> {
  throwIfAborted(ctx.signal);
  const dir = path.dirname(ctx.dest);
  await mkdir(dir, { recursive: true });

  // 1. Already there and right? Then nothing to do.
  if (await existingDestIsGood(ctx)) {
    await Promise.all([rm(ctx.part, { force: true }), rm(ctx.meta, { force: true })]);
    return {
      path: ctx.dest,
      size: ctx.expectedSize,
      sha256: ctx.expectedSha256,
      resumedFrom: 0,
      attempts: 0,
      stalls: 0,
      restartedFromZero: false,
      bytesFetched: 0,
    };
  }

  const sidecar = await readSidecar(ctx.meta);
  const fh = await open(ctx.part, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
  let closed = false;
  let discardPart = false;
  try {
    // 3. Decide what of an existing `.part` we keep.
    let offset = (await fh.stat()).size;
    let restartedFromZero = false;
    const sidecarMatches = sidecar !== null && sidecar.url === ctx.url && sidecar.size === ctx.expectedSize;
    if (offset > 0 && (offset > ctx.expectedSize || (sidecar !== null && !sidecarMatches))) {
      await fh.truncate(0);
      offset = 0;
      restartedFromZero = true;
    }
    if (restartedFromZero) ctx.onRestart?.();
    const hash = createHash('sha256');
    if (offset > 0) await hashRange(fh, offset, hash, ctx.signal);
    if (offset > 0) ctx.onFlushed?.(offset);

    // 2. Room for the rest?
    const remaining = ctx.expectedSize - offset;
    if (remaining > 0) {
      const free = await freeBytes(dir);
      if (free < remaining + DISK_MARGIN_BYTES) {
        throw new ModelhubError(
          'INSUFFICIENT_DISK',
          `not enough free space in ${dir}: ${free} bytes free, ${remaining} still to download (+${DISK_MARGIN_BYTES} margin)`,
          { retryable: true, details: { dir, free, needed: remaining + DISK_MARGIN_BYTES } },
        );
      }
    }

    const st: State = {
      fh,
      written: offset,
      hash,
      etag: sidecarMatches ? sidecar.etag : null,
      resumedFrom: offset,
      restartedFromZero,
      requests: 0,
      failures: 0,
      stalls: 0,
      bytesFetched: 0,
      buffers: [Buffer.allocUnsafe(0), Buffer.allocUnsafe(0)],
    };

    emit(ctx, st, st.written);
    try {
      if (st.written < ctx.expectedSize) await fetchLoop(ctx, st);
    } catch (err) {
      if (err instanceof ModelhubError && err.code === 'SIZE_EXCEEDED') discardPart = true;
      throw err;
    }

    // 6. Verify, then move into place.
    const sha256 = st.hash.digest('hex');
    if (sha256 !== ctx.expectedSha256) {
      discardPart = true;
      throw new ModelhubError('CHECKSUM_MISMATCH', `SHA-256 of ${ctx.url} is ${sha256}, expected ${ctx.expectedSha256}`, {
        retryable: false,
        details: { url: ctx.url, expected: ctx.expectedSha256, actual: sha256 },
      });
    }
    if (ctx.durable) await fh.sync();
    closed = true;
    await fh.close();
    await renameWithRetry(ctx.part, ctx.dest);
    if (ctx.durable) await fsyncDir(dir);
    await rm(ctx.meta, { force: true });
    return {
      path: ctx.dest,
      size: ctx.expectedSize,
      sha256,
      resumedFrom: st.resumedFrom,
      attempts: st.requests,
      stalls: st.stalls,
      restartedFromZero: st.restartedFromZero,
      bytesFetched: st.bytesFetched,
    };
  } finally {
    if (!closed) await fh.close().catch(() => undefined);
    if (discardPart) await Promise.all([rm(ctx.part, { force: true }), rm(ctx.meta, { force: true })]);
  }
}

async function existingDestIsGood(ctx: Ctx): Promise<boolean> {
  let s;
  try {
    s = await stat(ctx.dest);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
  if (!s.isFile()) {
    throw new ModelhubError('INTERNAL', `download destination ${ctx.dest} exists and is not a file`, { retryable: false });
  }
  if (s.size === ctx.expectedSize) {
    const fh = await open(ctx.dest, 'r');
    const hash = createHash('sha256');
    try {
      await hashRange(fh, s.size, hash, ctx.signal);
    } finally {
      await fh.close();
    }
    if (hash.digest('hex') === ctx.expectedSha256) return true;
  }
  await rm(ctx.dest, { force: true });
  return false;
}

// ---------------------------------------------------------------------------------------------
// Attempts

async function fetchLoop(ctx: Ctx, st: State): Promise<void> {
  while (st.written < ctx.expectedSize) {
    throwIfAborted(ctx.signal);
    try {
      await attempt(ctx, st);
      if (st.written < ctx.expectedSize) {
        throw new RetryableAttempt(
          new ModelhubError('NETWORK_ERROR', `${ctx.url}: body ended early at byte ${st.written} of ${ctx.expectedSize}`, {
            retryable: true,
            details: { url: ctx.url, at: st.written },
          }),
        );
      }
    } catch (err) {
      if (ctx.signal?.aborted) throw abortReason(ctx.signal);
      if (err instanceof StallError) {
        st.stalls += 1;
        if (st.stalls > ctx.maxStalls) {
          throw new ModelhubError('NETWORK_ERROR', `${ctx.url}: stalled ${st.stalls} times (${err.message})`, {
            cause: err,
            retryable: true,
            details: { url: ctx.url, stalls: st.stalls, at: st.written },
          });
        }
        continue; // a stall does not spend an attempt, and needs no back-off
      }
      if (err instanceof RetryableAttempt) {
        if (err.restart) await restartFromZero(ctx, st);
        st.failures += 1;
        if (st.failures >= ctx.maxAttempts) {
          throw new ModelhubError(err.error.code, `${err.error.message} (gave up after ${st.failures} failed attempts)`, {
            cause: err.error.cause,
            retryable: err.error.retryable,
            details: { ...err.error.details, attempts: st.requests, failures: st.failures },
          });
        }
        await sleep(Math.max(0, ctx.backoffMs(st.failures)), ctx.signal);
        continue;
      }
      throw err;
    }
  }
}

/** One HTTP request. Returns when its body ended (complete or not); throws to retry or fail. */
async function attempt(ctx: Ctx, st: State): Promise<void> {
  st.requests += 1;
  const ac = new AbortController();
  const onUserAbort = (): void => ac.abort(abortReason(ctx.signal));
  ctx.signal?.addEventListener('abort', onUserAbort, { once: true });
  const stallTimer = setTimeout(() => ac.abort(new StallError(ctx.stallTimeoutMs)), ctx.stallTimeoutMs);
  try {
    const start = st.written;
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
    if (start > 0) {
      headers['Range'] = `bytes=${start}-`;
      if (st.etag !== null) headers['If-Range'] = st.etag;
    }

    let res: FetchResponseLike;
    try {
      res = await abortable(ctx.fetch(ctx.url, { method: 'GET', headers, signal: ac.signal }), ac.signal);
    } catch (err) {
      if (ac.signal.aborted) throw ac.signal.reason;
      throw new RetryableAttempt(networkError(ctx.url, `request failed: ${errMessage(err)}`, true, err));
    }
    stallTimer.refresh();

    const bodyStart = await checkResponse(ctx, st, res, start);
    if (bodyStart === null) return; // 416 on a complete part: go verify

    const contentLength = parseContentLength(res.headers.get('content-length'));
    if (contentLength !== null && contentLength > ctx.expectedSize - bodyStart) {
      throw sizeExceeded(ctx, `server announces ${contentLength} bytes from byte ${bodyStart}`);
    }

    const etag = strongEtag(res.headers.get('etag'));
    st.etag = etag;
    await writeSidecar(ctx.meta, { url: ctx.url, etag, size: ctx.expectedSize });

    if (res.body === null) return;
    await streamBody(ctx, st, res.body, ac.signal, stallTimer);
  } catch (err) {
    if (err instanceof ModelhubError || err instanceof RetryableAttempt) throw err;
    if (ac.signal.aborted) throw ac.signal.reason; // stall or user abort
    throw err;
  } finally {
    clearTimeout(stallTimer);
    ctx.signal?.removeEventListener('abort', onUserAbort);
    ac.abort(); // release the connection if we are leaving early; harmless after a complete body
  }
}

/**
 * Status and range checks. Returns the file offset the body starts at, or null when there is no
 * body to read and the part is complete.
 */
async function checkResponse(ctx: Ctx, st: State, res: FetchResponseLike, start: number): Promise<number | null> {
  const status = res.status;
  if (status === 206) {
    const cr = parseContentRange(res.headers.get('content-range'));
    if (cr === null || cr.start !== start || cr.total !== ctx.expectedSize || cr.end < cr.start || cr.end >= ctx.expectedSize) {
      throw new RetryableAttempt(
        networkError(ctx.url, `206 with Content-Range "${res.headers.get('content-range') ?? ''}", expected bytes ${start}-…/${ctx.expectedSize}`, true),
        true,
      );
    }
    const etag = strongEtag(res.headers.get('etag'));
    if (start > 0 && st.etag !== null && etag !== null && etag !== st.etag) {
      throw new RetryableAttempt(networkError(ctx.url, `206 for ETag ${etag}, but the part is of ${st.etag}`, true), true);
    }
    return start;
  }
  if (status === 200) {
    // A 200 to a ranged request: the server ignored Range (or If-Range said the file changed).
    // This body is the whole file: take it from byte 0, never append it.
    if (start > 0) await restartFromZero(ctx, st);
    return 0;
  }
  if (status === 416) {
    if (st.written === ctx.expectedSize) return null;
    throw new RetryableAttempt(networkError(ctx.url, `416 for a range from byte ${start}`, true), true);
  }
  if (status === 404) {
    throw new ModelhubError('NOT_FOUND', `${ctx.url}: 404 Not Found`, { retryable: false, details: { url: ctx.url, status } });
  }
  if (status >= 500 || status === 408 || status === 429) {
    throw new RetryableAttempt(networkError(ctx.url, `HTTP ${status}`, true, undefined, status));
  }
  throw networkError(ctx.url, `HTTP ${status}`, false, undefined, status);
}

/**
 * Read the body into the part: chunks are size-checked on arrival, coalesced into ~1 MiB
 * buffers, each buffer hashed once and written once (the write overlaps the next buffer's fill).
 */
async function streamBody(
  ctx: Ctx,
  st: State,
  body: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
  stallTimer: NodeJS.Timeout,
): Promise<void> {
  if (st.buffers[0].length === 0) st.buffers = [Buffer.allocUnsafe(WRITE_BUFFER_BYTES), Buffer.allocUnsafe(WRITE_BUFFER_BYTES)];
  let which = 0;
  let buf = st.buffers[0];
  let fill = 0;
  let pending: Promise<unknown> | null = null; // resolves to an error or null, never rejects
  let writeFailed = false; // after a failed write nothing more may be written (no holes)

  const waitPending = async (): Promise<void> => {
    if (pending === null) return;
    const err = await pending;
    pending = null;
    stallTimer.refresh(); // time spent waiting on our own disk is not a stall
    if (err !== null) {
      writeFailed = true;
      throw diskError(ctx, err);
    }
  };
  let lastFlush = Date.now();
  const flush = async (): Promise<void> => {
    lastFlush = Date.now();
    if (fill === 0) return;
    await waitPending();
    const data = buf.subarray(0, fill);
    const pos = st.written;
    pending = writeAll(st.fh, data, pos).then(
      () => {
        ctx.onFlushed?.(pos + data.length);
        return null;
      },
      (err: unknown) => err,
    );
    st.hash.update(data); // hashes while the write runs on the thread pool
    st.written += fill;
    which ^= 1;
    buf = st.buffers[which] ?? buf;
    fill = 0;
  };

  const it = body[Symbol.asyncIterator]();
  const reader = abortableReader(it, signal);
  let finished = false;
  let discard = false;
  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await reader.next();
      } catch (err) {
        if (signal.aborted) throw signal.reason; // stall or user abort
        // Connection reset / premature close: keep what we have and resume from there.
        throw new RetryableAttempt(networkError(ctx.url, `connection lost at byte ${st.written + fill}: ${errMessage(err)}`, true, err));
      }
      if (r.done === true) {
        finished = true;
        break;
      }
      stallTimer.refresh();
      let chunk = r.value;
      if (chunk.length === 0) continue;
      const have = st.written + fill;
      if (have + chunk.length > ctx.expectedSize) {
        discard = true;
        throw sizeExceeded(ctx, `server sent more than ${ctx.expectedSize} bytes`);
      }
      st.bytesFetched += chunk.length;
      while (chunk.length > 0) {
        const n = Math.min(chunk.length, buf.length - fill);
        buf.set(n === chunk.length ? chunk : chunk.subarray(0, n), fill);
        fill += n;
        chunk = chunk.subarray(n);
        if (fill === buf.length) await flush();
      }
      // A slow transfer fills the buffer slowly: write at least every FLUSH_MS, so that a
      // killed process loses a fraction of a second of data, not a whole buffer.
      if (fill > 0 && Date.now() - lastFlush >= FLUSH_MS) await flush();
      emit(ctx, st, have + r.value.length);
    }
  } finally {
    reader.dispose();
    if (!finished) {
      try {
        void Promise.resolve(it.return?.()).catch(() => undefined);
      } catch {
        // ignore: the connection is aborted anyway
      }
    }
    if (discard || writeFailed) {
      await waitPending().catch(() => undefined); // the part gets deleted, or the error is already on its way
    } else {
      // Keep every byte we received: a retry or a later call resumes after them.
      await flush();
      await waitPending();
    }
  }
}

async function restartFromZero(ctx: Ctx, st: State): Promise<void> {
  ctx.onRestart?.();
  await st.fh.truncate(0);
  st.written = 0;
  st.hash = createHash('sha256');
  st.restartedFromZero = true;
  st.resumedFrom = 0;
  emit(ctx, st, 0);
}

function emit(ctx: Ctx, st: State, bytesDone: number): void {
  ctx.onProgress?.({ bytesDone, bytesTotal: ctx.expectedSize, resumedFrom: st.resumedFrom });
}

// ---------------------------------------------------------------------------------------------
// Helpers

function sizeExceeded(ctx: Ctx, why: string): ModelhubError {
  return new ModelhubError('SIZE_EXCEEDED', `${ctx.url}: ${why}; the signed size is ${ctx.expectedSize}`, {
    retryable: false,
    details: { url: ctx.url, expectedSize: ctx.expectedSize },
  });
}

function networkError(url: string, why: string, retryable: boolean, cause?: unknown, status?: number): ModelhubError {
  return new ModelhubError('NETWORK_ERROR', `${url}: ${why}`, {
    cause,
    retryable,
    details: status === undefined ? { url } : { url, status },
  });
}

function diskError(ctx: Ctx, err: unknown): ModelhubError {
  if (isErrno(err, 'ENOSPC')) {
    return new ModelhubError('INSUFFICIENT_DISK', `disk full while writing ${ctx.part}`, { cause: err, retryable: true });
  }
  return new ModelhubError('INTERNAL', `writing ${ctx.part}: ${errMessage(err)}`, { cause: err, retryable: false });
}

async function writeAll(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, position + off);
    if (bytesWritten <= 0) throw new Error('write returned 0 bytes');
    off += bytesWritten;
  }
}

/** Feed the first `length` bytes of a file into `hash`, 1 MiB at a time. */
async function hashRange(fh: FileHandle, length: number, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(READ_BUFFER_BYTES, Math.max(1, length)));
  let pos = 0;
  while (pos < length) {
    throwIfAborted(signal);
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - pos), pos);
    if (bytesRead === 0) throw new ModelhubError('INTERNAL', `file shrank while hashing (at byte ${pos} of ${length})`);
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

async function readSidecar(file: string): Promise<Sidecar | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return null;
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null) return null;
    const o = v as Record<string, unknown>;
    if (typeof o['url'] !== 'string' || typeof o['size'] !== 'number') return null;
    const etag = typeof o['etag'] === 'string' ? o['etag'] : null;
    return { url: o['url'], etag, size: o['size'] };
  } catch {
    return null; // torn or foreign: treat as absent (the hash still guards the result)
  }
}

async function writeSidecar(file: string, data: Sidecar): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(data)}\n`);
  await rename(tmp, file);
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


function parseContentRange(v: string | null): { start: number; end: number; total: number | null } | null {
  if (v === null) return null;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v);
  if (m === null) return null;
  const [, a, b, t] = m;
  return { start: Number(a), end: Number(b), total: t === '*' || t === undefined ? null : Number(t) };
}

function parseContentLength(v: string | null): number | null {
  if (v === null || !/^\s*\d+\s*$/.test(v)) return null;
  return Number(v);
}

/** A strong ETag (If-Range may only use strong validators), or null. */
function strongEtag(v: string | null): string | null {
  if (v === null) return null;
  const t = v.trim();
  if (t === '' || t.startsWith('W/')) return null;
  return t;
}

/**
 * Reads an async iterator with every read racing the signal. Not every FetchLike is trusted to
 * end its body on abort; one listener per body (not per read) keeps this cheap per chunk.
 */
function abortableReader<T>(it: AsyncIterator<T>, signal: AbortSignal): { next(): Promise<IteratorResult<T>>; dispose(): void } {
  let rejectCurrent: ((e: unknown) => void) | null = null;
  const onAbort = (): void => {
    const reject = rejectCurrent;
    rejectCurrent = null;
    reject?.(abortReason(signal));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  return {
    next() {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as given
      if (signal.aborted) return Promise.reject(abortReason(signal));
      return new Promise<IteratorResult<T>>((resolve, reject) => {
        rejectCurrent = reject;
        it.next().then(
          (v) => {
            rejectCurrent = null;
            resolve(v);
          },
          (e: unknown) => {
            rejectCurrent = null;
            // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- pass the original through
            reject(e);
          },
        );
      });
    },
    dispose() {
      signal.removeEventListener('abort', onAbort);
      rejectCurrent = null;
    },
  };
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) {
    p.catch(() => undefined);
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as given
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as given
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- pass the original through
        reject(e);
      },
    );
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as given
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as given
      reject(abortReason(signal));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortReason(signal: AbortSignal | undefined): unknown {
  const r: unknown = signal?.reason;
  return r ?? new DOMException('This operation was aborted', 'AbortError');
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
