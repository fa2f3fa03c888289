// A size-bounded log file: `<file>` grows to `maxBytes`, then becomes `<file>.1` (older ones
// shift to `.2` … `.<keep>`, the oldest is dropped). Synchronous on purpose: the supervisor is a
// tiny process whose only job is copying a service's output, in order, to disk.
//
// Imports only node: builtins, like the supervisor that uses it.
import { closeSync, fstatSync, ftruncateSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_LOG_KEEP = 3;

export interface RotatingLogOptions {
  /** Size bound of each file; every file stays at or below it. */
  maxBytes?: number;
  /** How many rotated files to keep (`.1` … `.keep`); 0 keeps none. */
  keep?: number;
}

export class RotatingLog {
  readonly file: string;
  readonly maxBytes: number;
  readonly keep: number;
  private fd: number | null;
  private size: number;

  constructor(file: string, options: RotatingLogOptions = {}) {
    this.file = file;
    this.maxBytes = Math.max(1, Math.floor(options.maxBytes ?? DEFAULT_LOG_MAX_BYTES));
    this.keep = Math.max(0, Math.floor(options.keep ?? DEFAULT_LOG_KEEP));
    this.fd = openSync(file, 'a', 0o644);
    this.size = fstatSync(this.fd).size;
  }

  /** Append bytes; a chunk that fits in a fresh file is never split across two files. */
  write(data: Buffer | string): void {
    let chunk = typeof data === 'string' ? Buffer.from(data) : data;
    while (chunk.length > 0) {
      if (this.fd === null) return;
      if (this.size > 0 && this.size + chunk.length > this.maxBytes) {
        this.rotate();
        if (this.size > 0) {
          // Rotation is impossible right now; write rather than lose output, and retry next time.
          this.writeAll(chunk);
          return;
        }
      }
      const piece = chunk.subarray(0, Math.max(1, this.maxBytes - this.size));
      this.writeAll(piece);
      chunk = chunk.subarray(piece.length);
    }
  }

  /** One line of the supervisor's own, marked so it stands out from the service's output. */
  note(text: string): void {
    this.write(`[modelhub ${new Date().toISOString()}] ${text}\n`);
  }

  close(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } finally {
      this.fd = null;
    }
  }

  private writeAll(buf: Buffer): void {
    let off = 0;
    while (off < buf.length && this.fd !== null) {
      off += writeSync(this.fd, buf, off, buf.length - off);
    }
    this.size += buf.length;
  }

  private rotate(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
    try {
      if (this.keep === 0) {
        rmSync(this.file, { force: true });
      } else {
        for (let i = this.keep - 1; i >= 1; i--) {
          try {
            renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
          } catch {
            // absent: nothing to shift
          }
        }
        renameSync(this.file, `${this.file}.1`);
      }
    } catch {
      // The file could not be moved (on Windows something may hold it open): keep the bound by
      // starting the same file over rather than letting it grow without limit.
      try {
        const fd = openSync(this.file, 'r+');
        ftruncateSync(fd, 0);
        closeSync(fd);
      } catch {
        // nothing more to do; the reopen below appends
      }
    }
    this.fd = openSync(this.file, 'a', 0o644);
    this.size = fstatSync(this.fd).size;
  }
}
