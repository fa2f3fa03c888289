// One file's bytes at a second name without a second copy: a hard link, or a copy where the
// file system cannot link (another volume: EXDEV; FAT/exFAT and some network shares: EPERM,
// ENOTSUP; the link-count limit: EMLINK). Either way `dest` appears whole or not at all: a link
// is atomic, and a copy is written under a temp name, fsynced and renamed.
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, link, rename, rm } from 'node:fs/promises';
import { fsyncFile } from './durable.js';

export type Placement = 'linked' | 'copied';

/** Errors of link(2) that mean "not here", not "something is wrong". */
const CANNOT_LINK = new Set(['EXDEV', 'EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK', 'ENOSYS', 'EINVAL']);

export function cannotLink(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && CANNOT_LINK.has(code);
}

/** A durable copy of `src` at `dest` (which must not exist yet): temp name, mode, fsync, rename. */
export async function copyDurably(src: string, dest: string, mode?: number): Promise<void> {
  const tmp = `${dest}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    await copyFile(src, tmp);
    if (mode !== undefined) await chmod(tmp, mode);
    await fsyncFile(tmp);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * `dest` (which must not exist) becomes a hard link to `src`, or a copy of it (with `copyMode`,
 * when given) when the file system cannot link. The caller fsyncs `dest`'s directory.
 */
export async function linkOrCopy(src: string, dest: string, copyMode?: number): Promise<Placement> {
  try {
    await link(src, dest);
    return 'linked';
  } catch (err) {
    if (!cannotLink(err)) throw err;
  }
  await copyDurably(src, dest, copyMode);
  return 'copied';
}
