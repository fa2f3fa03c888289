// yauzl over our own descriptor reader. yauzl still parses the central directory, validates
// names and sizes and inflates; the reader only changes how bytes come off the disk:
//
// - entry data is read in 1 MiB chunks (yauzl's own fd reader uses the 16 KiB stream default,
//   which turns a 1 GB stored model file into 65 536 reads through three streams);
// - the small reads (46-byte central records, names, 30-byte local headers, the data of small
//   entries) are served from two cached 1 MiB windows, one following the central directory and
//   one following the entries' data, instead of one thread-pool round trip each.
//
// The archive is never held in memory: at most the two windows and the streams' buffers.
import { close, fstat, open, read } from 'node:fs';
import { Readable } from 'node:stream';
import yauzl from 'yauzl';

export const READ_CHUNK = 1024 * 1024;
const WINDOW = 1024 * 1024;

interface Window {
  start: number;
  data: Buffer;
}

type ReadCallback = (err: Error | null, bytesRead?: number) => void;

/**
 * Bytes [start, end) of a descriptor, READ_CHUNK at a time. Unlike fs.ReadStream it never
 * closes the descriptor (yauzl destroys entry streams when they are done; the descriptor
 * belongs to the reader and is closed when yauzl releases its last reference).
 */
class RangeStream extends Readable {
  private pos: number;

  constructor(
    private readonly fd: number,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.pos = start;
  }

  override _read(): void {
    const want = Math.min(READ_CHUNK, this.end - this.pos);
    if (want <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(want);
    read(this.fd, buf, 0, want, this.pos, (err, n) => {
      if (this.destroyed) return;
      if (err !== null) this.destroy(err);
      else if (n === 0) this.push(null); // EOF early: yauzl's byte counter reports it
      else {
        this.pos += n;
        this.push(n === want ? buf : buf.subarray(0, n));
      }
    });
  }
}

class FdReader extends yauzl.RandomAccessReader {
  private readonly fd: number;
  private readonly size: number;
  /** [0] serves the central directory, [1] the local headers; the older one is replaced. */
  private windows: Window[] = [];

  constructor(fd: number, size: number) {
    super();
    this.fd = fd;
    this.size = size;
  }

  override _readStreamForRange(start: number, end: number): Readable {
    return new RangeStream(this.fd, start, end);
  }

  /** The cached bytes [position, position + length), or undefined when no window holds them all. */
  private cached(position: number, length: number): Buffer | undefined {
    for (const w of this.windows) {
      if (position >= w.start && position + length <= w.start + w.data.length) {
        return w.data.subarray(position - w.start, position - w.start + length);
      }
    }
    return undefined;
  }

  /** Reads a new window starting at `position` (the oldest of the two is dropped). */
  private fill(position: number, callback: (err: Error | null, w?: Window) => void): void {
    const want = Math.max(0, Math.min(WINDOW, this.size - position));
    const data = Buffer.allocUnsafe(want);
    read(this.fd, data, 0, want, position, (err, n) => {
      if (err !== null) {
        callback(err);
        return;
      }
      const w = { start: position, data: n === want ? data : data.subarray(0, n) };
      this.windows = [w, ...this.windows].slice(0, 2);
      callback(null, w);
    });
  }

  override read(buffer: Buffer, offset: number, length: number, position: number, callback: ReadCallback): void {
    const hit = this.cached(position, length);
    if (hit !== undefined) {
      hit.copy(buffer, offset);
      queueMicrotask(() => callback(null, length));
      return;
    }
    if (length > WINDOW) {
      read(this.fd, buffer, offset, length, position, (err, n) => callback(err, n));
      return;
    }
    this.fill(position, (err, w) => {
      if (err !== null || w === undefined) {
        callback(err);
        return;
      }
      const copied = Math.min(length, w.data.length);
      w.data.copy(buffer, offset, 0, copied);
      callback(null, copied);
    });
  }

