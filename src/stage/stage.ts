// The engine's stager: unpack a verified service.zip into a fresh staging directory, trusting
// nothing in the zip that the signed manifest does not vouch for (SPEC §3, NOTES "Zip handling").
//
// - The staging directory is wiped and recreated first, so a redo after a crash starts clean.
// - Entries are read one at a time with yauzl (lazyEntries); only names listed in
//   manifest.files are written, each capped at its declared size while streaming and hashed
//   inline. Anything else in the archive is refused: UNSAFE_ARCHIVE. Entries up to 512 KiB
//   are read whole (one read, a synchronous inflate capped at the declared size), verified, and
//   only then written; bigger ones stream through yauzl (validateEntrySizes) in 1 MiB chunks.
// - Paths come from validated segments and are opened with 'wx'; modes come from the manifest
//   (0755 when any exec bit is set, else 0644), never from the zip.
// - Each file is fsynced (in the background, a few at a time, while the next entries are
//   extracted), then every created directory and the staging directory itself.
// - The extracted service.json must equal manifest.service as a JSON value: MANIFEST_MISMATCH.
// - On any failure, abort included, the staging directory is removed before the error is thrown.
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, open, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { inflateRawSync } from 'node:zlib';
import type yauzl from 'yauzl';
import { ModelhubError, toModelhubError } from '../errors.js';
import { foldPath, pathListViolation, unsafePathReason } from '../schemas/safe-path.js';
import { stagedMode } from './staged-mode.js';
import type { ServiceManifest } from '../schemas/manifest.js';
import { serviceJsonSchema } from '../schemas/service.js';
import { firstDifference, jsonEqual } from './json-equal.js';
import { ArchiveIoError, entryPuller, openArchive, openEntry, READ_CHUNK, type Archive } from './zip-source.js';

export interface StageProgress {
  bytesDone: number;
  bytesTotal: number;
  file: string;
}

export interface StageRequest {
  /** The archive, already checked against manifest.archive (size, sha256). */
  archive: string;
  /** The signed, verified manifest. */
  manifest: ServiceManifest;
  /** Removed if present, then created; everything is written inside it and nowhere else. */
  stagingDir: string;
  signal?: AbortSignal;
  onProgress?: (p: StageProgress) => void;
}

export interface StageResult {
  files: number;
  bytes: number;
}

export const SERVICE_JSON = 'service.json';
export const DIR_MODE = 0o755;
export { FILE_MODE, EXEC_MODE } from './staged-mode.js';

/** Bytes gathered before one write(v) call. */
const WRITE_BATCH = READ_CHUNK;
/**
 * Entries up to this size (stored and uncompressed) are read in one call, inflated in one
 * synchronous step capped at the declared size, verified, then written with one call: most
 * files of a package are small, and there the per-entry stream machinery would cost more than
 * the data.
 */
const SMALL_ENTRY = 512 * 1024;
/** File fsyncs running at once; leaves libuv's other threads free for the extraction itself. */
const SYNC_CONCURRENCY = 2;
const DIR_SYNC_CONCURRENCY = 4;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

const IS_WINDOWS = process.platform === 'win32';

export { stagedMode };

/** The key two names collide under on a case-insensitive (or normalising) file system. */
function foldName(name: string): string {
  return foldPath(name);
}

function quote(name: string): string {
  return JSON.stringify(name);
}

