// Path and query parameters, with the same field schemas the hub validates against.
import { z } from 'zod';
import { idSchema, platformSchema, relativePathSchema, versionSchema } from '../../src/schemas/common.js';

const id = idSchema.meta({ description: 'A service or model id.' });
const version = versionSchema.meta({ description: 'A SemVer version such as 1.2.3.' });
const platform = platformSchema.meta({ description: 'The target platform.' });

export const idParams = z.object({ id });
export const versionParams = z.object({ id, version });
export const releaseParams = z.object({ id, version, platform });
export const modelFileParams = z.object({
  id,
  version,
  path: relativePathSchema.meta({
    description: "One of the signed manifest's file paths; it may contain '/' and is percent-decoded exactly once.",
  }),
});
export const legacyZipParams = z.object({
  id,
  file: z
    .string()
    .regex(/^.+\.zip$/)
    .meta({ description: '`{version}.zip`, e.g. `1.1.0.zip`.' }),
});

export const platformFilter = z.object({
  platform: platformSchema.optional().meta({ description: 'Only releases for this platform.' }),
});
export const platformChoice = z.object({
  platform: platformSchema.optional().meta({ description: "The platform; without it the hub's default one (linux-x64 unless configured)." }),
});
export const rankingQuery = z.object({
  limit: z.number().int().min(1).max(1000).default(50).meta({ description: 'How many entries, 1 to 1000.' }),
});
