// Admin answers: publish (receive → check → commit), mark stable, model demand, keys.
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ModelhubError } from '../src/errors.js';
import { idSchema, isSafeRelativePath, platformSchema, versionSchema } from '../src/schemas/common.js';
import { parseOrThrow } from '../src/schemas/parse.js';
import { formatPublicKey, keyIdHex, type PublicKey } from '../src/sign/minisign-format.js';
import type { ModelManifest, ServiceManifest } from '../src/schemas/manifest.js';
import type { CatalogStore, NewRelease, ReleaseKind } from './catalog/store.js';
import {
  checkModelUpload,
  checkServiceUpload,
  checkSignedModel,
  checkSignedService,
  MODEL_FILE_PREFIX,
  PART_MANIFEST,
  PART_PACKAGE,
  PART_SIGNATURE,
  type Signed,
} from './admin/check-release.js';
import { commitRelease } from './admin/commit.js';
import { IncomingUpload } from './admin/incoming.js';
import { json, type HubResponse } from './response.js';
import { incomingOwnerPrefix, recordsSubdir, type StorageLayout } from './storage-layout.js';

export interface AdminContext {
  catalog: CatalogStore;
  layout: StorageLayout;
  /** The publisher keys uploads are checked against now (rotations and revocations from any hub included). */
  acceptedKeys(): Promise<readonly PublicKey[]>;
  maxUploadBytes: number;
}

const MAX_MANIFEST_BYTES = 1 << 20;
const MAX_SIGNATURE_BYTES = 4096;
/** Room kept free beyond a release's signed size (the node keeps the same margin). */
export const HUB_DISK_MARGIN_BYTES = 64 * 1024 * 1024;

const serviceTarget = z.object({ id: idSchema, version: versionSchema, platform: platformSchema });
const modelTarget = z.object({ id: idSchema, version: versionSchema });

/** What a verified manifest lets follow it: the package fields, each capped at its signed size. */
interface Plan {
  /** Where the manifest and signature go inside the release folder (recordsSubdir). */
  records: string;
  /** Bytes of all package fields together, as signed. */
  signedBytes: number;
  /** The largest single package field, as signed (checked against maxUploadBytes). */
  largestBytes: number;
  /**
   * Where a package field is stored, under which name it is recorded, and how many bytes it may
   * hold; throws for a field the manifest has no place for.
   */
  place(field: string): { key: string; dest: string; limit: number };
  /** After the last field: the uploaded bytes are the signed ones → the catalog row. */
  finish(upload: IncomingUpload, now: Date): Promise<NewRelease>;
}

function unexpected(field: string): ModelhubError {
  return new ModelhubError('INVALID_REQUEST', `unexpected multipart field "${field}"`);
}

function servicePlan(signed: Signed<ServiceManifest>): Plan {
  const size = signed.manifest.archive.size;
  return {
    records: recordsSubdir('service'),
    signedBytes: size,
    largestBytes: size,
    place(field) {
      if (field !== PART_PACKAGE) throw unexpected(field);
      return { key: field, dest: 'service.zip', limit: size };
    },
    finish: (upload, now) => checkServiceUpload(upload, signed, now),
  };
}

function modelPlan(signed: Signed<ModelManifest>): Plan {
  const sizes = new Map(signed.manifest.files.map((f) => [f.path, f.size]));
  const all = [...sizes.values()];
  return {
    records: recordsSubdir('model'),
    signedBytes: all.reduce((a, b) => a + b, 0),
    largestBytes: all.reduce((a, b) => Math.max(a, b), 0),
    place(field) {
      if (!field.startsWith(MODEL_FILE_PREFIX)) throw unexpected(field);
      const raw = field.slice(MODEL_FILE_PREFIX.length);
      // FormData clients (browsers, Node's fetch) send a '"' in a field name as %22 (the WHATWG
      // multipart/form-data encoding); a name the manifest lists as it is wins.
      const p = sizes.has(raw) ? raw : raw.replace(/%22/g, '"');
      if (!isSafeRelativePath(p)) throw new ModelhubError('INVALID_REQUEST', `unsafe model file path in field "${field}"`);
      const size = sizes.get(p);
      if (size === undefined) throw new ModelhubError('MANIFEST_INVALID', `uploaded files not in the manifest: ${p}`, { details: { path: p } });
      // At its manifest path: the release folder's layout is the URL layout.
      return { key: `${MODEL_FILE_PREFIX}${p}`, dest: p, limit: size };
    },
    finish: async (upload, now) => checkModelUpload(upload, signed, now),
  };
}

async function drain(req: FastifyRequest): Promise<void> {
  if (req.raw.readableEnded) return;
  await new Promise<void>((resolve) => {
    req.raw.on('end', resolve).on('error', () => resolve()).on('close', resolve);
    req.raw.resume();
  });
}

