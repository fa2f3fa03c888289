// The JSON bodies the hub answers with, as zod schemas. They are strict on purpose: the
// OpenAPI document is generated from them and test/hub/openapi.test.ts parses real answers
// with them, so a field added to or dropped from a resolver fails a test instead of drifting.
import { z } from 'zod';
import { ERROR_CODES } from '../../src/errors.js';
import { delegationSchema, snapshotSchema } from '../../src/metadata/formats.js';
import { idSchema, platformSchema, relativePathSchema, sha256Schema, versionSchema } from '../../src/schemas/common.js';

export const HUB_TITLE = 'modelhub hub';

const count = z.number().int().nonnegative();
const semver = versionSchema.meta({ description: 'A SemVer version such as 1.2.3.' });
const hash = sha256Schema.meta({ description: 'SHA-256, 64 lowercase hex digits.' });
/** Newest by SemVer precedence, full releases before prereleases; null when there is none. */
const latest = (what: string): z.ZodNullable<typeof versionSchema> =>
  versionSchema.nullable().meta({ description: what });

export const errorEnvelopeSchema = z
  .strictObject({
    success: z.literal(false),
    error: z.enum(ERROR_CODES),
    message: z.string(),
    details: z.record(z.string(), z.unknown()),
    timestamp: z.iso.datetime(),
  })
  .meta({ description: 'The one error shape of every failure, 404s of unknown routes included.' });

export const healthSchema = z.strictObject({ status: z.literal('ok') });

export const hubIndexSchema = z.strictObject({
  name: z.literal(HUB_TITLE),
  version: z.string().meta({ description: "The hub's package version." }),
  links: z.strictObject({
    openapi: z.literal('/api/openapi.json'),
    services: z.literal('/api/services'),
    models: z.literal('/api/models'),
    health: z.literal('/health'),
    keys: z.literal('/api/keys'),
  }),
});

// Loose: only the frame is promised here; the document's content is its own contract.
export const openApiDocumentSchema = z.looseObject({
  openapi: z.literal('3.1.0'),
  info: z.looseObject({ title: z.literal(HUB_TITLE), version: z.string() }),
  paths: z.record(z.string(), z.unknown()),
});

export const modelSummarySchema = z.strictObject({
  id: idSchema,
  name: z.string(),
  task: z.string(),
  languages: z.array(z.string()),
  default_version: latest('The highest stable version, else the highest version.'),
  versions: z
    .array(
      z.strictObject({
        version: semver,
        size_bytes: count.meta({ description: 'Sum of the sizes of all files.' }),
        files: z.array(z.strictObject({ path: relativePathSchema, size_bytes: count, sha256: hash })),
        checksum_sha256: hash.meta({ description: 'SHA-256 of the signed manifest, which pins every file.' }),
        updated_at: z.iso.datetime().meta({ description: 'When the hub accepted the release.' }),
        stable: z.boolean(),
      }),
    )
    .meta({ description: 'Newest first.' }),
});

export const serviceSummarySchema = z.strictObject({
  service_id: idSchema,
  service_name: z.string().meta({ description: 'service.json service_name, else the id.' }),
  latest_version: latest('The highest published version.'),
  stable_version: latest('The highest version marked stable.'),
  versions: z
    .array(
      z.strictObject({
        version: semver,
        platforms: z.array(platformSchema),
        size_bytes: count.meta({ description: 'Package size of the first listed platform.' }),
        created_at: z.string().meta({ description: "The manifest's created_at (ISO 8601)." }),
        stable: z.boolean(),
      }),
    )
    .meta({ description: 'Newest first.' }),
});

export const serviceDetailSchema = z.strictObject({
  service_id: idSchema,
  service_name: z.string(),
  latest_version: latest('The highest published version.'),
  stable_version: latest('The highest version marked stable.'),
  versions: z.array(
    z.strictObject({
      version: semver,
      created_at: z.string(),
      stable: z.boolean(),
      platforms: z.partialRecord(
        platformSchema,
        z.strictObject({
          sha256: hash,
          size_bytes: count,
          url: z.string().meta({ description: 'The package, under /storage/services/.' }),
          manifest_url: z.string(),
          signature_url: z.string(),
        }),
      ),
    }),
  ),
});

export const checksumSchema = z.strictObject({
  service_id: idSchema,
  version: semver,
  platform: platformSchema,
  sha256: hash,
  size_bytes: count,
});

