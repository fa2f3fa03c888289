// Abort plumbing for the downloader: every wait (a request, a body read, a back-off, a token
// bucket, a network probe) must end at once when the caller aborts, with the caller's reason.

export function abortReason(signal: AbortSignal | undefined): unknown {
  const r: unknown = signal?.reason;
  return r ?? new DOMException('This operation was aborted', 'AbortError');
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
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
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
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

/**
 * Reads an async iterator with every read racing the signal. Not every FetchLike is trusted to
 * end its body on abort; one listener per body (not per read) keeps this cheap per chunk.
 */
export function abortableReader<T>(it: AsyncIterator<T>, signal: AbortSignal): { next(): Promise<IteratorResult<T>>; dispose(): void } {
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

/**
 * "No bytes for `ms`" → `onFire`. Refreshed per chunk; paused while the download itself holds the
 * bytes back (a bandwidth limit), which is not the server's silence.
 */
export class StallTimer {
  private timer: NodeJS.Timeout | null;
  constructor(
    private readonly ms: number,
    private readonly onFire: () => void,
  ) {
    this.timer = setTimeout(onFire, ms);
  }
  refresh(): void {
    this.timer?.refresh();
  }
  pause(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
  resume(): void {
    if (this.timer === null) this.timer = setTimeout(this.onFire, this.ms);
  }
  clear(): void {
    this.pause();
  }
}
