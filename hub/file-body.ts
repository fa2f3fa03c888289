// The bytes of a stored file as an answer's body, and the one writer of them. Profiled on a
// 256 MiB download, fastify + @fastify/send + fs.createReadStream spent a quarter of the hub's
// time collecting garbage: every 1 MiB read got a fresh buffer. Here a few buffers are reused
// (read the next one from disk while the socket drains the last), and written with
// ServerResponse.write, whose callback says when a buffer may be filled again.
import type { ServerResponse } from 'node:http';
import type { FileHandle } from 'node:fs/promises';
import type { Headers } from './response.js';

/** Bytes per read and write: past 1 MiB, larger reads gained nothing measurable on loopback. */
export const CHUNK_BYTES = 1 << 20;
/** Buffers in flight per download: one being read, the others queued on the socket. */
const DEPTH = 4;
/** Buffers kept for the next downloads (not per download): 16 MiB at most. */
const SPARE_LIMIT = 16;
const spare: Buffer[] = [];

function takeBuffer(): Buffer {
  // Slow (unpooled) allocation: each buffer is long-lived and reused, never sliced.
  return spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES);
}

function giveBack(buf: Buffer): void {
  if (spare.length < SPARE_LIMIT) spare.push(buf);
}

/** `length` bytes of `file` from `start`; the writer closes the handle. 0 for HEAD. */
export class FileBody {
  constructor(
    readonly file: FileHandle,
    readonly start: number,
    readonly length: number,
  ) {}
}

class ClientGone extends Error {}

/** Awaits that end early, with ClientGone, when the response closes before it finished. */
class CloseGuard {
  private gone = false;
  private readonly waiting = new Set<(err: Error) => void>();
  private readonly onClose = (): void => {
    this.gone = true;
    for (const reject of this.waiting) reject(new ClientGone());
    this.waiting.clear();
  };

  constructor(private readonly res: ServerResponse) {
    res.once('close', this.onClose);
  }

  wait<T>(p: Promise<T>): Promise<T> {
    if (this.gone) {
      // Nobody will await `p` now; its failure (e.g. ECONNRESET from a queued write) is expected.
      p.catch(() => undefined);
      return Promise.reject(new ClientGone());
    }
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject);
      p.then(
        (v) => {
          this.waiting.delete(reject);
          resolve(v);
        },
        (err: unknown) => {
          this.waiting.delete(reject);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  dispose(): void {
    this.res.off('close', this.onClose);
  }
}

/**
 * Writes the status, headers and the file's bytes, then closes the file. Never throws: once
 * the headers are out, a failure (the client went away, the file shrank) can only end the
 * connection, which is what it does.
 */
export async function writeFileBody(res: ServerResponse, status: number, headers: Headers, body: FileBody): Promise<void> {
  const guard = new CloseGuard(res);
  // Buffers whose write has not called back are never reused: the socket may still hold them.
  const queued: Promise<Buffer>[] = [];
  try {
    res.writeHead(status, headers);
    let position = body.start;
    let left = body.length;
    while (left > 0) {
      const oldest = queued.length >= DEPTH ? queued.shift() : undefined;
      const buf = oldest === undefined ? takeBuffer() : await guard.wait(oldest);
      const { bytesRead } = await guard.wait(body.file.read(buf, 0, Math.min(buf.length, left), position));
      if (bytesRead === 0) throw new Error('the file is shorter than its answer says');
      position += bytesRead;
      left -= bytesRead;
      const chunk = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
      const written = new Promise<Buffer>((resolve, reject) => {
        res.write(chunk, (err) => (err ? reject(err) : resolve(buf)));
      });
      // Handled now, so a write failing while the loop awaits something else is no unhandled
      // rejection; the loop still sees the failure when it comes to this buffer.
      written.catch(() => undefined);
      queued.push(written);
    }
    for (const buf of await guard.wait(Promise.all(queued))) giveBack(buf);
    res.end();
  } catch (err) {
    // Content-Length promised bytes that will not come: only closing the connection says so.
    if (!(err instanceof ClientGone)) res.destroy();
  } finally {
    guard.dispose();
    await body.file.close().catch(() => undefined);
  }
}
