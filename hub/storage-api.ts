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
import { noneMatch, serveFile, type RequestLike } from './serve-file.js';
import type { StorageLayout } from './storage-layout.js';

type ServiceFileName = 'service.zip' | 'manifest.json' | 'manifest.json.minisig';

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

export async function serviceFile(
  req: RequestLike,
  catalog: CatalogStore,
  layout: StorageLayout,
  params: Record<string, string>,
  name: ServiceFileName,
): Promise<HubResponse> {
  const id = params.id ?? '';
  const version = params.version ?? '';
  const platform = params.platform ?? '';
  const found = await findServiceRelease(catalog, id, version, platform);
  if ('error' in found) return found.error;
  const dir = layout.serviceDir(id, version, platform);
  if (name !== 'service.zip') return smallFile(req, path.join(dir, name), CONTENT_TYPES[name]);
  return serveFile(req, {
    root: dir,
    relPath: 'service.zip',
    sha256: found.row.sha256,
    contentType: CONTENT_TYPES[name],
    downloadName: `${id}-${version}.zip`,
  });
}

/** Older clients: /storage/services/{id}/{version}.zip, for ?platform= or the default one. */
export async function legacyServiceZip(
  req: RequestLike,
  catalog: CatalogStore,
  layout: StorageLayout,
  id: string,
  file: string,
  platform: string,
): Promise<HubResponse> {
  if (!file.endsWith('.zip')) return fail('NOT_FOUND', `no such file "${file}"`);
  return serviceFile(req, catalog, layout, { id, version: file.slice(0, -'.zip'.length), platform }, 'service.zip');
}

export async function modelManifest(
  req: RequestLike,
  catalog: CatalogStore,
  layout: StorageLayout,
  id: string,
  version: string,
  name: 'manifest.json' | 'manifest.json.minisig',
): Promise<HubResponse> {
  const found = await findModelRelease(catalog, id, version);
  if ('error' in found) return found.error;
  return smallFile(req, path.join(layout.modelDir(id, version), name), name === 'manifest.json' ? CONTENT_TYPES['manifest.json'] : CONTENT_TYPES['manifest.json.minisig']);
}

/**
 * `rawUrl` is the undecoded request target. It is decoded exactly once, so "%252e%252e"
 * stays the literal "%2e%2e" and matches no file.
 */
export async function modelFile(
  req: RequestLike,
  catalog: CatalogStore,
  layout: StorageLayout,
  id: string,
  version: string,
  rawUrl: string,
): Promise<HubResponse> {
  const found = await findModelRelease(catalog, id, version);
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
  return serveFile(req, {
    root: path.join(layout.modelDir(id, version), 'files'),
    relPath: entry.path,
    sha256: entry.sha256,
    contentType: 'application/octet-stream',
    downloadName: path.posix.basename(entry.path),
  });
}
