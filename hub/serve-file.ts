// One stored file → the HTTP answer, as data (fastify/send style). Range, HEAD and
// Content-Length come from @fastify/send; validators are ours, because send's ETag is weak
// (size-mtime) while we know each file's SHA-256: a true strong validator (RFC 9110 §8.8.1).
import type { Readable } from 'node:stream';
import { send } from '@fastify/send';
import { ModelhubError } from '../src/errors.js';
import { errorResponse, type Headers, type HubResponse } from './response.js';

export interface RequestLike {
  method: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface StoredFile {
  /** Directory the file is served from; send refuses anything resolving outside it. */
  root: string;
  /** Path below root, '/'-separated, not URL-encoded. */
  relPath: string;
  sha256: string;
  contentType?: string;
  downloadName?: string;
}

/** 1 MiB reads: Node's default 64 KiB caps a loopback download near 0.2 GB/s. */
export const READ_BUFFER_BYTES = 1 << 20;

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

export async function serveFile(req: RequestLike, file: StoredFile): Promise<HubResponse> {
  const etag = `"${file.sha256}"`;
  const ifNoneMatch = header(req, 'if-none-match');
  const headers: Record<string, string | undefined> = { ...req.headers } as Record<string, string | undefined>;
  delete headers['if-none-match'];
  delete headers['if-match'];

  const extra: Headers = { ETag: etag };
  if (file.contentType !== undefined) extra['Content-Type'] = file.contentType;
  if (file.downloadName !== undefined) extra['Content-Disposition'] = contentDisposition(file.downloadName);

  const ifRange = header(req, 'if-range');
  if (ifRange !== undefined && isEntityTag(ifRange)) {
    // A matching strong tag keeps the Range; anything else (weak, other) sends the whole file.
    delete headers['if-range'];
    if (ifRange.trim() !== etag) delete headers['range'];
  }

  const encoded = '/' + file.relPath.split('/').map(encodeURIComponent).join('/');
  const result = await send({ method: req.method, headers } as unknown as Readable, encoded, {
    root: file.root,
    etag: false,
    lastModified: true,
    acceptRanges: true,
    cacheControl: false,
    dotfiles: 'allow',
    index: false,
    highWaterMark: READ_BUFFER_BYTES,
  });

  if (result.type === 'error' || result.type === 'directory') {
    const status = result.statusCode === 416 ? 416 : result.statusCode === 400 ? 400 : 404;
    const code = status === 416 ? 'INVALID_REQUEST' : status === 400 ? 'INVALID_REQUEST' : 'NOT_FOUND';
    const message = status === 416 ? 'requested range not satisfiable' : status === 400 ? 'bad request path' : 'no such file';
    const rangeHeaders: Headers = {};
    if (result.headers['Content-Range'] !== undefined) rangeHeaders['Content-Range'] = result.headers['Content-Range'];
    return errorResponse(new ModelhubError(code, message), status, rangeHeaders);
  }

  if (ifNoneMatch !== undefined && noneMatch(ifNoneMatch, etag) && (req.method === 'GET' || req.method === 'HEAD')) {
    result.stream.destroy();
    const notModified: Headers = { ETag: etag };
    if (result.headers['Last-Modified'] !== undefined) notModified['Last-Modified'] = result.headers['Last-Modified'];
    return { status: 304, headers: notModified, body: null };
  }

  const out: Headers = { ...result.headers, ...extra };
  // For HEAD, send's stream is empty; returning it (not null) keeps our Content-Length.
  return { status: result.statusCode, headers: out, body: result.stream };
}
