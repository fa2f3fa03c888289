// Small file-system helpers for the packer: hashing pass-through streams, durable renames and
// path containment. Nothing here buffers a whole file.
import { fsyncDir, fsyncFile } from '../fs/durable.js';
import { createHash, type Hash } from 'node:crypto';
import { open, realpath, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';

/** Counts and SHA-256-hashes the bytes that flow through it; `digest` is set once it ends. */
export class HashingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  digest: string | undefined;
  private readonly onChunk: ((n: number) => void) | undefined;

  constructor(onChunk?: (n: number) => void) {
    super();
    this.onChunk = onChunk;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onChunk?.(chunk.length);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    cb();
  }
}


export function isEnoent(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}

export { fsyncDir, fsyncFile };

/** Write `data` to `file` through a temp name in the same directory: write, fsync, rename. */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = tempNameFor(file);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlinkQuiet(tmp);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlinkQuiet(tmp);
    throw err;
  }
}

export function tempNameFor(file: string): string {
  const rand = Math.random().toString(36).slice(2, 10);
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${rand}.tmp`);
}

export async function unlinkQuiet(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch {
    // already gone, or never made
  }
}

/** The real path of `p`, resolving as much of it as exists (the rest need not exist yet). */
export async function realpathLoose(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await realpath(abs);
  } catch (err) {
    if (!isEnoent(err)) throw err;
    const parent = path.dirname(abs);
    if (parent === abs) return abs;
    return path.join(await realpathLoose(parent), path.basename(abs));
  }
}

/** True when `child` is `parent` or lies below it (both absolute, already resolved). */
export function isWithin(parent: string, child: string): boolean {
  if (child === parent) return true;
  const rel = path.relative(parent, child);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** Byte order of the UTF-8 encoding: the order of entries in every manifest and zip. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Normalised file mode: 0o755 when any exec bit is set, else 0o644. */
export function normaliseMode(statMode: number): 0o755 | 0o644 {
  return (statMode & 0o111) !== 0 ? 0o755 : 0o644;
}
