// Ranged GETs of one immutable remote file, for the ranged zip reader (remote-zip.ts). Each
// request asks for `bytes=a-b` with If-Range (the strong ETag of the first answer), and the
// answer must be a 206 whose Content-Range starts at `a`, ends at `b` and totals the signed size
// (NOTES, downloads: a 200 to a ranged request means the server ignored Range — here that means
// "read the whole file instead", never "append"). Bodies are read through a stall timer and the
// engine's bandwidth bucket, like the downloader's.
import { abortableReader, abortReason, sleep, StallTimer } from '../download/abort.js';
import type { FetchLike, FetchResponseLike } from '../download/fetch-like.js';
import { parseContentRange, strongEtag } from '../download/http.js';
import type { TokenBucket } from '../download/token-bucket.js';
import { DeltaUnavailable, RangeRetryable } from './errors.js';

export { RangeRetryable };

export const DEFAULT_STALL_MS = 30_000;
/** Attempts per request before the caller gives the ranged path up ('network'). */
export const RANGE_ATTEMPTS = 3;

export interface RangeSource {
  url: string;
  /** The signed size of the file: every Content-Range must total exactly this. */
  size: number;
  fetch: FetchLike;
  signal?: AbortSignal;
  /** No body bytes for this long: the request is abandoned and tried again. Default 30 s. */
  stallTimeoutMs?: number;
  /** The engine's shared bandwidth limit. */
  bandwidth?: TokenBucket;
  /** Every body chunk's length, as it arrives (what crossed the network). */
  onBytes?: (n: number) => void;
  /** Delay before retry `attempt` (1-based). Default 250 ms · 2^(attempt-1). */
  backoffMs?: (attempt: number) => number;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A response body read as a byte stream: exact reads, skips and bounded sub-streams. */
export class ByteStream {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private ended = false;
  /** File offset of the next byte this stream hands out. */
  position: number;

  constructor(
    private readonly reader: { next(): Promise<IteratorResult<Uint8Array>>; dispose(): void },
    start: number,
    private readonly end: number,
    private readonly onChunk: (n: number) => Promise<void>,
    private readonly finish: () => void,
  ) {
    this.position = start;
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    let r: IteratorResult<Uint8Array>;
    try {
      r = await this.reader.next();
    } catch (err) {
      if (err instanceof DeltaUnavailable || err instanceof RangeRetryable) throw err;
      throw new RangeRetryable(`the body broke off at byte ${this.position + this.bufferedBytes}: ${messageOf(err)}`, { cause: err });
    }
    if (r.done === true) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    if (this.position + this.bufferedBytes + chunk.length > this.end) throw new DeltaUnavailable('archive_differs', `the server sent more than the ${this.end} bytes asked for`);
    await this.onChunk(chunk.length);
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    return true;
  }

  private early(): RangeRetryable {
    return new RangeRetryable(`the body ended at byte ${this.position + this.bufferedBytes}, before byte ${this.end}`);
  }

  /** The next chunk of at most `max` bytes. */
  private async nextChunk(max: number): Promise<Buffer> {
    while (this.bufferedBytes === 0) if (!(await this.fill())) throw this.early();
    const first = this.buffered[0]!;
    const n = Math.min(max, first.length);
    const out = first.subarray(0, n);
    if (n === first.length) this.buffered.shift();
    else this.buffered[0] = first.subarray(n);
    this.bufferedBytes -= n;
    this.position += n;
    return out;
  }

