// Signed metadata (SPEC §11, after TUF's timestamp/snapshot roles and its key rotation): what a
// hub signs with its online metadata key, what a publisher key signs to delegate to that key,
// and the statements that rotate and revoke publisher keys. Each document is JSON text signed
// as it is (minisign); the node parses exactly the bytes it verified.
import { z } from 'zod';
import { idSchema, isoDateSchema, platformSchema, sha256Schema, versionSchema } from '../schemas/common.js';

const keyIdSchema = z.string().regex(/^[0-9A-F]{16}$/, 'must be a key id (16 uppercase hex digits)');
/** A minisign public key's base64 line (what `minisign -P` takes). */
const publicKeyLineSchema = z.string().min(40).max(200);

/** A publisher key certifies the hub's metadata key, for a limited time. */
export const delegationSchema = z.looseObject({
  type: z.literal('modelhub-delegation'),
  schema: z.literal(1),
  role: z.literal('metadata'),
  key: publicKeyLineSchema,
  key_id: keyIdSchema,
  issued_at: isoDateSchema,
  expires: isoDateSchema,
});
export type Delegation = z.infer<typeof delegationSchema>;

const serviceVersionSchema = z.strictObject({
  manifest_sha256: sha256Schema,
  /** Share of nodes (0–100) offered this version as latest (staged rollout). */
  rollout: z.number().min(0).max(100),
});

const servicePlatformSchema = z.strictObject({
  latest: versionSchema.nullable(),
  stable: versionSchema.nullable(),
  versions: z.record(versionSchema, serviceVersionSchema),
});

const modelSchema = z.strictObject({
  default_version: versionSchema.nullable(),
  latest: versionSchema.nullable(),
  versions: z.record(versionSchema, z.strictObject({ manifest_sha256: sha256Schema })),
});

/** The whole catalog as the hub vouches for it now: which versions exist and which is latest. */
export const snapshotSchema = z.looseObject({
  type: z.literal('modelhub-snapshot'),
  schema: z.literal(1),
  /** Grows whenever the catalog changes; a node refuses a lower one (rollback attack). */
  serial: z.number().int().positive(),
  issued_at: isoDateSchema,
  /** A node refuses it after this (freeze attack). */
  expires: isoDateSchema,
  services: z.record(idSchema, z.partialRecord(platformSchema, servicePlatformSchema)),
  models: z.record(idSchema, modelSchema),
});
export type Snapshot = z.infer<typeof snapshotSchema>;
export type SnapshotBody = Pick<Snapshot, 'services' | 'models'>;

/** The old key says: trust this new key in my place. */
export const rotationSchema = z.looseObject({
  type: z.literal('modelhub-key-rotation'),
  schema: z.literal(1),
  old_key_id: keyIdSchema,
  new_key: publicKeyLineSchema,
  new_key_id: keyIdSchema,
  issued_at: isoDateSchema,
});
export type Rotation = z.infer<typeof rotationSchema>;

/** A trusted key says: stop trusting this key (and everything it signed). */
export const revocationSchema = z.looseObject({
  type: z.literal('modelhub-key-revocation'),
  schema: z.literal(1),
  key_id: keyIdSchema,
  issued_at: isoDateSchema,
  reason: z.string().max(500).optional(),
});
export type Revocation = z.infer<typeof revocationSchema>;

/** A signed document as served: its exact text and its `.minisig`. */
export const signedDocumentSchema = z.strictObject({ text: z.string().max(1 << 20), signature: z.string().max(4096) });
export type SignedDocument = z.infer<typeof signedDocumentSchema>;

/** JSON with sorted keys, so the same content always gives the same bytes. */
export function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v as Record<string, unknown>).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2) + '\n';
}
