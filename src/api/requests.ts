// The arguments of every API call, parsed before anything runs: they come from a renderer that
// may show hostile content, or from a page server request. A malformed call is INVALID_REQUEST.
import { z } from 'zod';
import type { ModelhubMethod } from '../client/types.js';
import { idSchema, versionSchema } from '../schemas/common.js';

/** Job ids are random UUIDs (engine.ts). */
export const jobIdSchema = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a job id from `modelhub jobs`');

const targetSchema = z.strictObject({ id: idSchema, version: versionSchema.optional() });
/** No argument: everything installed; { id }: its versions; { id, version }: that one. */
const optionalTarget = z.union([z.tuple([]), z.tuple([targetSchema.partial().refine((t) => t.version === undefined || t.id !== undefined, 'a version needs an id')])]);

export const callArguments = {
  install: z.tuple([z.strictObject({ id: idSchema, version: versionSchema.optional(), start: z.boolean().optional(), allowDowngrade: z.boolean().optional() })]),
  uninstall: z.tuple([targetSchema]),
  pullModel: z.tuple([targetSchema]),
  cancel: z.tuple([jobIdSchema]),
  pause: z.tuple([jobIdSchema]),
  resume: z.tuple([jobIdSchema]),
  state: z.tuple([]),
  ranking: z.tuple([]),
  checkForUpdates: z.tuple([]),
  start: z.tuple([idSchema]),
  stop: z.tuple([idSchema]),
  status: z.tuple([]),
  jobEvents: z.tuple([jobIdSchema]),
  verify: optionalTarget,
  repair: optionalTarget,
} satisfies Record<ModelhubMethod, z.ZodType<unknown[]>>;

export type CallArguments = { [M in ModelhubMethod]: z.infer<(typeof callArguments)[M]> };
