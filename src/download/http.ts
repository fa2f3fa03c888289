// The few HTTP header values the downloader reads, parsed strictly: a value it cannot read is
// treated as absent, never guessed at.

export function parseContentRange(v: string | null): { start: number; end: number; total: number | null } | null {
  if (v === null) return null;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v);
  if (m === null) return null;
  const [, a, b, t] = m;
  return { start: Number(a), end: Number(b), total: t === '*' || t === undefined ? null : Number(t) };
}

export function parseContentLength(v: string | null): number | null {
  if (v === null || !/^\s*\d+\s*$/.test(v)) return null;
  return Number(v);
}

/** A strong ETag (If-Range may only use strong validators), or null. */
export function strongEtag(v: string | null): string | null {
  if (v === null) return null;
  const t = v.trim();
  if (t === '' || t.startsWith('W/')) return null;
  return t;
}

/** The server says it answers byte ranges (`Accept-Ranges: bytes`). */
export function acceptsRanges(v: string | null): boolean {
  return v !== null && v.split(',').some((u) => u.trim().toLowerCase() === 'bytes');
}

/** The Range header for bytes [start, end) of a file of `size` bytes; open-ended to the end of the file. */
export function rangeHeader(start: number, end: number, size: number): string {
  return end >= size ? `bytes=${start}-` : `bytes=${start}-${end - 1}`;
}
