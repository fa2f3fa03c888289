// The prestager's work, run in a worker thread (prestage-worker.ts): follows the `.part` file as the downloader writes it,
// walks the zip's local headers in order and extracts each listed file into the staging
// directory, hash-checked against the signed manifest, so that the install does not read and
// write the whole package a second time after the download.
//
// It is only a head start. It gives up (and leaves the normal stager to do the work) at the
// first thing it does not fully understand: a restart from zero, an entry it cannot bound, a
// name not in the manifest, a size or hash that disagrees. When it succeeds, the stage step
// still checks the archive's central directory against the manifest (verifyPrestaged) before
// the result is used, and only after the archive's own SHA-256 was verified.
import { createHash } from 'node:crypto';
import { mkdir, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { pathListViolation, unsafePathReason } from '../schemas/safe-path.js';
import type { ServiceManifest } from '../schemas/manifest.js';
import { stagedMode } from './staged-mode.js';
import { fsyncDir } from '../fs/durable.js';

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const DATA_DESCRIPTOR = 0x08074b50;
const CHUNK = 1 << 20;
const SYNC_EVERY = 32 * CHUNK;
/** Deflated entries are inflated in one piece; bigger ones are left to the normal stager. */
const MAX_DEFLATED_BYTES = 16 * 1024 * 1024;

class GiveUp extends Error {}

export function prestageMarker(stagingDir: string): string {
  return `${stagingDir}.prestaged`;
}

export class PrestageExtractor {
  private flushed = 0;
  private total: number | null = null;
  private abandoned: string | null = null;
  private wake: (() => void) | undefined;
  private readonly done: Promise<boolean>;
  private readonly part: string;
  private copyBuf: Buffer | null = null;

  constructor(
    private readonly o: { dest: string; manifest: ServiceManifest; stagingDir: string; signal?: AbortSignal },
  ) {
    this.part = `${o.dest}.part`;
    this.done = this.run().catch(() => false);
  }

  /** From the downloader: the first `n` bytes are on disk. */
  flushedTo(n: number): void {
    if (n > this.flushed) this.flushed = n;
    this.poke();
  }

  abandon(reason: string): void {
    this.abandoned ??= reason;
    this.poke();
  }

  /** The download is complete (`size` bytes, moved to dest): true when every file is staged. */
  async finish(size: number): Promise<boolean> {
    this.total = size;
    this.flushed = Math.max(this.flushed, size);
    this.poke();
    return this.done;
  }

  /** Resolves once the prestager has stopped (after abandon(), with false). */
  settle(): Promise<boolean> {
    return this.done;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async need(end: number): Promise<void> {
    for (;;) {
      if (this.abandoned !== null || this.o.signal?.aborted === true) throw new GiveUp(this.abandoned ?? 'aborted');
      if (this.total !== null && end > this.total) throw new GiveUp('entry runs past the end of the archive');
      if (this.flushed >= end) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private async openSource(): Promise<FileHandle> {
    await this.need(30);
    try {
      return await open(this.part, 'r');
    } catch {
      // Finished meanwhile: the part was renamed into place.
      return open(this.o.dest, 'r');
    }
  }

  private async run(): Promise<boolean> {
    const { stagingDir } = this.o;
    const marker = prestageMarker(stagingDir);
    await rm(marker, { force: true });
    await rm(stagingDir, { recursive: true, force: true });
    await mkdir(stagingDir, { recursive: true, mode: 0o755 });
    let src: FileHandle | undefined;
    try {
      src = await this.openSource();
      await this.extractAll(src);
      await writeFile(marker, '');
      return true;
    } catch {
      await rm(stagingDir, { recursive: true, force: true }).catch(() => undefined);
      return false;
    } finally {
      await src?.close();
    }
  }

  private async read(src: FileHandle, pos: number, len: number, into?: Buffer): Promise<Buffer> {
    await this.need(pos + len);
    const buf = into === undefined ? Buffer.allocUnsafe(len) : into.subarray(0, len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await src.read(buf, got, len - got, pos + got);
      if (bytesRead === 0) throw new GiveUp('short read');
      got += bytesRead;
    }
    return buf;
  }

  private async extractAll(src: FileHandle): Promise<void> {
    // The stager's rule set, before anything is written: a list the stager would refuse (unsafe
    // names, names that collide by case or Unicode form) is not extracted here either.
    const violation = pathListViolation(this.o.manifest.files.map((f) => f.path));
    if (violation !== undefined) throw new GiveUp(`manifest: ${violation.message}`);
    const files = new Map(this.o.manifest.files.map((f) => [f.path, f]));
    const seen = new Set<string>();
    const madeDirs = new Set<string>([this.o.stagingDir]);
    let pos = 0;
    for (;;) {
      const sig = (await this.read(src, pos, 4)).readUInt32LE(0);
      if (sig === CENTRAL_HEADER) break;
      if (sig !== LOCAL_HEADER) throw new GiveUp('not a local header');
      const h = await this.read(src, pos, 30);
      const flags = h.readUInt16LE(6);
      const method = h.readUInt16LE(8);
      let csize = h.readUInt32LE(18);
      let usize = h.readUInt32LE(22);
      const nameLen = h.readUInt16LE(26);
      const extraLen = h.readUInt16LE(28);
      if ((flags & 0x1) !== 0 || (flags & 0x800) === 0) throw new GiveUp('encrypted or not UTF-8');
      const nameBuf = await this.read(src, pos + 30, nameLen);
      const name = nameBuf.toString('utf8');
      const extra = await this.read(src, pos + 30 + nameLen, extraLen);
      if (csize === 0xffffffff || usize === 0xffffffff) {
        const z = zip64Sizes(extra);
        if (z === null) throw new GiveUp('zip64 sizes missing');
        ({ usize, csize } = z);
      }
      const dataStart = pos + 30 + nameLen + extraLen;
      const descriptor = (flags & 0x8) !== 0;

      if (name.endsWith('/')) throw new GiveUp('directory entry');
      const f = files.get(name);
      if (f === undefined || seen.has(name) || unsafePathReason(name) !== undefined) throw new GiveUp(`unexpected entry ${name}`);
      seen.add(name);
      if (!descriptor && usize !== f.size) throw new GiveUp('size differs');

      const target = path.join(this.o.stagingDir, ...name.split('/'));
      const dir = path.dirname(target);
      if (!madeDirs.has(dir)) {
        for (let d = dir; d.length > this.o.stagingDir.length && !madeDirs.has(d); d = path.dirname(d)) madeDirs.add(d);
        await mkdir(dir, { recursive: true, mode: 0o755 });
      }
      let consumed: number;
      if (method === 0) {
        consumed = f.size;
        if (!descriptor && csize !== f.size) throw new GiveUp('stored size differs');
        await this.copyStored(src, dataStart, f.size, target, f.sha256, stagedMode(f.mode));
      } else if (method === 8) {
        if (f.size > MAX_DEFLATED_BYTES) throw new GiveUp('large deflated entry');
        // Worst-case deflate expansion bounds the compressed length when the header has none.
        const bound = descriptor ? f.size + Math.ceil(f.size / 16000) * 5 + 1024 : csize;
        const avail = this.total !== null ? Math.min(bound, this.total - dataStart) : bound;
        const input = await this.read(src, dataStart, descriptor ? avail : csize);
        let out: { buffer: Buffer; engine: { bytesWritten: number } };
        try {
          out = inflateRawSync(input, { info: true, maxOutputLength: f.size + 1 }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
        } catch {
          throw new GiveUp('inflate failed');
        }
        if (out.buffer.length !== f.size) throw new GiveUp('inflated size differs');
        if (createHash('sha256').update(out.buffer).digest('hex') !== f.sha256) throw new GiveUp('hash differs');
        consumed = descriptor ? out.engine.bytesWritten : csize;
        const fh = await open(target, 'wx', stagedMode(f.mode));
        try {
          await fh.chmod(stagedMode(f.mode));
          await fh.writeFile(out.buffer);
          await fh.sync();
        } finally {
          await fh.close();
        }
      } else {
        throw new GiveUp('compression method');
      }
      pos = dataStart + consumed;
      if (descriptor) {
        const d = await this.read(src, pos, 4);
        const hasSig = d.readUInt32LE(0) === DATA_DESCRIPTOR;
        const zip64 = usize === 0xffffffff || f.size >= 0xffffffff || consumed >= 0xffffffff;
        pos += (hasSig ? 4 : 0) + 4 + (zip64 ? 16 : 8);
      }
    }
    for (const f of files.keys()) if (!seen.has(f)) throw new GiveUp(`missing ${f}`);
    // The new entries must survive a power cut too: every directory that got one.
    for (const dir of [...madeDirs].sort((a, b) => b.length - a.length)) await fsyncDir(dir);
  }

  private async copyStored(src: FileHandle, start: number, size: number, target: string, sha256: string, mode: number): Promise<void> {
    const fh = await open(target, 'wx', mode);
    const hash = createHash('sha256');
    // One buffer for the whole copy: a fresh MiB per read is garbage the worker's small heap
    // frees only at its next GC, and until then it counts against the installer's RSS.
    this.copyBuf ??= Buffer.allocUnsafe(CHUNK);
    try {
      await fh.chmod(mode); // the umask must not change what the manifest says
      let done = 0;
      let synced = 0;
      while (done < size) {
        const len = Math.min(CHUNK, size - done);
        const buf = await this.read(src, start + done, len, this.copyBuf);
        hash.update(buf);
        await fh.write(buf, 0, len, done);
        done += len;
        // Write back as we go, while the download keeps the CPU busy: the fsync at the end of a
        // large file then has little left to wait for.
        if (done - synced >= SYNC_EVERY) {
          synced = done;
          await fh.datasync();
        }
      }
      if (hash.digest('hex') !== sha256) throw new GiveUp('hash differs');
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

function zip64Sizes(extra: Buffer): { usize: number; csize: number } | null {
  let i = 0;
  while (i + 4 <= extra.length) {
    const id = extra.readUInt16LE(i);
    const len = extra.readUInt16LE(i + 2);
    if (id === 0x0001 && len >= 16) {
      return { usize: Number(extra.readBigUInt64LE(i + 4)), csize: Number(extra.readBigUInt64LE(i + 12)) };
    }
    i += 4 + len;
  }
  return null;
}

