// The `.part` file: writes at offsets from any number of connections, and the file's SHA-256
// computed once, in order, while they write. The hash frontier is the end of the bytes hashed
// so far. A write that starts at the frontier is hashed from memory, on its way to the disk (one
// connection: every byte, never read back). A write ahead of the frontier just goes to disk;
// when the frontier reaches it (the piece before it completed), it is read back from disk and
// hashed, and `readBack` says how much that cost.
import { createHash, type Hash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { ModelhubError } from '../errors.js';
import { isErrno } from './errors.js';

const READ_BUFFER_BYTES = 1024 * 1024;

export class PartFile {
  private hash: Hash = createHash('sha256');
  private frontier = 0;
  /** Completed writes (and bytes found on disk), merged and sorted. */
  private ranges: [number, number][] = [];
  /** Bytes [0, prefix) are on disk: what a reader following the download may read. */
  private prefix = 0;
  private catching: Promise<void> | null = null;
  private catchError: unknown = null;
  private generation = 0;
  private closed = false;
  private readBuf: Buffer | null = null;
  /** Bytes read back from disk to be hashed; time spent waiting for those reads, and hashing them. */
  readonly readBack = { bytes: 0, readMs: 0, hashMs: 0 };

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly ino: bigint,
    private readonly onFlushed: ((bytesOnDisk: number) => void) | undefined,
  ) {}

  static async open(file: string, onFlushed: ((bytesOnDisk: number) => void) | undefined): Promise<PartFile> {
    const fh = await open(file, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    try {
      const st = await fh.stat({ bigint: true });
      return new PartFile(file, fh, st.ino, onFlushed);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  /** Bytes hashed so far. */
  get hashed(): number {
    return this.frontier;
  }

  /** Still the file at `path`? (Someone may have deleted or replaced the part.) */
  async isStillAt(): Promise<boolean> {
    try {
      return (await stat(this.path, { bigint: true })).ino === this.ino;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /** Back to an empty file: nothing written, nothing hashed. No write may run meanwhile. */
  async truncate(): Promise<void> {
    this.generation += 1; // a running catch-up stops at its next step
    this.ranges = [];
    this.prefix = 0;
    await this.settle();
    await this.fh.truncate(0);
    this.hash = createHash('sha256');
    this.frontier = 0;
    this.catchError = null;
  }

  /** Ranges a resumed part already holds; their contiguous prefix is hashed before this returns. */
  async adopt(ranges: readonly [number, number][]): Promise<void> {
    for (const [a, b] of ranges) this.added(a, b);
    await this.settle();
  }

  /** Writes `data` at `pos`. The caller does not reuse `data` until this resolves. */
  async write(data: Buffer, pos: number): Promise<void> {
    const inOrder = pos === this.frontier && this.catching === null;
    if (inOrder) this.frontier += data.length;
    const writing = this.writeAll(data, pos);
    if (inOrder) this.hash.update(data); // hashed while the write runs on the thread pool
    await writing;
    this.added(pos, pos + data.length);
  }

  private async writeAll(data: Buffer, pos: number): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await this.fh.write(data, off, data.length - off, pos + off);
      if (bytesWritten <= 0) throw new Error('write returned 0 bytes');
      off += bytesWritten;
    }
  }

  /** Waits until every written byte the frontier can reach is hashed. */
  async settle(): Promise<void> {
    while (this.catching !== null) await this.catching;
  }

  /** The SHA-256 of the file once all `size` bytes are hashed; null if they cannot be (a hole, a read error). */
  async digest(size: number): Promise<string | null> {
    await this.settle();
    if (this.catchError !== null || this.frontier !== size) return null;
    return this.hash.digest('hex');
  }

  async sync(): Promise<void> {
    await this.fh.sync();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.generation += 1;
    await this.catching?.catch(() => undefined);
    await this.fh.close();
  }

  private added(a: number, b: number): void {
    if (b <= a) return;
    const r = this.ranges;
    let i = 0;
    while (i < r.length && r[i]![1] < a) i++;
    let start = a;
    let end = b;
    let j = i;
    while (j < r.length && r[j]![0] <= end) {
      start = Math.min(start, r[j]![0]);
      end = Math.max(end, r[j]![1]);
      j++;
    }
    r.splice(i, j - i, [start, end]);
    const first = r[0];
    const prefix = first !== undefined && first[0] === 0 ? first[1] : 0;
    if (prefix > this.prefix) {
      this.prefix = prefix;
      this.onFlushed?.(prefix);
    }
    this.kick();
  }

  /** The written range the frontier is in (with bytes after it), if any. */
  private reachable(): number | null {
    for (const [s, e] of this.ranges) if (s <= this.frontier && this.frontier < e) return e;
    return null;
  }

  private kick(): void {
    if (this.closed || this.catchError !== null || this.catching !== null || this.reachable() === null) return;
    const p: Promise<void> = this.catchUp(this.generation).finally(() => {
      if (this.catching !== p) return;
      this.catching = null;
      this.kick(); // a write that completed during the last read
    });
    this.catching = p;
  }

  private async catchUp(gen: number): Promise<void> {
    this.readBuf ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const buf = this.readBuf;
    try {
      for (let end = this.reachable(); end !== null && gen === this.generation; end = this.reachable()) {
        const n = Math.min(buf.length, end - this.frontier);
        const t0 = performance.now();
        const { bytesRead } = await this.fh.read(buf, 0, n, this.frontier);
        const t1 = performance.now();
        if (gen !== this.generation) return;
        if (bytesRead === 0) throw new ModelhubError('INTERNAL', `${this.path} is shorter than the bytes written to it (at ${this.frontier})`);
        this.hash.update(buf.subarray(0, bytesRead));
        this.frontier += bytesRead;
        this.readBack.bytes += bytesRead;
        this.readBack.readMs += t1 - t0;
        this.readBack.hashMs += performance.now() - t1;
      }
    } catch (err) {
      if (gen === this.generation) this.catchError = err;
    }
  }
}