/** Characters Windows cannot put in a name (":" and control characters are refused everywhere). */
const WINDOWS_BAD_CHARS = /[<>"|?*]/;

/**
 * Why an archive path may not be written, or undefined when it may: the one rule set of
 * src/schemas/safe-path.ts (every platform), plus what this host cannot create.
 */
export function unsafeNameReason(name: string): string | undefined {
  const why = unsafePathReason(name);
  if (why !== undefined) return why;
  if (IS_WINDOWS) {
    for (const seg of name.split('/')) {
      if (WINDOWS_BAD_CHARS.test(seg)) return `segment ${quote(seg)} has a character Windows does not allow`;
    }
  }
  return undefined;
}

function errnoCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

function isSystemError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && typeof (err as { syscall?: unknown }).syscall === 'string';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function unsafe(message: string, entry?: string, cause?: unknown): ModelhubError {
  return new ModelhubError('UNSAFE_ARCHIVE', message, {
    ...(cause === undefined ? {} : { cause }),
    details: entry === undefined ? {} : { entry },
  });
}

/** An error raised while reading the archive: the format's fault unless the disk failed. */
function archiveError(err: unknown, archive: string, entry?: string, which?: string): ModelhubError {
  if (err instanceof ModelhubError) return err;
  const where = `${path.basename(archive)}: ${entry === undefined ? (which ?? 'central directory') : `entry ${quote(entry)}`}`;
  if (isSystemError(err)) {
    return new ModelhubError('INTERNAL', `${where}: reading the archive failed: ${messageOf(err)}`, { cause: err });
  }
  return unsafe(`${where}: ${messageOf(err)}`, entry, err);
}

/** An error raised while writing into staging. */
function diskError(err: unknown, rel: string): ModelhubError {
  if (err instanceof ModelhubError) return err;
  const code = errnoCode(err);
  switch (code) {
    case 'EEXIST':
    case 'ENOTDIR':
    case 'EISDIR':
      return unsafe(`entry ${quote(rel)}: the destination already exists in the staging directory`, rel, err);
    case 'ENAMETOOLONG':
    case 'EILSEQ':
      return unsafe(`entry ${quote(rel)}: the name cannot be created on this file system (${code})`, rel, err);
    case 'ENOSPC':
    case 'EDQUOT':
      return new ModelhubError('INSUFFICIENT_DISK', `staging ${quote(rel)}: ${messageOf(err)}`, { cause: err });
    default:
      return new ModelhubError('INTERNAL', `staging ${quote(rel)}: ${messageOf(err)}`, { cause: err });
  }
}

function checksumError(want: Wanted, digest: string): ModelhubError {
  return new ModelhubError('CHECKSUM_MISMATCH', `entry ${quote(want.path)}: sha256 ${digest} differs from the manifest's ${want.sha256}`, {
    details: { entry: want.path, expected: want.sha256, actual: digest },
  });
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: IS_WINDOWS ? 5 : 0, retryDelay: 100 });
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    // Windows can neither open nor fsync a directory; elsewhere a failure is real.
    if (!IS_WINDOWS) throw diskError(err, path.basename(dir));
  } finally {
    await fh?.close();
  }
}

const noop = (): void => undefined;

/** fsync + close of finished files, a few at a time, while extraction goes on. */
class BackgroundSync {
  private readonly inFlight = new Set<Promise<void>>();
  private failure: ModelhubError | undefined;

  check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Takes ownership of `fh`: it is closed whatever happens. */
  async add(fh: FileHandle, rel: string): Promise<void> {
    while (this.inFlight.size >= SYNC_CONCURRENCY) await Promise.race(this.inFlight);
    if (this.failure !== undefined) {
      await fh.close().catch(noop);
      throw this.failure;
    }
    const task = this.syncAndClose(fh, rel);
    this.inFlight.add(task);
    void task.then(() => this.inFlight.delete(task));
  }

  /** Never rejects: a failure is kept for check()/drain(). */
  private async syncAndClose(fh: FileHandle, rel: string): Promise<void> {
    try {
      await fh.sync();
    } catch (err) {
      this.failure ??= diskError(err, rel);
    } finally {
      await fh.close().catch((err: unknown) => {
        this.failure ??= diskError(err, rel);
      });
    }
  }

