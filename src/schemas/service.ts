// service.json (SPEC §2). Unknown fields are kept so that newer packages still install.
import { z } from 'zod';
import { idSchema, isoDateSchema, versionSchema } from './common.js';

export const execSchema = z.looseObject({
  type: z.literal('argv'),
  program: z.string().min(1).refine((s) => !s.includes('\0'), 'must not contain NUL'),
  args: z.array(z.string()).default([]),
});

export const platformEntrySchema = z.looseObject({
  exec: execSchema,
  env: z.record(z.string(), z.string()).optional(),
});

export const healthCheckSchema = z.looseObject({
  type: z.literal('http'),
  endpoint: z.string().startsWith('/'),
  startup_grace_ms: z.number().int().nonnegative().default(0),
  interval_ms: z.number().int().positive().default(500),
  timeout_ms: z.number().int().positive().default(30_000),
});

export const serviceModelRefSchema = z.looseObject({
  model_id: z.string(),
  model_type: z.string().optional(),
  version: z.string().optional(),
  path: z.string().optional(),
});

export const serviceJsonSchema = z.looseObject({
  service_id: idSchema,
  service_name: z.string().optional(),
  version: versionSchema,
  description: z.string().optional(),
  models: z.array(serviceModelRefSchema).optional(),
  // Keyed by any string: a package may name platforms this node does not know yet.
  platforms: z.record(z.string(), platformEntrySchema).refine((p) => Object.keys(p).length > 0, "must name at least one platform"),
  default_port: z.number().int().min(1).max(65535).optional(),
  health_check: healthCheckSchema.optional(),
  dependencies: z.record(z.string(), z.string()).optional(),
  created_at: isoDateSchema.optional(),
});

export type ServiceJson = z.infer<typeof serviceJsonSchema>;
export type PlatformEntry = z.infer<typeof platformEntrySchema>;
export type HealthCheck = z.infer<typeof healthCheckSchema>;

/** How long a start may take to become healthy: the startup grace plus the health timeout. */
export function healthBudgetMs(hc: HealthCheck | undefined): number {
  return (hc?.startup_grace_ms ?? 0) + (hc?.timeout_ms ?? 30_000);
}
