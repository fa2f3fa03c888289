// The few file operations of the signing module: errors that name the file, small text reads
// with a size cap, and atomic writes (temp file → fsync → rename/link → fsync directory).

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { ModelhubError } from '../errors.js';

function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    return typeof err.code === 'string' ? err.code : undefined;
  }
  return undefined;
}

/** A file-system error as a ModelhubError naming the file. */
export function fileError(path: string, err: unknown): ModelhubError {
  if (err instanceof ModelhubError) return err;
  const code = errnoCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new ModelhubError('NOT_FOUND', `${path}: no such file`, { cause: err, details: { path } });
  }
  if (code === 'EISDIR') {
    return new ModelhubError('INVALID_REQUEST', `${path}: is a directory, not a file`, { cause: err, details: { path } });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new ModelhubError('INVALID_REQUEST', `${path}: permission denied`, { cause: err, details: { path } });
  }
  return new ModelhubError('INTERNAL', `${path}: ${detail}`, { cause: err, details: { path } });
}

/** Read a small UTF-8 file (a key), refusing anything larger than `maxBytes`. */
export async function readSmallTextFile(path: string, maxBytes: number): Promise<string> {
  try {
    const handle = await open(path, 'r');
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) {
        throw new ModelhubError('INVALID_REQUEST', `${path}: not a regular file`, { details: { path } });
      }
      if (stat.size > maxBytes) {
        throw new ModelhubError('INVALID_REQUEST', `${path}: ${stat.size} bytes is too large for a key file`, {
          details: { path },
        });
      }
      return await handle.readFile({ encoding: 'utf8' });
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw fileError(path, err);
  }
}

export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw fileError(path, err);
  }
}

async function fsyncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Windows cannot open or fsync a directory; the rename is as durable as it gets there.
  }
}

export interface PreparedFile {
  path: string;
  tempPath: string;
}

/** Write `content` to a temp file beside `path` with exactly `mode`, fsynced. */
export async function prepareFile(path: string, content: string, mode: number): Promise<PreparedFile> {
  const dir = dirname(path);
  const tempPath = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(tempPath, 'wx', mode);
    try {
      await handle.chmod(mode); // the umask may have narrowed or the platform ignored `mode`
      await handle.writeFile(content, { encoding: 'utf8' });
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await discard(tempPath);
    throw fileError(path, err);
  }
  return { path, tempPath };
}

/** Remove a temp file, ignoring a missing one. */
export async function discard(tempPath: string): Promise<void> {
  try {
    await unlink(tempPath);
  } catch {
    // already gone
  }
}

/**
 * Move a prepared file into place. Without `overwrite` an existing file is never replaced,
 * even one created after the caller checked (hard link fails with EEXIST); ALREADY_EXISTS.
 */
export async function commitFile(file: PreparedFile, overwrite: boolean): Promise<void> {
  try {
    if (overwrite) {
      await rename(file.tempPath, file.path);
    } else {
      try {
        await link(file.tempPath, file.path);
        await unlink(file.tempPath);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'EEXIST') throw alreadyExists(file.path);
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EXDEV') {
          throw err;
        }
        // The file system has no hard links: check, then rename (a small race remains).
        if (await pathExists(file.path)) throw alreadyExists(file.path);
        await rename(file.tempPath, file.path);
      }
    }
  } catch (err) {
    await discard(file.tempPath);
    throw fileError(file.path, err);
  }
  await fsyncDirectory(dirname(file.path));
}

export function alreadyExists(path: string): ModelhubError {
  return new ModelhubError('ALREADY_EXISTS', `${path} already exists; use --force to overwrite it`, { details: { path } });
}

export async function ensureDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw fileError(dir, err);
  }
}
