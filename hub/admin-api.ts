// Admin answers: publish (receive → check → commit), mark stable, model demand, keys.
import { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ModelhubError } from '../src/errors.js';
import { idSchema, isSafeRelativePath, platformSchema, versionSchema } from '../src/schemas/common.js';
import { parseOrThrow } from '../src/schemas/parse.js';
import { formatPublicKey, keyIdHex, type PublicKey } from '../src/sign/minisign-format.js';
import type { Catalog, ReleaseKind } from './catalog.js';
import { checkModelRelease, checkServiceRelease, MODEL_FILE_PREFIX, PART_MANIFEST, PART_PACKAGE, PART_SIGNATURE } from './admin/check-release.js';
import { commitRelease } from './admin/commit.js';
import { IncomingUpload } from './admin/incoming.js';
import { json, type HubResponse } from './response.js';
import type { StorageLayout } from './storage-layout.js';

export interface AdminContext {
  catalog: Catalog;
  layout: StorageLayout;
  keys: readonly PublicKey[];
  maxUploadBytes: number;
}

const MAX_MANIFEST_BYTES = 1 << 20;
const MAX_SIGNATURE_BYTES = 4096;

const serviceTarget = z.object({ id: idSchema, version: versionSchema, platform: platformSchema });
const modelTarget = z.object({ id: idSchema, version: versionSchema });

/** Where each multipart field is stored inside the upload (and so inside the release). */
function destinationOf(kind: ReleaseKind, field: string): string | null {
  if (field === PART_MANIFEST) return 'manifest.json';
  if (field === PART_SIGNATURE) return 'manifest.json.minisig';
  if (kind === 'service' && field === PART_PACKAGE) return 'service.zip';
  if (kind === 'model' && field.startsWith(MODEL_FILE_PREFIX)) {
    const p = field.slice(MODEL_FILE_PREFIX.length);
    if (!isSafeRelativePath(p)) throw new ModelhubError('INVALID_REQUEST', `unsafe model file path in field "${field}"`);
    return `files/${p}`;
  }
  return null;
}

function limitOf(ctx: AdminContext, field: string): number {
  if (field === PART_MANIFEST) return MAX_MANIFEST_BYTES;
  if (field === PART_SIGNATURE) return MAX_SIGNATURE_BYTES;
  return ctx.maxUploadBytes;
}

async function drain(req: FastifyRequest): Promise<void> {
  if (req.raw.readableEnded) return;
  await new Promise<void>((resolve) => {
    req.raw.on('end', resolve).on('error', () => resolve()).on('close', resolve);
    req.raw.resume();
  });
}

async function receive(ctx: AdminContext, req: FastifyRequest, kind: ReleaseKind, upload: IncomingUpload): Promise<void> {
  if (!req.isMultipart()) throw new ModelhubError('INVALID_REQUEST', 'publish expects multipart/form-data');
  for await (const part of req.parts()) {
    const dest = destinationOf(kind, part.fieldname);
    if (dest === null) {
      if (part.type === 'file') part.file.resume();
      throw new ModelhubError('INVALID_REQUEST', `unexpected multipart field "${part.fieldname}"`);
    }
    const source = part.type === 'file' ? part.file : Readable.from([Buffer.from(String(part.value), 'utf8')]);
    await upload.receive(part.fieldname, dest, source, limitOf(ctx, part.fieldname));
    if (part.type === 'file' && part.file.truncated) {
      throw new ModelhubError('SIZE_EXCEEDED', `multipart field "${part.fieldname}" exceeds the hub's limit`);
    }
  }
}

async function publish(
  ctx: AdminContext,
  req: FastifyRequest,
  kind: ReleaseKind,
  target: { id: string; version: string; platform?: string },
  finalDir: string,
  check: (upload: IncomingUpload) => Promise<{ row: import('./catalog.js').ReleaseRow }>,
): Promise<HubResponse> {
  const platform = target.platform ?? '';
  if (ctx.catalog.release(kind, target.id, target.version, platform) !== undefined) {
    await drain(req);
    throw new ModelhubError('ALREADY_EXISTS', `${kind} ${target.id} ${target.version}${platform ? ` ${platform}` : ''} is already published; releases are immutable`);
  }
  const upload = await IncomingUpload.create(ctx.layout.incomingDir);
  try {
    await receive(ctx, req, kind, upload);
    const { row } = await check(upload);
    await commitRelease(upload, finalDir, ctx.catalog, row);
    return json(201, { success: true, kind, id: row.id, version: row.version, ...(platform ? { platform } : {}), sha256: row.sha256, size_bytes: row.size_bytes, key_id: row.key_id });
  } finally {
    await upload.discard();
  }
}

export async function publishService(ctx: AdminContext, req: FastifyRequest, params: unknown): Promise<HubResponse> {
  const target = parseOrThrow(serviceTarget, params, 'INVALID_REQUEST', 'publish path');
  return publish(ctx, req, 'service', target, ctx.layout.serviceDir(target.id, target.version, target.platform), (upload) =>
    checkServiceRelease(upload, target, ctx.keys, new Date()),
  );
}

export async function publishModel(ctx: AdminContext, req: FastifyRequest, params: unknown): Promise<HubResponse> {
  const target = parseOrThrow(modelTarget, params, 'INVALID_REQUEST', 'publish path');
  return publish(ctx, req, 'model', target, ctx.layout.modelDir(target.id, target.version), (upload) =>
    checkModelRelease(upload, target, ctx.keys, new Date()),
  );
}

export function markStable(ctx: AdminContext, kind: ReleaseKind, params: unknown): HubResponse {
  const target = parseOrThrow(modelTarget, params, 'INVALID_REQUEST', 'path');
  const changed = ctx.catalog.markStable(kind, target.id, target.version);
  if (changed === 0) throw new ModelhubError('NOT_FOUND', `${kind} ${target.id} has no version ${target.version}`);
  return json(200, { success: true, kind, id: target.id, version: target.version, stable: true });
}

export const usageBody = z.object({ model_id: idSchema, count: z.number().int().positive().max(1_000_000).default(1) });

export function addUsage(ctx: AdminContext, body: unknown): HubResponse {
  const { model_id, count } = parseOrThrow(usageBody, body, 'INVALID_REQUEST', 'body');
  const total = ctx.catalog.addUsage(model_id, count);
  return json(200, { success: true, model_id, request_count: total });
}

export function listKeys(ctx: AdminContext): HubResponse {
  return json(200, ctx.keys.map((k) => ({ key_id: keyIdHex(k.keyId), public_key: formatPublicKey(k) })));
}
