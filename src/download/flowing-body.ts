// node-fetch destroys a response body with an error when the connection drops, and an async
// iterator over a destroyed stream throws away what it had buffered but not yet yielded: a
// truncated download would lose its last bytes and resume from an earlier offset. This
// adapter starts reading in flowing mode at once (when the response arrives, not when the
// consumer first asks), keeps every byte with backpressure, and throws only after the last
// byte is yielded.
import type { Readable } from 'node:stream';

// Read ahead of the consumer at most this much. Small on purpose: bytes read ahead of a body
// that is then cut short (a piece split for another connection) were served for nothing.
const HIGH_WATER = 512 * 1024;

export function flowingBody(src: Readable): AsyncIterable<Uint8Array> {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  src.on('data', (chunk: Buffer) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= HIGH_WATER) src.pause();
    notify();
  });
  src.once('end', () => {
    ended = true;
    notify();
  });
  src.once('error', (err: Error) => {
    failure = err;
    notify();
  });
  // Destroyed without an error (an abort) still ends the body: never wait on a closed stream.
  src.once('close', () => {
    if (!ended && failure === undefined) failure = new Error('the response body was closed before its end');
    notify();
  });

  async function* read(): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const chunk = queue.shift();
        if (chunk !== undefined) {
          queued -= chunk.length;
          if (queued < HIGH_WATER / 2 && src.isPaused() && !src.destroyed) src.resume();
          yield chunk;
          continue;
        }
        if (failure !== undefined) throw failure;
        if (ended) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      // The consumer stopped early (size cap, abort): release the connection.
      if (!ended) src.destroy();
    }
  }
  return { [Symbol.asyncIterator]: read };
}
