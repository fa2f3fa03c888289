// model.json: what an admin writes beside a model's files before `modelhub pack`.
import { z } from 'zod';
import { idSchema, isoDateSchema, versionSchema } from './common.js';

export const modelJsonSchema = z.looseObject({
  model_id: idSchema,
  version: versionSchema,
  name: z.string().min(1),
  task: z.string().min(1),
  languages: z.array(z.string()).default([]),
  created_at: isoDateSchema.optional(),
});

export type ModelJson = z.infer<typeof modelJsonSchema>;
