// One stored file → the HTTP answer, as data: status and headers decided here (Range, If-Range,
// If-None-Match, If-Modified-Since, HEAD), the bytes as a FileBody that the thin layer
// (file-body.ts) writes. The validator is the file's SHA-256, a true strong validator (RFC 9110
// §8.8.1), where a size-mtime tag would be weak. Or, under --accel-redirect, the same checks
// and an X-Accel-Redirect naming the file, for nginx to send.
import type { Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { ModelhubError } from '../src/errors.js';
import { FileBody } from './file-body.js';
import { errorResponse, type Headers, type HubResponse } from './response.js';

export interface RequestLike {
  method: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface StoredFile {
  /** Absolute; built by StorageLayout from validated ids and manifest paths only. */
  path: string;
  sha256: string;
  contentType: string;
  downloadName?: string;
}

function header(req: RequestLike, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** RFC 9110 §13.1.2: weak comparison, a list or "*". */
export function noneMatch(ifNoneMatch: string, etag: string): boolean {
  const bare = etag.replace(/^W\//, '');
  return ifNoneMatch
    .split(',')
    .map((t) => t.trim())
    .some((t) => t === '*' || t.replace(/^W\//, '') === bare);
}

/** RFC 9110 §13.1.5: If-Range holds one entity tag (strong comparison) or an HTTP date. */
function isEntityTag(v: string): boolean {
  return v.startsWith('"') || v.startsWith('W/"');
}

/** RFC 8187 attr-char: what may stand unencoded in an ext-value. */
const ATTR_CHAR = /^[A-Za-z0-9!#$&+\-.^_`|~]$/;
/** What the ASCII fallback keeps: printable ASCII, less what ends or escapes a quoted-string or suggests encoding. */
const FALLBACK_CHAR = /^[\x20-\x7e]$/;

/**
 * `attachment; filename="…"` (RFC 6266) for a download name: the name itself when it is plain
 * printable ASCII; otherwise an ASCII fallback (quote, backslash, "%", ";" and anything beyond
 * ASCII replaced by "_") plus `filename*=UTF-8''…`, the exact name percent-encoded (RFC 8187).
 */
export function contentDisposition(name: string): string {
  let fallback = '';
  let exact = true;
  for (const ch of name) {
    const keep = FALLBACK_CHAR.test(ch) && ch !== '"' && ch !== '\\' && ch !== '%' && ch !== ';';
    fallback += keep ? ch : '_';
    if (!keep) exact = false;
  }
  if (exact) return `attachment; filename="${name}"`;
  let encoded = '';
  for (const ch of name) {
    if (ATTR_CHAR.test(ch)) encoded += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) encoded += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** Whole seconds: HTTP dates have no finer resolution. */
function httpSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function parseHttpDate(v: string): number | undefined {
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? undefined : httpSeconds(ms);
}

export type RangeAnswer = { start: number; end: number } | 'unsatisfiable' | 'ignore';

/**
 * One `bytes=` range against a size (RFC 9110 §14.1.2): `a-b`, `a-` or `-n`. A malformed header,
 * another unit or several ranges are ignored (the whole file is sent, as §14.2 allows).
 */
export function parseRange(value: string, size: number): RangeAnswer {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
  if (m === null) return 'ignore';
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return 'ignore';
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return 'ignore';
  if (start >= size) return 'unsatisfiable';
  return { start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}

/** Whether the Range header applies: no If-Range, or one naming this very file (strongly). */
function rangeAllowed(req: RequestLike, etag: string, stats: Stats): boolean {
  const ifRange = header(req, 'if-range');
  if (ifRange === undefined) return true;
  if (isEntityTag(ifRange)) return ifRange.trim() === etag;
  return parseHttpDate(ifRange) === httpSeconds(stats.mtimeMs);
}

function notModified(req: RequestLike, etag: string, stats: Stats): boolean {
  const ifNoneMatch = header(req, 'if-none-match');
  if (ifNoneMatch !== undefined) return noneMatch(ifNoneMatch, etag);
  // RFC 9110 §13.1.3: only without If-None-Match.
  const since = header(req, 'if-modified-since');
  const date = since === undefined ? undefined : parseHttpDate(since);
  return date !== undefined && httpSeconds(stats.mtimeMs) <= date;
}

function notFound(): HubResponse {
  return errorResponse(new ModelhubError('NOT_FOUND', 'no such file'), 404);
}

async function openRegular(file: string): Promise<{ handle: FileHandle; stats: Stats } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const stats = await handle.stat();
    if (stats.isFile()) return { handle, stats };
  } catch {
    // answered as missing below
  }
  await handle.close();
  return undefined;
}

export async function serveFile(req: RequestLike, file: StoredFile): Promise<HubResponse> {
  const opened = await openRegular(file.path);
  if (opened === undefined) return notFound();
  const { handle, stats } = opened;
  const etag = `"${file.sha256}"`;
  const lastModified = stats.mtime.toUTCString();
  if (notModified(req, etag, stats)) {
    await handle.close();
    return { status: 304, headers: { ETag: etag, 'Last-Modified': lastModified }, body: null };
  }
  const headers: Headers = { 'Accept-Ranges': 'bytes', ETag: etag, 'Last-Modified': lastModified, 'Content-Type': file.contentType };
  if (file.downloadName !== undefined) headers['Content-Disposition'] = contentDisposition(file.downloadName);

  const size = stats.size;
  const rangeHeader = header(req, 'range');
  const range = rangeHeader !== undefined && rangeAllowed(req, etag, stats) ? parseRange(rangeHeader, size) : 'ignore';
  if (range === 'unsatisfiable') {
    await handle.close();
    return errorResponse(new ModelhubError('INVALID_REQUEST', 'requested range not satisfiable'), 416, { 'Content-Range': `bytes */${size}` });
  }
  const start = range === 'ignore' ? 0 : range.start;
  const length = range === 'ignore' ? size : range.end - range.start + 1;
  headers['Content-Length'] = length;
  if (range !== 'ignore') headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
  // HEAD: the same headers, no bytes.
  return { status: range === 'ignore' ? 200 : 206, headers, body: new FileBody(handle, start, req.method === 'HEAD' ? 0 : length) };
}

/**
 * `--accel-redirect PREFIX`: the catalog and path checks are the caller's, as for serveFile;
 * nginx sends the bytes of PREFIX/<urlPath> (an `internal` location aliasing the storage folder),
 * with Range, conditional requests and HEAD, keeping the two headers it cannot know.
 */
export async function accelRedirect(prefix: string, urlPath: string, file: StoredFile): Promise<HubResponse> {
  // A release whose file is missing answers the hub's 404, not nginx's page.
  const stats = await stat(file.path).catch(() => undefined);
  if (stats === undefined || !stats.isFile()) return notFound();
  const headers: Headers = { 'X-Accel-Redirect': `${prefix}/${encodePath(urlPath)}`, 'Content-Type': file.contentType };
  if (file.downloadName !== undefined) headers['Content-Disposition'] = contentDisposition(file.downloadName);
  return { status: 200, headers, body: null };
}

/** Each '/'-separated segment percent-encoded: nginx decodes X-Accel-Redirect once. */
export function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}
