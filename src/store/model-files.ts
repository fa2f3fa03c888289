// A model pull and the blob store (blobs.ts): before downloading, every file whose bytes the
// store has is placed into the pull's partial folder (a hard link, else a copy) and verified
// against its signed hash; after downloading, every file of the version is kept in the store.
// What was reused, linked and copied goes into the download step's output (the job's events).
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from '../download/errors.js';
import { hashFile } from '../download/resume.js';
import type { BlobStore } from './blobs.js';

export interface StoredFile {
  path: string;
  size: number;
  sha256: string;
}

/** What one pull took from the store and gave to it. */
export interface StoreUse {
  /** Files placed from the store instead of being downloaded, and their bytes. */
  reused: number;
  bytesReused: number;
  /** Of the files placed or stored: hard-linked, and copied (no hard links possible). */
  linked: number;
  copied: number;
  /** Files this pull added to the store. */
  stored: number;
}

export interface StoreOptions {
  signal?: AbortSignal;
  /** Called before every change on disk; throwing stops (a lost lease). */
  guard: () => void;
  warn: (message: string) => void;
}

function fileIn(dir: string, rel: string): string {
  return path.join(dir, ...rel.split('/'));
}

function copiedWarning(store: BlobStore, dir: string): string {
  return `hard links are not possible between ${store.dir} and ${dir} (another volume, or a file system without them): model files are copied, and take disk twice`;
}

/**
 * Places into `dir` every file of `files` whose bytes the store has, unless `dir` holds the
 * file already; each placed file is hashed before it counts. Returns the paths placed, and the
 * hashes whose blobs turned out damaged (keepInStore replaces them).
 */
export async function reuseStored(store: BlobStore, files: readonly StoredFile[], dir: string, use: StoreUse, o: StoreOptions): Promise<{ placed: Set<string>; damaged: Set<string> }> {
  const placed = new Set<string>();
  const damaged = new Set<string>();
  let warned = false;
  for (const f of files) {
    o.signal?.throwIfAborted();
    const dest = fileIn(dir, f.path);
    await mkdir(path.dirname(dest), { recursive: true });
    o.guard();
    let how;
    try {
      how = await store.place(f.sha256, f.size, dest);
    } catch (err) {
      // Already there (an earlier run of this pull): the downloader checks it.
      if (isErrno(err, 'EEXIST')) continue;
      throw err;
    }
    if (how === null) continue;
    if ((await hashFile(dest, o.signal)) !== f.sha256) {
      // A damaged blob: this file is downloaded, and the store gets the good bytes afterwards.
      o.guard();
      await rm(dest, { force: true });
      damaged.add(f.sha256);
      o.warn(`the stored copy of ${f.sha256} is damaged; ${f.path} is downloaded again`);
      continue;
    }
    placed.add(f.path);
    use.reused += 1;
    use.bytesReused += f.size;
    use[how] += 1;
    if (how === 'copied' && !warned) {
      warned = true;
      o.warn(copiedWarning(store, dir));
    }
  }
  return { placed, damaged };
}

/** Keeps every (verified) file of `dir` in the store; the `damaged` blobs are replaced. */
export async function keepInStore(store: BlobStore, files: readonly StoredFile[], dir: string, use: StoreUse, damaged: ReadonlySet<string>, o: StoreOptions): Promise<void> {
  let warned = use.copied > 0;
  for (const f of files) {
    o.signal?.throwIfAborted();
    o.guard();
    const how = await store.adopt(fileIn(dir, f.path), f.sha256, f.size, { replace: damaged.has(f.sha256) });
    if (how === 'present') continue;
    use.stored += 1;
    use[how] += 1;
    if (how === 'copied' && !warned) {
      warned = true;
      o.warn(copiedWarning(store, dir));
    }
  }
}
