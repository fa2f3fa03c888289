// Checks an installed version folder against its signed manifest, as `rpm -V` and `ostree fsck`
// do: every listed file is there, a regular file, of the signed size and SHA-256 (`modified`,
// `missing`), and files the manifest does not list are named (`extra`: a service may write its
// own, so they are reported, never counted as damage). The proof folder `.modelhub/` itself is
// not part of the release and is left out.
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ManifestFile } from '../schemas/manifest.js';
import { PROOF_DIR } from './version-proof.js';

export interface FileCheck {
  /** Listed files whose size, hash or type differ from the signed manifest. */
  modified: string[];
  /** Listed files that are not there. */
  missing: string[];
  /** Files (and symbolic links) the manifest does not list. */
  extra: string[];
  /** Bytes read to hash the listed files. */
  bytesHashed: number;
}

async function sha256Of(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024, signal })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every file below `dir` as a relative `/` path, except the proof folder at its top. */
async function walk(dir: string, rel = ''): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(path.join(dir, rel));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
  const out: string[] = [];
  for (const name of names.sort()) {
    if (rel === '' && name === PROOF_DIR) continue;
    const child = rel === '' ? name : `${rel}/${name}`;
    const s = await lstat(path.join(dir, child));
    if (s.isDirectory()) out.push(...(await walk(dir, child)));
    else out.push(child);
  }
  return out;
}

/**
 * Hashes each listed file (a size that differs is `modified` without reading it) and lists the
 * rest. A version folder that is gone has every file missing.
 */
export async function checkVersionFiles(versionDir: string, files: readonly ManifestFile[], signal?: AbortSignal): Promise<FileCheck> {
  const r: FileCheck = { modified: [], missing: [], extra: [], bytesHashed: 0 };
  for (const f of files) {
    signal?.throwIfAborted();
    const file = path.join(versionDir, ...f.path.split('/'));
    const s = await lstat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
      throw err;
    });
    if (s === null) r.missing.push(f.path);
    // A symbolic link is never followed: it could point anywhere, and the release has none.
    else if (!s.isFile() || s.size !== f.size) r.modified.push(f.path);
    else {
      r.bytesHashed += s.size;
      if ((await sha256Of(file, signal)) !== f.sha256) r.modified.push(f.path);
    }
  }
  const listed = new Set(files.map((f) => f.path));
  r.extra = (await walk(versionDir)).filter((p) => !listed.has(p));
  return r;
}

/** True when nothing listed is modified or missing (extra files do not count). */
export function isIntact(c: Pick<FileCheck, 'modified' | 'missing'>): boolean {
  return c.modified.length === 0 && c.missing.length === 0;
}