  /** Exactly `length` bytes at `position`; small ranges come from (or refill) a window. */
  readRange(position: number, length: number): Promise<Buffer> {
    const hit = this.cached(position, length);
    if (hit !== undefined) return Promise.resolve(hit);
    if (length <= WINDOW && position + length <= this.size) {
      return new Promise((resolve, reject) => {
        this.fill(position, (err, w) => {
          if (err !== null || w === undefined) reject(err ?? new Error('read failed'));
          else if (w.data.length < length) reject(new Error(`unexpected EOF at offset ${position + w.data.length}`));
          else resolve(w.data.subarray(0, length));
        });
      });
    }
    const buf = Buffer.allocUnsafe(length);
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        if (done === length) {
          resolve(buf);
          return;
        }
        read(this.fd, buf, done, length - done, position + done, (err, n) => {
          if (err !== null) reject(err);
          else if (n === 0) reject(new Error(`unexpected EOF at offset ${position + done}`));
          else step(done + n);
        });
      };
      step(0);
    });
  }

  override close(callback: (err: Error | null) => void): void {
    this.windows = [];
    close(this.fd, (err) => callback(err ?? null));
  }
}

function fdOpen(file: string): Promise<number> {
  return new Promise((resolve, reject) => open(file, 'r', (err, fd) => (err !== null ? reject(err) : resolve(fd))));
}

function fdSize(fd: number): Promise<number> {
  return new Promise((resolve, reject) => fstat(fd, (err, st) => (err !== null ? reject(err) : resolve(st.size))));
}

/** Thrown for failures of the file system (not of the zip format) while opening. */
export class ArchiveIoError extends Error {
  constructor(readonly inner: unknown) {
    super(inner instanceof Error ? inner.message : String(inner));
    this.name = 'ArchiveIoError';
  }
}

/**
 * Open `file` for sequential, lazy reading with the same checks as src/zip/open-zip.ts:
 * validateEntrySizes, strictFileNames (backslashes are an error, not a separator), no autoClose.
 * File-system errors are wrapped in ArchiveIoError; anything else is yauzl refusing the format.
 */
export interface Archive {
  zip: yauzl.ZipFile;
  /** The stored (compressed) bytes of an entry, read in one go: for small entries only. */
  readEntryData(entry: yauzl.Entry): Promise<Buffer>;
}

export async function openArchive(file: string): Promise<Archive> {
  let fd: number;
  let size: number;
  try {
    fd = await fdOpen(file);
  } catch (err) {
    throw new ArchiveIoError(err);
  }
  try {
    size = await fdSize(fd);
  } catch (err) {
    close(fd, () => undefined);
    throw new ArchiveIoError(err);
  }
  const reader = new FdReader(fd, size);
  return new Promise((resolve, reject) => {
    yauzl.fromRandomAccessReader(
      reader,
      size,
      { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: true, decodeStrings: true },
      (err, zip) => {
        if (err !== null) {
          // Nothing holds a reference yet: close the descriptor ourselves.
          close(fd, () => undefined);
          reject(err);
        } else {
          resolve({
            zip,
            readEntryData: async (entry) => {
              const { fileDataStart } = await zip.readLocalFileHeaderPromise(entry, { minimal: true });
              return reader.readRange(fileDataStart, entry.compressedSize);
            },
          });
        }
      },
    );
  });
}

/**
 * Pull-style iteration over a lazyEntries zip: resolves the next entry, or null at the end.
 * Installs its listeners once; an 'error' from yauzl rejects the pending (or next) call.
 */
export function entryPuller(zip: yauzl.ZipFile): () => Promise<yauzl.Entry | null> {
  let pending: { resolve: (e: yauzl.Entry | null) => void; reject: (err: Error) => void } | undefined;
  let failure: Error | undefined;
  let ended = false;
  zip.on('entry', (entry: yauzl.Entry) => {
    const p = pending;
    pending = undefined;
    p?.resolve(entry);
  });
  zip.on('end', () => {
    ended = true;
    const p = pending;
    pending = undefined;
    p?.resolve(null);
  });
  zip.on('error', (err: unknown) => {
    failure ??= err instanceof Error ? err : new Error(String(err));
    const p = pending;
    pending = undefined;
    p?.reject(failure);
  });
  return () =>
    new Promise((resolve, reject) => {
      if (failure !== undefined) reject(failure);
      else if (ended) resolve(null);
      else {
        pending = { resolve, reject };
        zip.readEntry();
      }
    });
}

export function openEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => (err !== null ? reject(err) : resolve(stream)));
  });
}