  /** Waits for every pending fsync; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    this.check();
  }

  /** Waits for every pending fsync, ignoring failures (used while giving up). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }
}

interface Wanted {
  path: string;
  sha256: string;
  size: number;
  mode: number;
  found: boolean;
}

function indexManifest(manifest: ServiceManifest): Map<string, Wanted> {
  const wanted = new Map<string, Wanted>();
  if (!manifest.files.every((f) => typeof f.path === 'string')) {
    throw new ModelhubError('MANIFEST_INVALID', 'manifest: files: every path must be a string');
  }
  // The one rule set over the whole list: unsafe names, case and Unicode-form collisions.
  const violation = pathListViolation(manifest.files.map((f) => f.path));
  if (violation !== undefined) {
    throw new ModelhubError('MANIFEST_INVALID', `manifest: files: ${violation.message}`, { details: { entry: violation.path } });
  }
  for (const f of manifest.files) {
    if (!Number.isSafeInteger(f.size) || f.size < 0) {
      throw new ModelhubError('MANIFEST_INVALID', `manifest: files: ${quote(f.path)}: size must be a non-negative integer`);
    }
    if (typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) {
      throw new ModelhubError('MANIFEST_INVALID', `manifest: files: ${quote(f.path)}: sha256 must be 64 lowercase hex digits`);
    }
    wanted.set(f.path, { path: f.path, sha256: f.sha256, size: f.size, mode: stagedMode(f.mode), found: false });
  }
  if (!wanted.has(SERVICE_JSON)) {
    throw new ModelhubError('MANIFEST_INVALID', `manifest: files: ${SERVICE_JSON} is missing`);
  }
  return wanted;
}

class StageJob {
  private readonly wanted: Map<string, Wanted>;
  private readonly bytesTotal: number;
  private bytesDone = 0;
  private files = 0;
  /** Every entry name seen so far, folded → as written in the archive. */
  private readonly seen = new Map<string, string>();
  /** Directories created inside staging, relative, as created. */
  private readonly dirs = new Set<string>();
  private readonly dirsFolded = new Set<string>();
  private readonly createdDirs: string[] = [];
  private readonly sync = new BackgroundSync();
  private serviceJson: Buffer | undefined;
  /** False when the umask leaves 0755 (and so 0644) intact: no chmod after each create. */
  private needChmod = true;

  constructor(
    private readonly req: StageRequest,
    private readonly staging: string,
  ) {
    this.wanted = indexManifest(req.manifest);
    let total = 0;
    for (const w of this.wanted.values()) total += w.size;
    this.bytesTotal = total;
  }

  private checkAbort(): void {
    this.req.signal?.throwIfAborted();
  }

  private isAbort(err: unknown): boolean {
    return this.req.signal?.aborted === true && err === this.req.signal.reason;
  }

  private progress(file: string): void {
    this.req.onProgress?.({ bytesDone: this.bytesDone, bytesTotal: this.bytesTotal, file });
  }

  /** Absolute path of a relative staging path built from validated segments, checked to stay inside. */
  private inside(rel: string): string {
    const abs = path.resolve(this.staging, ...rel.split('/'));
    if (!abs.startsWith(this.staging + path.sep)) throw unsafe(`entry ${quote(rel)}: resolves outside the staging directory`, rel);
    return abs;
  }

  async run(): Promise<StageResult> {
    this.checkAbort();
    try {
      await mkdir(path.dirname(this.staging), { recursive: true });
      await mkdir(this.staging, { mode: DIR_MODE });
      if (((await stat(this.staging)).mode & 0o777) === DIR_MODE) this.needChmod = false;
      else await chmod(this.staging, DIR_MODE);
    } catch (err) {
      const code = errnoCode(err);
      throw new ModelhubError(code === 'ENOSPC' || code === 'EDQUOT' ? 'INSUFFICIENT_DISK' : 'INTERNAL', `staging directory ${this.staging}: ${messageOf(err)}`, {
        cause: err,
      });
    }

    let archive: Archive;
    try {
      archive = await openArchive(this.req.archive);
    } catch (err) {
      if (err instanceof ArchiveIoError) {
        const code = errnoCode(err.inner) === 'ENOENT' ? 'NOT_FOUND' : 'INTERNAL';
        throw new ModelhubError(code, `${this.req.archive}: ${err.message}`, { cause: err.inner });
      }
      throw unsafe(`${path.basename(this.req.archive)}: not a readable zip archive: ${messageOf(err)}`, undefined, err);
    }
    const zip = archive.zip;
    try {
      const next = entryPuller(zip);
      let entries = 0;
      let last: string | undefined;
      for (;;) {
        this.checkAbort();
        this.sync.check();
        let entry: yauzl.Entry | null;
        try {
          entry = await next();
        } catch (err) {
          // yauzl refused the next central-directory record before naming it: say which one it is.
          const which = `entry #${entries + 1}${last === undefined ? '' : ` (the one after ${quote(last)})`}`;
          throw archiveError(err, this.req.archive, undefined, which);
        }
        if (entry === null) break;
        entries += 1;
        last = entry.fileName;
        await this.entry(archive, entry);
      }
    } finally {
      zip.close();
    }

    const missing = [...this.wanted.values()].filter((w) => !w.found).map((w) => w.path);
    if (missing.length > 0) {
      const first = missing[0] ?? '';
      throw unsafe(
        `${path.basename(this.req.archive)}: listed file${missing.length > 1 ? 's' : ''} missing from the archive: ${missing.slice(0, 5).map(quote).join(', ')}${missing.length > 5 ? ', …' : ''}`,
        first,
      );
    }
    this.compareServiceJson();

    await this.sync.drain();
    this.checkAbort();
    const dirs = [...this.createdDirs].reverse();
    for (let i = 0; i < dirs.length; i += DIR_SYNC_CONCURRENCY) {
      await Promise.all(dirs.slice(i, i + DIR_SYNC_CONCURRENCY).map(fsyncDir));
    }
    await fsyncDir(this.staging);
    this.checkAbort();
    return { files: this.files, bytes: this.bytesDone };
  }