/** A `manifest` or `signature` field, read into memory up to its limit. */
async function readSmallPart(part: Multipart, limit: number): Promise<Buffer> {
  if (part.type === 'field') {
    if (typeof part.value !== 'string') {
      throw new ModelhubError('INVALID_REQUEST', `multipart field "${part.fieldname}" must carry the exact bytes (send it as a file part)`);
    }
    const bytes = Buffer.from(part.value, 'utf8');
    if (bytes.length > limit) throw new ModelhubError('SIZE_EXCEEDED', `multipart field "${part.fieldname}" is larger than ${limit} bytes`);
    return bytes;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of part.file as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ModelhubError('SIZE_EXCEEDED', `multipart field "${part.fieldname}" is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  // Cut short by the multipart parser's own per-file limit (maxUploadBytes).
  if (part.file.truncated) throw new ModelhubError('SIZE_EXCEEDED', `multipart field "${part.fieldname}" exceeds the hub's limit`);
  return Buffer.concat(chunks);
}

async function freeBytes(ctx: AdminContext): Promise<number> {
  const s = await statfs(ctx.layout.root);
  return s.bavail * s.bsize;
}

/** Before a byte of the package is accepted: within the hub's limit, and room for it on disk. */
async function admit(ctx: AdminContext, plan: Plan): Promise<void> {
  if (plan.largestBytes > ctx.maxUploadBytes) {
    throw new ModelhubError('SIZE_EXCEEDED', `the signed release has a ${plan.largestBytes}-byte file; the hub accepts at most ${ctx.maxUploadBytes} bytes per file`, {
      details: { signed_bytes: plan.largestBytes, limit: ctx.maxUploadBytes },
    });
  }
  const free = await freeBytes(ctx);
  const needed = plan.signedBytes + HUB_DISK_MARGIN_BYTES;
  if (free < needed) {
    throw new ModelhubError('INSUFFICIENT_DISK', `the signed release needs ${plan.signedBytes} bytes (plus a ${HUB_DISK_MARGIN_BYTES}-byte margin) in the hub's storage; ${free} are free`, {
      details: { signed_bytes: plan.signedBytes, free_bytes: free },
    });
  }
}

/**
 * Receives a publish: `manifest` and `signature` first (in either order), checked at once —
 * signature, manifest, URL, size limit, free disk — and only then the package fields, each
 * streamed into a private folder under .incoming and cut off at its signed size. Nothing of a
 * refused upload is kept; an upload with a bad signature never gets a folder at all.
 */
async function receive(
  ctx: AdminContext,
  req: FastifyRequest,
  planFor: (manifest: Buffer, signature: Buffer) => Plan,
): Promise<{ plan: Plan; upload: IncomingUpload }> {
  if (!req.isMultipart()) throw new ModelhubError('INVALID_REQUEST', 'publish expects multipart/form-data');
  const small = new Map<string, Buffer>();
  let plan: Plan | undefined;
  let upload: IncomingUpload | undefined;
  try {
    for await (const part of req.parts()) {
      const field = part.fieldname;
      if (field === PART_MANIFEST || field === PART_SIGNATURE) {
        if (small.has(field)) throw new ModelhubError('INVALID_REQUEST', `multipart field "${field}" appears twice`);
        small.set(field, await readSmallPart(part, field === PART_MANIFEST ? MAX_MANIFEST_BYTES : MAX_SIGNATURE_BYTES));
        const manifest = small.get(PART_MANIFEST);
        const signature = small.get(PART_SIGNATURE);
        if (manifest === undefined || signature === undefined) continue;
        plan = planFor(manifest, signature);
        await admit(ctx, plan);
        upload = await IncomingUpload.create(ctx.layout.incomingDir, incomingOwnerPrefix());
        await upload.receive(PART_MANIFEST, path.posix.join(plan.records, 'manifest.json'), Readable.from([manifest]), MAX_MANIFEST_BYTES);
        await upload.receive(PART_SIGNATURE, path.posix.join(plan.records, 'manifest.json.minisig'), Readable.from([signature]), MAX_SIGNATURE_BYTES);
        continue;
      }
      if (plan === undefined || upload === undefined) {
        const missing = [PART_MANIFEST, PART_SIGNATURE].filter((f) => !small.has(f));
        throw new ModelhubError(
          'INVALID_REQUEST',
          `multipart field "${field}" came before ${missing.map((f) => `"${f}"`).join(' and ')}: send the manifest and its signature first, then the package`,
          { details: { field, expected_first: [PART_MANIFEST, PART_SIGNATURE] } },
        );
      }
      if (upload.parts.has(field)) throw new ModelhubError('INVALID_REQUEST', `multipart field "${field}" appears twice`);
      const { key, dest, limit } = plan.place(field);
      const source = part.type === 'file' ? part.file : Readable.from([Buffer.from(String(part.value), 'utf8')]);
      await upload.receive(key, dest, source, limit);
      if (part.type === 'file' && part.file.truncated) {
        throw new ModelhubError('SIZE_EXCEEDED', `multipart field "${field}" exceeds the hub's limit`);
      }
    }
    if (plan === undefined || upload === undefined) {
      const missing = [PART_MANIFEST, PART_SIGNATURE].filter((f) => !small.has(f));
      throw new ModelhubError('INVALID_REQUEST', `multipart field "${missing[0] ?? PART_MANIFEST}" is missing`);
    }
    return { plan, upload };
  } catch (err) {
    await upload?.discard();
    throw err;
  }
}

/** `?rollout=PERCENT` on a service publish: offered to that share of nodes from the start. */
export const publishQuery = z.object({ rollout: z.coerce.number().int().min(0).max(100).optional() });

async function publish(
  ctx: AdminContext,
  req: FastifyRequest,
  kind: ReleaseKind,
  target: { id: string; version: string; platform?: string },
  finalDir: string,
  planFor: (manifest: Buffer, signature: Buffer) => Plan,
): Promise<HubResponse> {
  const { rollout } = parseOrThrow(publishQuery, req.query ?? {}, 'INVALID_REQUEST', 'publish query');
  if (rollout !== undefined && kind !== 'service') throw new ModelhubError('INVALID_REQUEST', 'a staged rollout applies to services only');
  const platform = target.platform ?? '';
  if ((await ctx.catalog.release(kind, target.id, target.version, platform)) !== undefined) {
    await drain(req);
    throw new ModelhubError('ALREADY_EXISTS', `${kind} ${target.id} ${target.version}${platform ? ` ${platform}` : ''} is already published; releases are immutable`);
  }
  const { plan, upload } = await receive(ctx, req, planFor);
  try {
    const row = { ...(await plan.finish(upload, new Date())), ...(rollout !== undefined ? { rollout } : {}) };
    await commitRelease(upload, finalDir, ctx.catalog, row, ctx.layout.root);
    return json(201, { success: true, kind, id: row.id, version: row.version, ...(platform ? { platform } : {}), sha256: row.sha256, size_bytes: row.size_bytes, key_id: row.key_id });
  } finally {
    await upload.discard();
  }
}

export async function publishService(ctx: AdminContext, req: FastifyRequest, params: unknown): Promise<HubResponse> {
  const target = parseOrThrow(serviceTarget, params, 'INVALID_REQUEST', 'publish path');
  const keys = await ctx.acceptedKeys();
  return publish(ctx, req, 'service', target, ctx.layout.serviceDir(target.id, target.version, target.platform), (manifest, signature) =>
    servicePlan(checkSignedService(manifest, signature, target, keys)),
  );
}

export async function publishModel(ctx: AdminContext, req: FastifyRequest, params: unknown): Promise<HubResponse> {
  const target = parseOrThrow(modelTarget, params, 'INVALID_REQUEST', 'publish path');
  const keys = await ctx.acceptedKeys();
  return publish(ctx, req, 'model', target, ctx.layout.modelDir(target.id, target.version), (manifest, signature) =>
    modelPlan(checkSignedModel(manifest, signature, target, keys)),
  );
}

export async function markStable(ctx: AdminContext, kind: ReleaseKind, params: unknown): Promise<HubResponse> {
  const target = parseOrThrow(modelTarget, params, 'INVALID_REQUEST', 'path');
  const changed = await ctx.catalog.markStable(kind, target.id, target.version);
  if (changed === 0) throw new ModelhubError('NOT_FOUND', `${kind} ${target.id} has no version ${target.version}`);
  return json(200, { success: true, kind, id: target.id, version: target.version, stable: true });
}

export const rolloutBody = z.strictObject({ percent: z.number().int().min(0).max(100) });

/** Sets a service version's rollout share: 0 halts it, 100 completes it. */
export async function setRollout(ctx: AdminContext, params: unknown, body: unknown): Promise<HubResponse> {
  const target = parseOrThrow(modelTarget, params, 'INVALID_REQUEST', 'path');
  const { percent } = parseOrThrow(rolloutBody, body, 'INVALID_REQUEST', 'body');
  const changed = await ctx.catalog.setRollout('service', target.id, target.version, percent);
  if (changed === 0) throw new ModelhubError('NOT_FOUND', `service ${target.id} has no version ${target.version}`);
  return json(200, { success: true, id: target.id, version: target.version, rollout: percent });
}

export const usageBody = z.object({ model_id: idSchema, count: z.number().int().positive().max(1_000_000).default(1) });

export async function addUsage(ctx: AdminContext, body: unknown): Promise<HubResponse> {
  const { model_id, count } = parseOrThrow(usageBody, body, 'INVALID_REQUEST', 'body');
  const total = await ctx.catalog.addUsage(model_id, count);
  return json(200, { success: true, model_id, request_count: total });
}

export async function listKeys(ctx: AdminContext): Promise<HubResponse> {
  return json(200, (await ctx.acceptedKeys()).map((k) => ({ key_id: keyIdHex(k.keyId), public_key: formatPublicKey(k) })));
}