  /** Exactly `n` bytes. */
  async read(n: number): Promise<Buffer> {
    while (this.bufferedBytes < n) if (!(await this.fill())) throw this.early();
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const c = await this.nextChunk(need);
      parts.push(c);
      need -= c.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  /** Moves forward to file offset `to`, dropping what lies between. */
  async skipTo(to: number): Promise<void> {
    if (to < this.position) throw new Error(`cannot move back from ${this.position} to ${to}`);
    while (this.position < to) await this.nextChunk(to - this.position);
  }

  /** The next `n` bytes, chunk by chunk as they arrive. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      const c = await this.nextChunk(left);
      left -= c.length;
      yield c;
    }
  }

  close(): void {
    this.reader.dispose();
    this.finish();
  }
}

/** Ranged reads of one file; remembers its ETag so that every answer is of the same file. */
export class RangeReader {
  etag: string | null = null;
  /** Body bytes received (what crossed the network), all requests together. */
  bytesReceived = 0;
  requests = 0;

  constructor(readonly src: RangeSource) {}

  /**
   * Bytes [start, end) of the file as a stream; the caller reads it to `end` (or stops) and
   * closes it. `stop` ends this request early too (besides the source's signal).
   */
  async open(start: number, end: number, stop?: AbortSignal): Promise<ByteStream> {
    const src = this.src;
    if (start < 0 || end > src.size || start >= end) throw new Error(`bad range ${start}-${end} of ${src.size}`);
    const stallMs = src.stallTimeoutMs ?? DEFAULT_STALL_MS;
    const outer = stop === undefined ? src.signal : src.signal === undefined ? stop : AbortSignal.any([src.signal, stop]);
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(abortReason(outer));
    outer?.addEventListener('abort', onAbort, { once: true });
    let stalled = false;
    const stall = new StallTimer(stallMs, () => {
      stalled = true;
      ac.abort(new RangeRetryable(`no data for ${stallMs} ms`));
    });
    const finish = (): void => {
      stall.clear();
      outer?.removeEventListener('abort', onAbort);
      ac.abort();
    };
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity', Range: `bytes=${start}-${end - 1}` };
    if (this.etag !== null) headers['If-Range'] = this.etag;
    this.requests += 1;
    let res: FetchResponseLike;
    try {
      res = await src.fetch(src.url, { method: 'GET', headers, signal: ac.signal });
    } catch (err) {
      finish();
      if (outer?.aborted === true) throw abortReason(outer);
      throw new RangeRetryable(stalled ? `no answer within ${stallMs} ms` : `request failed: ${messageOf(err)}`, { cause: err });
    }
    try {
      this.check(res, start, end);
    } catch (err) {
      finish();
      // The body of a refused answer is not read; let the connection go.
      void drop(res);
      throw err;
    }
    if (res.body === null) {
      finish();
      throw new RangeRetryable('a 206 without a body');
    }
    stall.refresh();
    const reader = abortableReader(res.body[Symbol.asyncIterator](), ac.signal);
    const onChunk = async (n: number): Promise<void> => {
      this.bytesReceived += n;
      src.onBytes?.(n);
      stall.refresh();
      if (src.bandwidth !== undefined) {
        // Waiting for the bucket is not the server's silence.
        stall.pause();
        await src.bandwidth.take(n, outer);
        stall.resume();
      }
    };
    const wrapped = {
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        try {
          return await reader.next();
        } catch (err) {
          if (outer?.aborted === true) throw abortReason(outer);
          throw err;
        }
      },
      dispose: () => reader.dispose(),
    };
    return new ByteStream(wrapped, start, end, onChunk, finish);
  }

  /** Bytes [start, end) in memory (small reads: the end records, the central directory). */
  async read(start: number, end: number): Promise<Buffer> {
    return this.retrying(async () => {
      const s = await this.open(start, end);
      try {
        return await s.read(end - start);
      } finally {
        s.close();
      }
    });
  }

  /**
   * Runs `attempt` until it succeeds, retrying RangeRetryable failures with back-off; after
   * RANGE_ATTEMPTS failures the ranged path is given up ('network').
   */
  async retrying<T>(attempt: (n: number) => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt(n);
      } catch (err) {
        if (!(err instanceof RangeRetryable) || this.src.signal?.aborted === true) throw err;
        if (n >= RANGE_ATTEMPTS) throw new DeltaUnavailable('network', `${this.src.url}: ${err.message} (after ${n} attempts)`, { cause: err });
        await sleep((this.src.backoffMs ?? ((a: number) => 250 * 2 ** (a - 1)))(n), this.src.signal);
      }
    }
  }

  private check(res: FetchResponseLike, start: number, end: number): void {
    const url = this.src.url;
    if (res.status === 206) {
      const cr = parseContentRange(res.headers.get('content-range'));
      // The total first: a file of another size also clips the range asked for.
      if (cr !== null && cr.total !== this.src.size) throw new DeltaUnavailable('archive_differs', `${url}: the file is ${cr.total ?? 'of unknown size'} bytes, the signed size is ${this.src.size}`);
      if (cr === null || cr.start !== start || cr.end !== end - 1) throw new DeltaUnavailable('range_ignored', `${url}: asked for bytes ${start}-${end - 1}, got Content-Range "${res.headers.get('content-range') ?? ''}"`);
      const etag = strongEtag(res.headers.get('etag'));
      if (this.etag !== null && etag !== null && etag !== this.etag) throw new DeltaUnavailable('archive_differs', `${url}: the file changed between requests (ETag ${this.etag} → ${etag})`);
      this.etag ??= etag;
      return;
    }
    if (res.status === 200) throw new DeltaUnavailable('range_ignored', `${url}: the server answered a ranged request with the whole file (200)`);
    if (res.status === 404 || res.status === 410 || res.status === 416) throw new DeltaUnavailable('archive_differs', `${url}: HTTP ${res.status} for bytes ${start}-${end - 1}`);
    if (res.status >= 500 || res.status === 408 || res.status === 429) throw new RangeRetryable(`${url}: HTTP ${res.status}`);
    throw new DeltaUnavailable('range_ignored', `${url}: HTTP ${res.status} for a ranged request`);
  }
}

async function drop(res: FetchResponseLike): Promise<void> {
  try {
    const it = res.body?.[Symbol.asyncIterator]();
    await it?.return?.();
  } catch {
    // nothing to release
  }
}