  /** Gives up: waits for background work so nothing is written after the caller removes staging. */
  async abandon(): Promise<void> {
    await this.sync.settle();
  }

  private async entry(archive: Archive, entry: yauzl.Entry): Promise<void> {
    const raw = entry.fileName;
    const isDir = raw.endsWith('/');
    const name = isDir ? raw.slice(0, -1) : raw;

    const why = unsafeNameReason(name);
    if (why !== undefined) throw unsafe(`entry ${quote(raw)}: ${why}`, raw);

    const key = foldName(name);
    const prev = this.seen.get(key);
    if (prev !== undefined) {
      let how: string;
      if (prev === raw) how = 'appears more than once';
      else if (prev.endsWith('/') !== raw.endsWith('/')) how = `collides with ${quote(prev)} (a file and a directory of one name)`;
      else how = `collides with ${quote(prev)} (the names differ only in case or Unicode form)`;
      throw unsafe(`entry ${quote(raw)} ${how}`, raw);
    }
    this.seen.set(key, raw);

    // Unix file type bits, whatever the "made by" system claims: only plain files and directories.
    const type = ((entry.externalFileAttributes >>> 16) & 0xffff) & S_IFMT;
    if (type === S_IFLNK) throw unsafe(`entry ${quote(raw)} is a symbolic link`, raw);
    if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) throw unsafe(`entry ${quote(raw)} is a special file (type 0o${type.toString(8)})`, raw);
    if (entry.isEncrypted() || (entry.generalPurposeBitFlag & 0x1) !== 0) throw unsafe(`entry ${quote(raw)} is encrypted`, raw);

    if (isDir) {
      // Directories are created as parents of files; the entry itself only has to be harmless.
      if (entry.uncompressedSize !== 0 || (entry.compressionMethod === 0 && entry.compressedSize !== 0)) {
        throw unsafe(`entry ${quote(raw)} is a directory with data`, raw);
      }
      return;
    }
    if (type === S_IFDIR) throw unsafe(`entry ${quote(raw)} has directory attributes but no trailing "/"`, raw);

