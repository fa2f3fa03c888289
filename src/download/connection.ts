// One connection of a download: it takes a piece, asks for it (Range from where the piece
// stands, If-Range with the file's ETag), checks the answer, and streams the body into the part
// (body.ts), again and again until the piece is complete; then it takes the next piece.
//
// Retry rules, per connection: an HTTP error or a broken body spends one of maxAttempts, with
// back-off; a silent body is a stall (maxStalls for the whole download, no back-off); no HTTP
// answer at all is an outage: the download waits for the network (network-wait.ts), and a broken
// body just before it is given back, since it was the outage starting.
import { ModelhubError } from '../errors.js';
import { abortable, abortReason, sleep, StallTimer, throwIfAborted } from './abort.js';
import { streamBody, type ResponseSpan } from './body.js';
import { errMessage, networkError, OutageError, PartLost, RetryableAttempt, sizeExceeded, StallError, Superseded } from './errors.js';
import type { FetchResponseLike } from './fetch-like.js';
import { acceptsRanges, parseContentLength, parseContentRange, rangeHeader, strongEtag } from './http.js';
import { isOutage } from './network-wait.js';
import type { Piece } from './segments.js';
import type { Transfer, Worker } from './transfer.js';

export async function runWorker(t: Transfer, w: Worker): Promise<void> {
  try {
    for (;;) {
      w.piece ??= t.nextPiece(w);
      if (w.piece === null) return;
      await fetchPiece(t, w);
      t.plan.release(w.piece);
      w.piece = null;
    }
  } catch (err) {
    // Taken over by a restart, or a split given back: the work is someone else's now.
    if (w.superseded || err instanceof Superseded) return;
    throw err;
  }
}

async function fetchPiece(t: Transfer, w: Worker): Promise<void> {
  const cfg = t.cfg;
  for (let p = current(w); p.recv < p.end; p = current(w)) {
    throwIfAborted(w.signal);
    try {
      const whole = await attempt(t, w, p);
      const now = current(w); // a restart may have given this connection a new piece
      if (now.recv >= now.end || whole) continue; // whole: the server sent all it announced, less than asked
      throw new RetryableAttempt(networkError(cfg.url, `body ended early at byte ${now.recv} of ${now.end}`, true), false, true);
    } catch (err) {
      if (w.signal.aborted) throw abortReason(w.signal);
      if (err instanceof StallError) {
        t.stats.stalls += 1;
        if (!err.answered) {
          await t.waitForNetwork(w, err); // no answer in time: the network may be away
          continue;
        }
        t.bodyStalls += 1;
        if (t.bodyStalls > cfg.maxStalls) {
          throw new ModelhubError('NETWORK_ERROR', `${cfg.url}: stalled ${t.bodyStalls} times (${err.message})`, {
            cause: err,
            retryable: true,
            details: { url: cfg.url, stalls: t.bodyStalls, at: current(w).pos },
          });
        }
        continue; // a stall does not spend an attempt, and needs no back-off
      }
      if (err instanceof OutageError) {
        if (w.lossPending) {
          w.failures -= 1;
          w.lossPending = false;
        }
        await t.waitForNetwork(w, err);
        continue;
      }
      if (err instanceof RetryableAttempt) {
        if (err.restart) await t.restart(w, false);
        w.failures += 1;
        w.lossPending = err.loss;
        if (w.failures >= cfg.maxAttempts) {
          throw new ModelhubError(err.error.code, `${err.error.message} (gave up after ${w.failures} failed attempts)`, {
            cause: err.error.cause,
            retryable: err.error.retryable,
            details: { ...err.error.details, attempts: t.stats.requests, failures: w.failures },
          });
        }
        await sleep(Math.max(0, cfg.backoffMs(w.failures)), w.signal);
        continue;
      }
      throw err;
    }
  }
}

function current(w: Worker): Piece {
  if (w.piece === null) throw new Superseded('no piece');
  return w.piece;
}

