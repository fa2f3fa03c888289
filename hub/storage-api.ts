// /storage/… and the signed manifests: requests resolved through the catalog to one stored
// file. Request text never becomes a path: ids and versions are validated and looked up, and a
// model file is served only when its decoded name is exactly one of the manifest's files.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { CatalogStore } from './catalog/store.js';
import { findModelRelease, findServiceRelease } from './catalog-api.js';
import { fail, type HubResponse } from './response.js';
import { accelRedirect, noneMatch, serveFile, type RequestLike, type StoredFile } from './serve-file.js';
import type { RecordName, StorageLayout } from './storage-layout.js';

export interface StorageContext {
  catalog: CatalogStore;
  layout: StorageLayout;
  /** `--accel-redirect PREFIX`: nginx sends the bytes of /storage/… files (no trailing '/'). */
  accelPrefix?: string;
}

/** A release's file (package or model file) after the catalog check: sent here, or by nginx. */
function blob(req: RequestLike, ctx: StorageContext, file: StoredFile): Promise<HubResponse> {
  if (ctx.accelPrefix !== undefined) return accelRedirect(ctx.accelPrefix, ctx.layout.urlPath(file.path), file);
  return serveFile(req, file);
}

type ServiceFileName = 'service.zip' | RecordName;

const CONTENT_TYPES: Record<ServiceFileName, string> = {
  'service.zip': 'application/zip',
  'manifest.json': 'application/json; charset=utf-8',
  'manifest.json.minisig': 'text/plain; charset=utf-8',
};

/** Small signed files: read whole, tagged with their own hash. */
async function smallFile(req: RequestLike, file: string, contentType: string): Promise<HubResponse> {
  const bytes = await readFile(file);
  const etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
  const inm = req.headers['if-none-match'];
  if (typeof inm === 'string' && noneMatch(inm, etag)) return { status: 304, headers: { ETag: etag }, body: null };
  return { status: 200, headers: { 'Content-Type': contentType, ETag: etag, 'Content-Length': bytes.length }, body: req.method === 'HEAD' ? Readable.from([]) : bytes };
}

export async function serviceFile(req: RequestLike, ctx: StorageContext, params: Record<string, string>, name: ServiceFileName): Promise<HubResponse> {
  const id = params.id ?? '';
  const version = params.version ?? '';
  const platform = params.platform ?? '';
  const found = await findServiceRelease(ctx.catalog, id, version, platform);
  if ('error' in found) return found.error;
  if (name !== 'service.zip') return smallFile(req, ctx.layout.serviceRecord(id, version, platform, name), CONTENT_TYPES[name]);
  return blob(req, ctx, {
    path: path.join(ctx.layout.serviceDir(id, version, platform), 'service.zip'),
    sha256: found.row.sha256,
    contentType: CONTENT_TYPES[name],
    downloadName: `${id}-${version}.zip`,
  });
}

/** Older clients: /storage/services/{id}/{version}.zip, for ?platform= or the default one. */
export async function legacyServiceZip(req: RequestLike, ctx: StorageContext, id: string, file: string, platform: string): Promise<HubResponse> {
  if (!file.endsWith('.zip')) return fail('NOT_FOUND', `no such file "${file}"`);
  return serviceFile(req, ctx, { id, version: file.slice(0, -'.zip'.length), platform }, 'service.zip');
}

export async function modelManifest(req: RequestLike, ctx: StorageContext, id: string, version: string, name: RecordName): Promise<HubResponse> {
  const found = await findModelRelease(ctx.catalog, id, version);
  if ('error' in found) return found.error;
  return smallFile(req, ctx.layout.modelRecord(id, version, name), CONTENT_TYPES[name]);
}

/**
 * `rawUrl` is the undecoded request target. It is decoded exactly once, so "%252e%252e"
 * stays the literal "%2e%2e" and matches no file.
 */
export async function modelFile(req: RequestLike, ctx: StorageContext, id: string, version: string, rawUrl: string): Promise<HubResponse> {
  const found = await findModelRelease(ctx.catalog, id, version);
  if ('error' in found) return found.error;
  const rawPath = rawUrl.split('?')[0] ?? '';
  const segments = rawPath.split('/');
  // ['', 'storage', 'models', id, version, ...file]
  const rawFile = segments.slice(5).join('/');
  let filePath: string;
  try {
    filePath = decodeURIComponent(rawFile);
  } catch {
    return fail('INVALID_REQUEST', 'malformed percent-encoding in the file path');
  }
  const entry = found.manifest.files.find((f) => f.path === filePath);
  if (entry === undefined) return fail('NOT_FOUND', `model ${id} ${version} has no file "${filePath}"`);
  return blob(req, ctx, {
    path: ctx.layout.modelFile(id, version, entry.path),
    sha256: entry.sha256,
    contentType: 'application/octet-stream',
    downloadName: path.posix.basename(entry.path),
  });
}
