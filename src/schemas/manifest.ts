// The signed release manifest (SPEC §3). The signature covers these exact bytes, so the
// parsed object is only ever used for reading; nobody re-serialises a manifest to verify it.
import { z } from 'zod';
import {
  idSchema,
  isoDateSchema,
  platformSchema,
  relativePathSchema,
  sha256Schema,
  versionSchema,
} from './common.js';
import { serviceJsonSchema } from './service.js';

export const MAX_FILE_MODE = 0o7777;

export const manifestFileSchema = z.looseObject({
  path: relativePathSchema,
  sha256: sha256Schema,
  size: z.number().int().nonnegative(),
  mode: z.number().int().min(0).max(MAX_FILE_MODE).optional(),
});

export const serviceManifestSchema = z.looseObject({
  schema: z.literal(1),
  kind: z.literal('service'),
  id: idSchema,
  version: versionSchema,
  platform: platformSchema,
  archive: z.looseObject({
    path: z.literal('service.zip'),
    sha256: sha256Schema,
    size: z.number().int().nonnegative(),
  }),
  files: z.array(manifestFileSchema),
  service: serviceJsonSchema,
  created_at: isoDateSchema,
});

export const modelInfoSchema = z.looseObject({
  name: z.string(),
  task: z.string(),
  languages: z.array(z.string()),
});

export const modelManifestSchema = z.looseObject({
  schema: z.literal(1),
  kind: z.literal('model'),
  id: idSchema,
  version: versionSchema,
  files: z.array(manifestFileSchema).min(1),
  model: modelInfoSchema,
  created_at: isoDateSchema,
});

export const manifestSchema = z.discriminatedUnion('kind', [serviceManifestSchema, modelManifestSchema]);

export type ManifestFile = z.infer<typeof manifestFileSchema>;
export type ServiceManifest = z.infer<typeof serviceManifestSchema>;
export type ModelManifest = z.infer<typeof modelManifestSchema>;
export type Manifest = z.infer<typeof manifestSchema>;