    const want = this.wanted.get(name);
    if (want === undefined) throw unsafe(`entry ${quote(raw)} is not listed in the manifest's files (unlisted)`, raw);
    if (entry.uncompressedSize !== want.size) {
      throw unsafe(`entry ${quote(raw)}: the archive declares ${entry.uncompressedSize} bytes, the manifest ${want.size}`, raw);
    }
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
      throw unsafe(`entry ${quote(raw)}: unsupported compression method ${entry.compressionMethod}`, raw);
    }
    want.found = true;
    if (want.size <= SMALL_ENTRY && entry.compressedSize <= SMALL_ENTRY) await this.extractSmall(archive, entry, want);
    else await this.extract(archive.zip, entry, want);
  }

  /** Creates the missing parents of `rel` (0755) and returns its absolute path. */
  private async parentsOf(rel: string): Promise<string> {
    const segments = rel.split('/');
    let dir = '';
    for (const seg of segments.slice(0, -1)) {
      dir = dir === '' ? seg : `${dir}/${seg}`;
      if (this.dirs.has(dir)) continue;
      const abs = this.inside(dir);
      try {
        await mkdir(abs, { mode: DIR_MODE });
      } catch (err) {
        if (errnoCode(err) === 'EEXIST' && this.dirsFolded.has(foldName(dir))) {
          // A case-insensitive file system merged "App/" into an "app/" we created: same directory.
          const st = await lstat(abs).catch(() => undefined);
          if (st?.isDirectory() === true) {
            this.dirs.add(dir);
            continue;
          }
        }
        throw diskError(err, dir);
      }
      if (this.needChmod) {
        try {
          await chmod(abs, DIR_MODE); // the umask narrowed it
        } catch (err) {
          throw diskError(err, dir);
        }
      }
      this.dirs.add(dir);
      this.dirsFolded.add(foldName(dir));
      this.createdDirs.push(abs);
    }
    return this.inside(rel);
  }

  private async write(fh: FileHandle, chunks: Buffer[], bytes: number, rel: string): Promise<void> {
    if (bytes > 0) await this.writeAll(fh, chunks, bytes, rel);
    this.bytesDone += bytes;
    this.progress(rel);
  }

  private async writeAll(fh: FileHandle, chunks: Buffer[], bytes: number, rel: string): Promise<void> {
    try {
      const first = chunks[0];
      const { bytesWritten } = chunks.length === 1 && first !== undefined ? await fh.write(first) : await fh.writev(chunks);
      if (bytesWritten < bytes) {
        // A short write: finish the rest one call at a time.
        const rest = Buffer.concat(chunks).subarray(bytesWritten);
        let off = 0;
        while (off < rest.length) {
          const r = await fh.write(rest, off, rest.length - off);
          if (r.bytesWritten <= 0) throw new Error('write made no progress');
          off += r.bytesWritten;
        }
      }
    } catch (err) {
      throw diskError(err, rel);
    }
  }

  private async extract(zip: yauzl.ZipFile, entry: yauzl.Entry, want: Wanted): Promise<void> {
    const rel = want.path;
    const target = await this.parentsOf(rel);

    let stream: Readable;
    try {
      stream = await openEntry(zip, entry);
    } catch (err) {
      throw archiveError(err, this.req.archive, rel);
    }
    // Late errors of a stream we stopped reading must not become uncaught exceptions.
    stream.on('error', noop);

    let fh: FileHandle;
    try {
      fh = await open(target, 'wx', want.mode);
    } catch (err) {
      stream.destroy();
      throw diskError(err, rel);
    }

    let owned = true;
    try {
      const hash = createHash('sha256');
      const keep: Buffer[] | undefined = rel === SERVICE_JSON ? [] : undefined;
      let done = 0;
      let batch: Buffer[] = [];
      let batchBytes = 0;
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          this.checkAbort();
          done += chunk.length;
          if (done > want.size) {
            throw unsafe(`entry ${quote(rel)} holds more than the ${want.size} bytes declared`, rel);
          }
          hash.update(chunk);
          keep?.push(chunk);
          batch.push(chunk);
          batchBytes += chunk.length;
          if (batchBytes >= WRITE_BATCH) {
            await this.write(fh, batch, batchBytes, rel);
            batch = [];
            batchBytes = 0;
          }
        }
      } catch (err) {
        stream.destroy();
        if (err instanceof ModelhubError || this.isAbort(err)) throw err;
        throw archiveError(err, this.req.archive, rel);
      }
      if (batchBytes > 0) await this.write(fh, batch, batchBytes, rel);
      if (done !== want.size) throw unsafe(`entry ${quote(rel)} holds ${done} bytes, ${want.size} declared`, rel);
      const digest = hash.digest('hex');
      if (digest !== want.sha256) throw checksumError(want, digest);
      if (keep !== undefined) this.serviceJson = Buffer.concat(keep);
      owned = false; // finishFile takes the handle over
      await this.finishFile(fh, rel, want);
    } finally {
      if (owned) await fh.close().catch(noop);
    }
  }

  /** Takes `fh` over: chmod if the umask interfered, then hand it to the background fsync. */
  private async finishFile(fh: FileHandle, rel: string, want: Wanted): Promise<void> {
    if (this.needChmod) {
      try {
        await fh.chmod(want.mode);
      } catch (err) {
        await fh.close().catch(noop);
        throw diskError(err, rel);
      }
    }
    this.files += 1;
    await this.sync.add(fh, rel);
  }

  /** A small entry: read, inflate (capped), verify, and only then create and write the file. */
  private async extractSmall(archive: Archive, entry: yauzl.Entry, want: Wanted): Promise<void> {
    const rel = want.path;
    let data: Buffer;
    try {
      data = await archive.readEntryData(entry);
    } catch (err) {
      throw archiveError(err, this.req.archive, rel);
    }
    this.checkAbort();
    let content: Buffer;
    if (entry.compressionMethod === 0) content = data;
    else {
      try {
        content = inflateRawSync(data, { maxOutputLength: Math.max(1, want.size) });
      } catch (err) {
        if (errnoCode(err) === 'ERR_BUFFER_TOO_LARGE') throw unsafe(`entry ${quote(rel)} holds more than the ${want.size} bytes declared`, rel, err);
        throw archiveError(err, this.req.archive, rel);
      }
    }
    if (content.length !== want.size) {
      throw unsafe(`entry ${quote(rel)} holds ${content.length > want.size ? 'more than the' : content.length} bytes, ${want.size} declared`, rel);
    }
    this.verify(content, want);
    if (rel === SERVICE_JSON) this.serviceJson = content;

    const target = await this.parentsOf(rel);
    let fh: FileHandle;
    try {
      fh = await open(target, 'wx', want.mode);
    } catch (err) {
      throw diskError(err, rel);
    }
    try {
      await this.write(fh, [content], content.length, rel);
    } catch (err) {
      await fh.close().catch(noop);
      throw err;
    }
    await this.finishFile(fh, rel, want);
  }

  private verify(content: Buffer, want: Wanted): void {
    const digest = createHash('sha256').update(content).digest('hex');
    if (digest !== want.sha256) throw checksumError(want, digest);
  }

  private compareServiceJson(): void {
    assertServiceJsonMatches(this.serviceJson, this.req.manifest);
  }
}

