// Collect the files of a package directory: every regular file below the root, with a safe
// relative path, its size and its normalised mode, sorted by the UTF-8 bytes of the path.
//
// Symbolic links: a link whose target (fully resolved) is a regular file inside the package is
// packed as a regular file holding the target's content and the target's (normalised) mode; no
// symlink entry is ever written. A link that leaves the package, dangles, or points to a
// directory is refused with MANIFEST_INVALID (directory links would duplicate trees or loop).
import type { Dirent } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { isSafeRelativePath } from '../schemas/common.js';
import { compareUtf8, isEnoent, isWithin, normaliseMode } from './fsutil.js';

export interface SourceFile {
  /** Relative path inside the package, "/"-separated. */
  path: string;
  /** Absolute path to read the content from (a symlink's resolved target). */
  realPath: string;
  size: number;
  mode: 0o755 | 0o644;
}

export interface WalkOptions {
  /** Absolute resolved paths never entered nor packed (the `--out` directory). */
  exclude: readonly string[];
  /** Names skipped in the root directory only. */
  skipRootNames: readonly string[];
}

function invalid(message: string, details: Record<string, unknown> = {}): ModelhubError {
  return new ModelhubError('MANIFEST_INVALID', message, { details });
}

/** `root` must already be a real path (no symlinks in it). */
export async function collectFiles(root: string, opts: WalkOptions): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  const excluded = (abs: string): boolean => opts.exclude.some((e) => isWithin(e, abs));

  async function visit(dir: string, relDir: string): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw new ModelhubError('INVALID_REQUEST', `cannot read directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
    for (const ent of entries) {
      const name = ent.name;
      if (relDir === '' && opts.skipRootNames.includes(name)) continue;
      const abs = path.join(dir, name);
      if (opts.exclude.some((e) => e === abs)) continue;
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const st = await lstat(abs);
      if (st.isDirectory()) {
        await visit(abs, rel);
        continue;
      }
      if (!isSafeRelativePath(rel)) {
        throw invalid(`files: "${rel}" is not a safe relative path (no "\\", NUL, "." or ".." segment, at most 1024 characters)`, { path: rel });
      }
      if (st.isFile()) {
        out.push({ path: rel, realPath: abs, size: st.size, mode: normaliseMode(st.mode) });
      } else if (st.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(abs);
        } catch (err) {
          if (isEnoent(err)) throw invalid(`files: symlink "${rel}" is dangling`, { path: rel });
          throw err;
        }
        if (!isWithin(root, target)) {
          throw invalid(`files: symlink "${rel}" points outside the package (to ${target})`, { path: rel, target });
        }
        if (excluded(target)) {
          throw invalid(`files: symlink "${rel}" points into the output directory`, { path: rel, target });
        }
        const tst = await stat(target);
        if (!tst.isFile()) {
          throw invalid(`files: symlink "${rel}" points to something other than a regular file; only symlinks to files are packed (as copies)`, { path: rel, target });
        }
        out.push({ path: rel, realPath: target, size: tst.size, mode: normaliseMode(tst.mode) });
      } else {
        throw invalid(`files: "${rel}" is not a regular file, directory or symlink`, { path: rel });
      }
    }
  }

  await visit(root, '');
  out.sort((a, b) => compareUtf8(a.path, b.path));
  assertNoCaseClashes(out.map((f) => f.path));
  return out;
}

/**
 * The package must unpack identically on case-insensitive file systems: no two paths equal
 * when case-folded, and no file case-folds to the name of another file's directory.
 */
export function assertNoCaseClashes(paths: readonly string[]): void {
  const files = new Map<string, string>();
  for (const p of paths) {
    const key = p.toLowerCase();
    const other = files.get(key);
    if (other !== undefined) throw invalid(`files: "${other}" and "${p}" differ only in case`, { paths: [other, p] });
    files.set(key, p);
  }
  const dirs = new Map<string, string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const key = dir.toLowerCase();
      const file = files.get(key);
      if (file !== undefined) throw invalid(`files: "${file}" clashes with directory "${dir}" (differs only in case)`, { paths: [file, p] });
      const seen = dirs.get(key);
      if (seen !== undefined && seen !== dir) throw invalid(`files: directories "${seen}" and "${dir}" differ only in case`, { paths: [seen, dir] });
      dirs.set(key, dir);
    }
  }
}
