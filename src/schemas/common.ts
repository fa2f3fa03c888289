// Field schemas shared by service.json, model.json, manifests and API bodies.
import semver from 'semver';
import { z } from 'zod';

export const PLATFORMS = ['linux-x64', 'windows-x64', 'darwin-arm64', 'darwin-x64'] as const;
export type Platform = (typeof PLATFORMS)[number];
export const platformSchema = z.enum(PLATFORMS);

/** Ids become directory names and URL segments, so they are a strict, portable subset. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const idSchema = z
  .string()
  .regex(ID_PATTERN, 'must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit')
  .refine((s) => !s.includes('..'), 'must not contain ".."');

export const versionSchema = z
  .string()
  .refine((s) => semver.valid(s) === s, 'must be a SemVer version such as 1.2.3');

export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

export { isSafeRelativePath } from './safe-path.js';
import { isSafeRelativePath } from './safe-path.js';

export const relativePathSchema = z
  .string()
  .refine(isSafeRelativePath, 'must be a relative path with "/" separators and no "..", "." or empty segment');

export const isoDateSchema = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date');
