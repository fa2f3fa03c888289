// What the hub checks before it accepts a release (SPEC §4, admin), in two steps:
//  1. checkSigned*: the signature against the configured publisher keys, the manifest's shape
//     and rules, that manifest and URL agree — from the `manifest` and `signature` fields alone,
//     before a byte of the package is read (admin-api.ts sends them first);
//  2. check*Upload: that the uploaded bytes are the signed ones.
// The order matters for the answer: an unknown key is 403 even when the manifest is also bad.
import { createHash } from 'node:crypto';
import { ModelhubError } from '../../src/errors.js';
import { assertManifestConsistent } from '../../src/schemas/manifest-rules.js';
import { modelManifestSchema, serviceManifestSchema, type ModelManifest, type ServiceManifest } from '../../src/schemas/manifest.js';
import { parseJsonOrThrow } from '../../src/schemas/parse.js';
import type { PublicKey } from '../../src/sign/minisign-format.js';
import { verifyOrThrow } from '../../src/sign/verify.js';
import { listEntries } from '../../src/zip/open-zip.js';
import type { NewRelease } from '../catalog/store.js';
import type { IncomingUpload, ReceivedPart } from './incoming.js';

export const PART_PACKAGE = 'package';
export const PART_MANIFEST = 'manifest';
export const PART_SIGNATURE = 'signature';
export const MODEL_FILE_PREFIX = 'file:';

/** A manifest whose signature verified, parsed, and checked against the URL. */
export interface Signed<M> {
  manifest: M;
  /** The exact signed bytes, and as text. */
  bytes: Buffer;
  text: string;
  keyId: string;
}

function required(upload: IncomingUpload, field: string): ReceivedPart {
  const part = upload.parts.get(field);
  if (part === undefined) throw new ModelhubError('INVALID_REQUEST', `multipart field "${field}" is missing`);
  return part;
}

function verified(manifest: Buffer, signature: Buffer, keys: readonly PublicKey[]): { text: string; keyId: string } {
  const { keyId } = verifyOrThrow({ message: manifest, signature: signature.toString('utf8'), trustedKeys: keys });
  return { text: manifest.toString('utf8'), keyId };
}

function mustEqual(field: string, inManifest: string, inPath: string): void {
  if (inManifest !== inPath) {
    throw new ModelhubError('MANIFEST_INVALID', `manifest ${field} "${inManifest}" differs from the URL's "${inPath}"`, {
      details: { field, manifest: inManifest, path: inPath },
    });
  }
}

export function checkSignedService(
  manifest: Buffer,
  signature: Buffer,
  target: { id: string; version: string; platform: string },
  keys: readonly PublicKey[],
): Signed<ServiceManifest> {
  const { text, keyId } = verified(manifest, signature, keys);
  const m = parseJsonOrThrow(serviceManifestSchema, text, 'MANIFEST_INVALID', 'manifest');
  assertManifestConsistent(m);
  mustEqual('id', m.id, target.id);
  mustEqual('version', m.version, target.version);
  mustEqual('platform', m.platform, target.platform);
  return { manifest: m, bytes: manifest, text, keyId };
}

export function checkSignedModel(
  manifest: Buffer,
  signature: Buffer,
  target: { id: string; version: string },
  keys: readonly PublicKey[],
): Signed<ModelManifest> {
  const { text, keyId } = verified(manifest, signature, keys);
  const m = parseJsonOrThrow(modelManifestSchema, text, 'MANIFEST_INVALID', 'manifest');
  assertManifestConsistent(m);
  mustEqual('id', m.id, target.id);
  mustEqual('version', m.version, target.version);
  return { manifest: m, bytes: manifest, text, keyId };
}

export async function checkServiceUpload(upload: IncomingUpload, signed: Signed<ServiceManifest>, now: Date): Promise<NewRelease> {
  const m = signed.manifest;
  const pkg = required(upload, PART_PACKAGE);
  if (pkg.size !== m.archive.size) {
    throw new ModelhubError('CHECKSUM_MISMATCH', `package is ${pkg.size} bytes, the manifest says ${m.archive.size}`);
  }
  if (pkg.sha256 !== m.archive.sha256) {
    throw new ModelhubError('CHECKSUM_MISMATCH', `package sha256 ${pkg.sha256} differs from the manifest's ${m.archive.sha256}`);
  }

  let entries;
  try {
    entries = await listEntries(pkg.file);
  } catch (err) {
    throw new ModelhubError('MANIFEST_INVALID', `package is not a readable zip: ${(err as Error).message}`, { cause: err });
  }
  const declared = new Map(m.files.map((f) => [f.path, f.size]));
  const seen = new Set<string>();
  for (const e of entries) {
    if (e.directory) continue;
    if (e.symlink || e.encrypted) throw new ModelhubError('MANIFEST_INVALID', `package entry "${e.name}" is a symlink or encrypted`);
    if (seen.has(e.name)) throw new ModelhubError('MANIFEST_INVALID', `package entry "${e.name}" appears twice`);
    seen.add(e.name);
    const size = declared.get(e.name);
    if (size === undefined) throw new ModelhubError('MANIFEST_INVALID', `package entry "${e.name}" is not in the manifest's files`);
    if (size !== e.size) throw new ModelhubError('MANIFEST_INVALID', `package entry "${e.name}" is ${e.size} bytes, the manifest says ${size}`);
  }
  const missing = m.files.filter((f) => !seen.has(f.path)).map((f) => f.path);
  if (missing.length > 0) {
    throw new ModelhubError('MANIFEST_INVALID', `manifest files missing from the package: ${missing.slice(0, 5).join(', ')}`, { details: { missing } });
  }

  return {
    kind: 'service',
    id: m.id,
    version: m.version,
    platform: m.platform,
    size_bytes: pkg.size,
    sha256: pkg.sha256,
    manifest: signed.text,
    key_id: signed.keyId,
    stable: 0,
    created_at: m.created_at,
    published_at: now.toISOString(),
  };
}

export function checkModelUpload(upload: IncomingUpload, signed: Signed<ModelManifest>, now: Date): NewRelease {
  const m = signed.manifest;
  const uploaded = new Map<string, ReceivedPart>();
  for (const [field, part] of upload.parts) {
    if (field.startsWith(MODEL_FILE_PREFIX)) uploaded.set(field.slice(MODEL_FILE_PREFIX.length), part);
  }
  for (const f of m.files) {
    const part = uploaded.get(f.path);
    if (part === undefined) throw new ModelhubError('MANIFEST_INVALID', `model file "${f.path}" was not uploaded`);
    if (part.size !== f.size) throw new ModelhubError('CHECKSUM_MISMATCH', `model file "${f.path}" is ${part.size} bytes, the manifest says ${f.size}`);
    if (part.sha256 !== f.sha256) throw new ModelhubError('CHECKSUM_MISMATCH', `model file "${f.path}" sha256 differs from the manifest`);
    uploaded.delete(f.path);
  }
  if (uploaded.size > 0) {
    throw new ModelhubError('MANIFEST_INVALID', `uploaded files not in the manifest: ${[...uploaded.keys()].slice(0, 5).join(', ')}`);
  }
  return {
    kind: 'model',
    id: m.id,
    version: m.version,
    platform: '',
    size_bytes: m.files.reduce((sum, f) => sum + f.size, 0),
    // One checksum for a multi-file model: the hash of its signed manifest, which pins every file.
    sha256: createHash('sha256').update(signed.bytes).digest('hex'),
    manifest: signed.text,
    key_id: signed.keyId,
    stable: 0,
    created_at: m.created_at,
    published_at: now.toISOString(),
  };
}