/**
 * The staged service.json must be the signed manifest's `service` as a JSON value
 * (MANIFEST_MISMATCH otherwise). Shared by the stager and the delta stager (src/delta/stage-delta.ts).
 */
export function assertServiceJsonMatches(bytes: Buffer | undefined, manifest: ServiceManifest): void {
  if (bytes === undefined) throw new ModelhubError('MANIFEST_MISMATCH', `${SERVICE_JSON} was not extracted`);
  let text = bytes.toString('utf8');
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  let extracted: unknown;
  try {
    extracted = JSON.parse(text);
  } catch (err) {
    throw new ModelhubError('MANIFEST_MISMATCH', `${SERVICE_JSON} in the archive is not valid JSON: ${messageOf(err)}`, { cause: err });
  }
  const expected: unknown = manifest.service;
  if (jsonEqual(extracted, expected)) return;
  // The engine may hold manifest.service as parsed by the schema, with defaults filled in
  // (health_check timings, exec.args): compare both sides normalised the same way.
  const a = serviceJsonSchema.safeParse(extracted);
  const b = serviceJsonSchema.safeParse(expected);
  if (a.success && b.success && jsonEqual(a.data, b.data)) return;
  const at = firstDifference(extracted, expected) ?? '(root)';
  throw new ModelhubError('MANIFEST_MISMATCH', `${SERVICE_JSON} in the archive differs from the manifest's service (first difference at ${at})`, {
    details: { field: at },
  });
}

/**
 * Extract `req.archive` into `req.stagingDir` (removed first if present), accepting exactly the
 * files of `req.manifest`. On failure the staging directory is gone and the error is a
 * ModelhubError (UNSAFE_ARCHIVE, CHECKSUM_MISMATCH, MANIFEST_MISMATCH, MANIFEST_INVALID,
 * INSUFFICIENT_DISK, NOT_FOUND, INTERNAL) — or, after an abort, the signal's reason.
 */
export async function stageArchive(req: StageRequest): Promise<StageResult> {
  const staging = path.resolve(req.stagingDir);
  if (path.parse(staging).root === staging) {
    throw new ModelhubError('INVALID_REQUEST', `stagingDir: ${quote(req.stagingDir)} is a file-system root`);
  }
  let job: StageJob | undefined;
  try {
    try {
      await removeDir(staging);
    } catch (err) {
      throw new ModelhubError('INTERNAL', `cannot remove the old staging directory ${staging}: ${messageOf(err)}`, { cause: err });
    }
    job = new StageJob(req, staging);
    return await job.run();
  } catch (err) {
    await job?.abandon();
    await removeDir(staging).catch(noop);
    if (req.signal?.aborted === true && err === req.signal.reason) throw err;
    throw err instanceof ModelhubError ? err : toModelhubError(err);
  }
}
