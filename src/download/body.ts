// Reads one response body into its piece of the part: chunks are size-checked on arrival,
// paid for at the bandwidth limit, coalesced into ~1 MiB buffers, each written once (the write
// overlaps the next buffer's fill); a chunk of 64 KiB or more (bulk-get.ts reads up to 1 MiB)
// is written as it is. The piece may shrink while it is read (another connection took its
// upper half): the body is then cut where the piece now ends.
import { abortableReader, type StallTimer } from './abort.js';
import { diskError, errMessage, networkError, RetryableAttempt, sizeExceeded } from './errors.js';
import type { Piece } from './segments.js';
import type { Transfer, Worker } from './transfer.js';

/** The bytes [start, end) of the file a response carries. */
export interface ResponseSpan {
  start: number;
  end: number;
}

const WRITE_BUFFER_BYTES = 1024 * 1024;
/** A chunk this big is written on its own instead of copied into the write buffer. */
const DIRECT_WRITE_BYTES = 64 * 1024;
/** Longest time received bytes wait in memory before they are written to the part. */
const FLUSH_MS = 250;

/** True when the body delivered the whole span, or the piece is complete. */
export async function streamBody(
  t: Transfer,
  w: Worker,
  piece: Piece,
  body: AsyncIterable<Uint8Array>,
  span: ResponseSpan,
  signal: AbortSignal,
  stall: StallTimer,
): Promise<boolean> {
  const cfg = t.cfg;
  w.buffers ??= [Buffer.allocUnsafe(WRITE_BUFFER_BYTES), Buffer.allocUnsafe(WRITE_BUFFER_BYTES)];
  const buffers = w.buffers;
  let which = 0;
  let buf = buffers[0];
  let fill = 0;
  let bufPos = span.start; // file offset of buf[0]
  let at = span.start; // file offset of the next body byte
  let pending: Promise<unknown> | null = null; // resolves to an error or null, never rejects
  let writeFailed = false; // after a failed write nothing more may be written (no holes)

  const waitPending = async (): Promise<void> => {
    if (pending === null) return;
    const err = await pending;
    pending = null;
    stall.refresh(); // time spent waiting on our own disk is not a stall
    if (err !== null) {
      writeFailed = true;
      throw diskError(cfg.part, err);
    }
  };
  let lastFlush = Date.now();
  /** Writes `data` at bufPos once the write before it is done; its end is awaited by waitPending. */
  const startWrite = async (data: Buffer): Promise<void> => {
    lastFlush = Date.now();
    await waitPending();
    t.guard();
    const pos = bufPos;
    pending = t.part.write(data, pos).then(
      () => {
        piece.pos = pos + data.length;
        t.written();
        return null;
      },
      (err: unknown) => err,
    );
    bufPos += data.length;
  };
  const flush = async (): Promise<void> => {
    if (fill === 0) {
      lastFlush = Date.now();
      return;
    }
    await startWrite(buf.subarray(0, fill));
    which ^= 1;
    buf = buffers[which] ?? buf;
    fill = 0;
  };

  /** A chunk written as it came (a view, not a copy), and done before the next is asked for: it may be lent. */
  const writeDirect = async (chunk: Uint8Array): Promise<void> => {
    await startWrite(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    await waitPending();
  };

  const it = body[Symbol.asyncIterator]();
  const reader = abortableReader(it, signal);
  let ended = false;
  let discard = false;
  try {
    for (;;) {
      let r: IteratorResult<Uint8Array>;
      const waitFrom = performance.now();
      try {
        r = await reader.next();
        const waited = performance.now() - waitFrom;
        t.idleMs += waited;
        piece.idle += waited;
      } catch (err) {
        if (signal.aborted) throw signal.reason; // stall or abort
        // Connection reset / premature close: keep what we have and resume from there.
        throw new RetryableAttempt(networkError(cfg.url, `connection lost at byte ${piece.recv}: ${errMessage(err)}`, true, err), false, true);
      }
      if (r.done === true) {
        ended = true;
        break;
      }
      stall.refresh();
      const chunk = r.value;
      if (chunk.length === 0) continue;
      if (cfg.bandwidth !== undefined) {
        stall.pause(); // holding bytes back is our doing, not the server's silence
        await cfg.bandwidth.take(chunk.length, signal);
        stall.resume();
      }
      if (at + chunk.length > span.end) {
        discard = true;
        throw sizeExceeded(cfg.url, cfg.expectedSize, `server sent more than ${span.end - span.start} bytes from byte ${span.start}`);
      }
      t.stats.bytesFetched += chunk.length;
      t.flowing(w);
      at += chunk.length;
      let data = chunk.subarray(0, Math.max(0, Math.min(chunk.length, piece.end - piece.recv)));
      piece.recv += data.length;
      t.received += data.length;
      if (fill === 0 && data.length >= DIRECT_WRITE_BYTES) {
        // Big enough to be written as it came, without the copy; written before the next chunk
        // is asked for, since the chunk may be lent (bulk-get.ts).
        await writeDirect(data);
        data = data.subarray(data.length);
      }
      while (data.length > 0) {
        const n = Math.min(data.length, buf.length - fill);
        buf.set(n === data.length ? data : data.subarray(0, n), fill);
        fill += n;
        data = data.subarray(n);
        if (fill === buf.length) await flush();
      }
      // A slow transfer fills the buffer slowly: write at least every FLUSH_MS, so that a
      // killed process loses a fraction of a second of data, not a whole buffer.
      if (fill > 0 && Date.now() - lastFlush >= FLUSH_MS) await flush();
      t.emitProgress();
      // Cut short by a split: the rest of this body is another connection's. (A body that ends
      // where the piece ends is read to its end, so that extra bytes are noticed.)
      if (piece.recv >= piece.end && piece.end < span.end) return true;
    }
  } finally {
    reader.dispose();
    if (!ended) {
      try {
        void Promise.resolve(it.return?.()).catch(() => undefined);
      } catch {
        // ignore: the connection is aborted anyway
      }
    }
    if (discard || writeFailed || t.guardFailed || w.superseded) {
      await waitPending().catch(() => undefined); // the part is void, or the error is already on its way
    } else {
      // Keep every byte we received: a retry or a later call resumes after them.
      await flush();
      await waitPending();
    }
  }
  return at >= span.end;
}