/** One HTTP request for the rest of piece `p`. True when the body delivered all its response announced. */
async function attempt(t: Transfer, w: Worker, p: Piece): Promise<boolean> {
  const cfg = t.cfg;
  t.stats.requests += 1;
  const ac = new AbortController();
  const onAbort = (): void => ac.abort(abortReason(w.signal));
  w.signal.addEventListener('abort', onAbort, { once: true });
  let answered = false;
  const stall = new StallTimer(cfg.stallTimeoutMs, () => ac.abort(new StallError(cfg.stallTimeoutMs, answered)));
  let streaming: Piece | null = null;
  try {
    throwIfAborted(w.signal);
    // Bytes written to a part that was deleted meanwhile are lost: start over instead.
    if (!(await t.part.isStillAt())) throw new PartLost(cfg.part);
    if (p.recv !== p.pos) {
      t.received -= p.recv - p.pos; // bytes received but never written are fetched again
      p.recv = p.pos;
    }
    const start = p.recv;
    const ranged = start > 0 || p.end < cfg.expectedSize;
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
    if (ranged) {
      headers['Range'] = rangeHeader(start, p.end, cfg.expectedSize);
      if (t.etag !== null) headers['If-Range'] = t.etag;
    }

    let res: FetchResponseLike;
    try {
      // bulk: streamBody is done with each chunk (copied, or written and awaited) before it reads the next.
      res = await abortable(cfg.fetch(cfg.url, { method: 'GET', headers, signal: ac.signal, bulk: true }), ac.signal);
    } catch (err) {
      if (ac.signal.aborted) throw ac.signal.reason;
      if (isOutage(err)) throw new OutageError(cfg.url, err);
      throw new RetryableAttempt(networkError(cfg.url, `request failed: ${errMessage(err)}`, true, err));
    }
    answered = true;
    t.answered(w);
    stall.refresh();

    const span = await checkResponse(t, w, p, res, start, ranged);
    if (span === null) return true; // 416 for a piece that is complete
    const piece = current(w);
    const contentLength = parseContentLength(res.headers.get('content-length'));
    if (contentLength !== null && contentLength > span.end - span.start) {
      throw sizeExceeded(cfg.url, cfg.expectedSize, `server announces ${contentLength} bytes from byte ${span.start}`);
    }
    const etag = strongEtag(res.headers.get('etag'));
    t.etag = etag;
    await t.persistNow(); // which file these bytes belong to is on disk before they are

    if (res.body === null) return false;
    piece.respEnd = span.end;
    piece.since = performance.now();
    piece.base = piece.recv;
    piece.idle = 0;
    streaming = piece;
    return await streamBody(t, w, piece, res.body, span, ac.signal, stall);
  } catch (err) {
    if (err instanceof ModelhubError || err instanceof RetryableAttempt || err instanceof OutageError || err instanceof PartLost || err instanceof Superseded) throw err;
    if (ac.signal.aborted) throw ac.signal.reason; // stall or abort
    throw err;
  } finally {
    if (streaming !== null) {
      streaming.respEnd = 0;
      streaming.since = 0;
    }
    stall.clear();
    w.signal.removeEventListener('abort', onAbort);
    ac.abort(); // release the connection if we are leaving early; harmless after a complete body
  }
}

/**
 * Status and range checks. Returns the span of the file the body carries, or null when there
 * is no body to read and the piece is complete. May restart the download from zero (a 200 to a
 * ranged request carries the whole file: it is taken from byte 0, never appended).
 */
async function checkResponse(t: Transfer, w: Worker, p: Piece, res: FetchResponseLike, start: number, ranged: boolean): Promise<ResponseSpan | null> {
  const cfg = t.cfg;
  const size = cfg.expectedSize;
  const status = res.status;
  // strictServer (a mirror): an answer that would void the bytes we have ends this source's
  // turn instead; the next source resumes the part as it is.
  const refuse = (why: string): ModelhubError => new ModelhubError('NETWORK_ERROR', `${cfg.url}: ${why}`, { retryable: false, details: { url: cfg.url, status } });
  const unlessStrict = (why: string): string => {
    if (cfg.strictServer && (t.received > 0 || t.plan.written() > 0)) throw refuse(why);
    return why;
  };
  if (status === 206) {
    const cr = parseContentRange(res.headers.get('content-range'));
    if (cr === null || cr.start !== start || cr.total !== size || cr.end < cr.start || cr.end >= size) {
      throw new RetryableAttempt(networkError(cfg.url, unlessStrict(`206 with Content-Range "${res.headers.get('content-range') ?? ''}", expected bytes ${start}-…/${size}`), true), true);
    }
    const etag = strongEtag(res.headers.get('etag'));
    if (start > 0 && t.etag !== null && etag !== null && etag !== t.etag) {
      throw new RetryableAttempt(networkError(cfg.url, unlessStrict(`206 for ETag ${etag}, but the part is of ${t.etag}`), true), true);
    }
    t.rangesOk = true;
    return { start, end: cr.end + 1 };
  }
  if (status === 200) {
    // A whole file of another length is not this file (a CDN's 200 "not found" page, a copy
    // cut short): nothing of it is worth writing.
    const length = parseContentLength(res.headers.get('content-length'));
    if (cfg.strictServer && length !== null && length !== size) throw refuse(`200 with Content-Length ${length}, the signed size is ${size}`);
    if (!ranged) {
      t.rangesOk ??= acceptsRanges(res.headers.get('accept-ranges'));
      return { start: 0, end: size };
    }
    // A 200 to a ranged request: the server ignored Range, or If-Range said the file changed.
    const etag = strongEtag(res.headers.get('etag'));
    const changed = t.etag !== null && etag !== null && etag !== t.etag;
    t.rangesOk = changed ? acceptsRanges(res.headers.get('accept-ranges')) : false;
    // A new connection of a download in segments: the one it split from still reads a body that
    // covers its bytes; hand them back and go on with one connection.
    if (!changed && t.plan.undoSplit(p)) throw new Superseded('the server ignores Range');
    unlessStrict(changed ? `200 to a ranged request: ETag ${etag ?? ''} instead of ${t.etag ?? ''}` : '200 to a ranged request: the server ignores Range');
    await t.restart(w, true);
    return { start: 0, end: size };
  }
  if (status === 416) {
    if (p.recv >= p.end) return null;
    throw new RetryableAttempt(networkError(cfg.url, unlessStrict(`416 for a range from byte ${start}`), true), true);
  }
  if (status === 404) {
    throw new ModelhubError('NOT_FOUND', `${cfg.url}: 404 Not Found`, { retryable: false, details: { url: cfg.url, status } });
  }
  if (status >= 500 || status === 408 || status === 429) {
    throw new RetryableAttempt(networkError(cfg.url, `HTTP ${status}`, true, undefined, status));
  }
  throw networkError(cfg.url, `HTTP ${status}`, false, undefined, status);
}
