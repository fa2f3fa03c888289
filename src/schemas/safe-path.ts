// The one rule set for file paths inside a release (service package entries, model files,
// exec.program). Every place that writes a release's file to disk applies it: pack, hub publish
// (service and model), the node's manifest checks (install and model pull), the stager and the
// prestager. Kept free of imports: the prestage worker thread loads it without zod.
//
// The portable rules hold on every platform, because one release must unpack to the same files
// everywhere: a name that a case-insensitive or normalising file system (NTFS, APFS, HFS+) would
// merge with another, or that Windows would read as a device, a stream of another file or a
// shorter name, is refused even on Linux. Characters Windows merely cannot create ("<>|?*) are
// not aliasing and stay allowed; the stager refuses them on Windows only (a host limit).

/**
 * A path inside a package: forward slashes, relative, no empty, "." or ".." segment, no
 * backslash, NUL or drive letter. The structural part of the rules only; see unsafePathReason.
 */
export function isSafeRelativePath(p: string): boolean {
  if (p.length === 0 || p.length > 1024) return false;
  if (p.includes('\\') || p.includes('\0')) return false;
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) return false;
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/**
 * The folder inside a release's directory that holds its signed manifest and signature, beside
 * the release's own files: on the hub (`models/<id>/<version>/.modelhub/`, so that the storage
 * folder's layout is the URL layout) and on a node (`<version>/.modelhub/`). No file of a
 * release may live below it, in any case or Unicode form, or it would overwrite them.
 */
export const RECORDS_DIR = '.modelhub';

/** Device names Windows resolves in every directory, with any extension ("nul.txt", "COM1.tar.gz"). */
const WINDOWS_RESERVED = /^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³]) *(\..*)?$/i;
const CONTROL = /[\u0000-\u001f\u007f]/;

function quote(s: string): string {
  return JSON.stringify(s);
}

/** Why one relative path may not be written, or undefined when it may (portable rules). */
export function unsafePathReason(p: string): string | undefined {
  if (p.length === 0) return 'is empty';
  if (p.length > 1024) return 'is longer than 1024 characters';
  if (p.includes('\0')) return 'contains NUL';
  if (CONTROL.test(p)) return 'contains a control character';
  if (p.includes('\\')) return 'contains a backslash';
  if (p.startsWith('/')) return 'is an absolute path';
  if (/^[A-Za-z]:/.test(p)) return 'starts with a drive letter';
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') return 'has an empty, "." or ".." segment';
    if (seg.includes(':')) return `segment ${quote(seg)} contains ":" (an alternate data stream on Windows)`;
    if (WINDOWS_RESERVED.test(seg)) return `segment ${quote(seg)} is a reserved device name on Windows`;
    if (seg.endsWith('.') || seg.endsWith(' ')) return `segment ${quote(seg)} ends with "." or " " (Windows drops it)`;
  }
  const first = p.split('/', 1)[0] ?? '';
  if (foldPath(first) === RECORDS_DIR) return `first segment ${quote(first)} is reserved for the release's signed manifest and signature`;
  return undefined;
}

/**
 * The key two paths collide under on a case-insensitive or normalising file system: Unicode
 * NFC, then a full case fold (upper, then lower: "ς" and "σ", "ß" and "ss" meet too). It errs on
 * the side of seeing a collision.
 */
export function foldPath(p: string): string {
  return p.normalize('NFC').toUpperCase().toLowerCase().normalize('NFC');
}

export interface PathViolation {
  path: string;
  message: string;
}

/**
 * The first violation in a whole list of relative file paths, or undefined: an unsafe path,
 * a path listed twice, two paths that differ only in case or Unicode form, or a file that is
 * also a directory of another path (compared folded as well).
 */
export function pathListViolation(paths: readonly string[]): PathViolation | undefined {
  const byFold = new Map<string, string>();
  for (const p of paths) {
    const why = unsafePathReason(p);
    if (why !== undefined) return { path: p, message: `${quote(p)} ${why}` };
    const key = foldPath(p);
    const other = byFold.get(key);
    if (other !== undefined) {
      return {
        path: p,
        message: other === p ? `${quote(p)} is listed twice` : `${quote(p)} collides with ${quote(other)} (the names differ only in case or Unicode normalisation)`,
      };
    }
    byFold.set(key, p);
  }
  for (const [key, p] of byFold) {
    const parts = key.split('/');
    for (let i = 1; i < parts.length; i++) {
      const file = byFold.get(parts.slice(0, i).join('/'));
      if (file !== undefined) return { path: p, message: `${quote(file)} is both a file and a directory (of ${quote(p)})` };
    }
  }
  return undefined;
}

/**
 * Why a service's exec.program may not be run, or undefined. A bare command name ("node",
 * "python3") is looked up on PATH; anything with a "/" (or a backslash or drive letter) is a
 * path inside the package, under the rules above, and — when `files` is given (the manifest's
 * own platform) — one of the package's files.
 */
export function execProgramProblem(program: string, files?: ReadonlySet<string>): string | undefined {
  if (program.includes('\0')) return `${quote(program)} contains NUL`;
  const isPath = program.includes('/') || program.includes('\\') || /^[A-Za-z]:/.test(program);
  if (!isPath) {
    if (program === '' || program === '.' || program === '..') return `${quote(program)} is not a program`;
    if (CONTROL.test(program)) return `${quote(program)} contains a control character`;
    return undefined;
  }
  const why = unsafePathReason(program);
  if (why !== undefined) {
    return `${quote(program)} ${why}: it must be a relative path inside the package ("/" separators, no leading "/", no "." or ".." segment) or a bare command name`;
  }
  if (files !== undefined && !files.has(program)) return `${quote(program)} does not exist in the package`;
  return undefined;
}
