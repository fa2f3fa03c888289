// Kept free of imports: the prestage worker thread loads it without zod.

/**
 * A path inside a package: forward slashes, relative, no empty, "." or ".." segment, no
 * backslash, NUL or drive letter. Checked again at every place that touches the disk.
 */
export function isSafeRelativePath(p: string): boolean {
  if (p.length === 0 || p.length > 1024) return false;
  if (p.includes('\\') || p.includes('\0')) return false;
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) return false;
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}