export const publisherKeySchema = z.strictObject({
  key_id: z.string().regex(/^[0-9A-F]{16}$/).meta({ description: 'minisign key id, 16 uppercase hex digits.' }),
  public_key: z.string().meta({ description: 'The minisign public key file, comment line included.' }),
});

export const rankingEntrySchema = z.strictObject({
  model_id: idSchema,
  request_count: count.meta({ description: 'Demand the scheduler reported (POST /api/model-usage).' }),
  unavailable_count: count.meta({ description: 'Unmet demand: MODEL_NOT_AVAILABLE answers nodes reported (POST /api/model-unavailable).' }),
  rank: z.number().int().positive().meta({ description: 'By request_count + unavailable_count, most first; ties by model id.' }),
});

export const reportAcceptedSchema = z.strictObject({ success: z.literal(true) });

export const usageRecordedSchema = z.strictObject({
  success: z.literal(true),
  model_id: idSchema,
  request_count: count.meta({ description: 'The total after this report.' }),
});

const published = {
  success: z.literal(true),
  id: idSchema,
  version: semver,
  sha256: hash,
  size_bytes: count,
  key_id: z.string().meta({ description: 'The publisher key that signed the manifest.' }),
};

export const servicePublishedSchema = z.strictObject({
  ...published,
  kind: z.literal('service'),
  platform: platformSchema,
  sha256: hash.meta({ description: "The package's SHA-256." }),
});

export const modelPublishedSchema = z.strictObject({
  ...published,
  kind: z.literal('model'),
  sha256: hash.meta({ description: "SHA-256 of the signed manifest (the model's checksum_sha256)." }),
});

export const markedStableSchema = z.strictObject({
  success: z.literal(true),
  kind: z.enum(['service', 'model']),
  id: idSchema,
  version: semver,
  stable: z.literal(true),
});

export const signedDocumentSchema = z
  .strictObject({ text: z.string().meta({ description: 'The statement, JSON, byte for byte as signed.' }), signature: z.string().meta({ description: 'Its minisign signature (.minisig).' }) })
  .meta({ description: 'A signed statement: a key rotation (signed by the old key) or a revocation (signed by a trusted key).' });

export const delegationStoredSchema = z.strictObject({
  success: z.literal(true),
  key_id: z.string().meta({ description: "The hub's metadata key the delegation certifies." }),
  expires: z.iso.datetime(),
});

export const statementStoredSchema = z.strictObject({
  success: z.literal(true),
  kind: z.enum(['rotation', 'revocation']),
  added: z.boolean().meta({ description: 'false when the same statement was stored before.' }),
});

export const rolloutSetSchema = z.strictObject({ success: z.literal(true), id: idSchema, version: semver, rollout: z.number().int().min(0).max(100) });

/** The components of the document, by name; responses refer to them with $ref. */
export const HUB_SCHEMAS = {
  ErrorEnvelope: errorEnvelopeSchema,
  Health: healthSchema,
  HubIndex: hubIndexSchema,
  OpenApiDocument: openApiDocumentSchema,
  ModelSummary: modelSummarySchema,
  ModelList: z.array(modelSummarySchema),
  ServiceSummary: serviceSummarySchema,
  ServiceList: z.array(serviceSummarySchema),
  ServiceDetail: serviceDetailSchema,
  Checksum: checksumSchema,
  PublisherKey: publisherKeySchema,
  PublisherKeyList: z.array(publisherKeySchema),
  RankingEntry: rankingEntrySchema,
  Ranking: z.array(rankingEntrySchema).meta({ description: 'Most demanded first: by request_count + unavailable_count.' }),
  UsageRecorded: usageRecordedSchema,
  ReportAccepted: reportAcceptedSchema,
  ServicePublished: servicePublishedSchema,
  ModelPublished: modelPublishedSchema,
  MarkedStable: markedStableSchema,
  RolloutSet: rolloutSetSchema,
  Snapshot: snapshotSchema,
  Delegation: delegationSchema,
  SignedDocument: signedDocumentSchema,
  SignedDocumentList: z.array(signedDocumentSchema),
  DelegationStored: delegationStoredSchema,
  StatementStored: statementStoredSchema,
} as const;

export type SchemaName = keyof typeof HUB_SCHEMAS;
