// The one error family of modelhub (SPEC §6). Every failure the user can see carries one of
// these literal codes, the underlying cause, and whether trying again could help.

export const ERROR_CODES = [
  'NOT_FOUND',
  'MODEL_NOT_AVAILABLE',
  'VERSION_NOT_FOUND',
  'PLATFORM_NOT_SUPPORTED',
  'SIGNATURE_INVALID',
  'UNTRUSTED_KEY',
  'MANIFEST_INVALID',
  'MANIFEST_MISMATCH',
  'CHECKSUM_MISMATCH',
  'SIZE_EXCEEDED',
  'UNSAFE_ARCHIVE',
  'DOWNGRADE_REFUSED',
  'INSUFFICIENT_DISK',
  'NETWORK_ERROR',
  'HEALTH_CHECK_FAILED',
  'START_FAILED',
  'ALREADY_EXISTS',
  'UNAUTHORIZED',
  'RATE_LIMITED',
  'INVALID_REQUEST',
  'INTERNAL',
  // SPEC §10: jobs the user controls.
  'CANCEL_TOO_LATE',
  // SPEC §11: fresh, signed metadata and keys.
  'METADATA_EXPIRED',
  'ROLLBACK_DETECTED',
  'KEY_REVOKED',
  'KEY_ID_CONFLICT',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Codes where a later attempt may succeed without anyone changing anything. */
const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'NETWORK_ERROR',
  'RATE_LIMITED',
  'INSUFFICIENT_DISK',
  'MODEL_NOT_AVAILABLE',
]);

export interface ModelhubErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  details?: Record<string, unknown>;
}

export class ModelhubError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ModelhubErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ModelhubError';
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    this.details = options.details ?? {};
  }

  toJSON(): { code: ErrorCode; message: string; retryable: boolean; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, retryable: this.retryable, details: this.details };
  }
}

/** Codes of "the disk (or the quota) is full", from the file system and from SQLite. */
const DISK_FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

export function isDiskFull(err: unknown): boolean {
  return typeof err === 'object' && err !== null && DISK_FULL_CODES.has(String((err as { code?: unknown }).code));
}

/**
 * Wrap anything thrown into the family, keeping a ModelhubError as it is. A full disk is
 * INSUFFICIENT_DISK wherever it happens (a write, a rename, an append to engine.db).
 */
export function toModelhubError(err: unknown, fallback: ErrorCode = 'INTERNAL'): ModelhubError {
  if (err instanceof ModelhubError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ModelhubError(isDiskFull(err) ? 'INSUFFICIENT_DISK' : fallback, message, { cause: err });
}

/** The HTTP status the hub answers with for each code (SPEC §4). */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case 'NOT_FOUND':
    case 'VERSION_NOT_FOUND':
    case 'MODEL_NOT_AVAILABLE':
      return 404;
    case 'PLATFORM_NOT_SUPPORTED':
      return 404;
    case 'SIGNATURE_INVALID':
    case 'INVALID_REQUEST':
      return 400;
    case 'UNAUTHORIZED':
      return 401;
    case 'UNTRUSTED_KEY':
      return 403;
    case 'ALREADY_EXISTS':
    case 'CANCEL_TOO_LATE':
    case 'KEY_ID_CONFLICT':
      return 409;
    case 'KEY_REVOKED':
      return 403;
    case 'METADATA_EXPIRED':
    case 'ROLLBACK_DETECTED':
      return 422;
    case 'SIZE_EXCEEDED':
      return 413;
    case 'MANIFEST_INVALID':
    case 'MANIFEST_MISMATCH':
    case 'CHECKSUM_MISMATCH':
    case 'UNSAFE_ARCHIVE':
    case 'DOWNGRADE_REFUSED':
      return 422;
    case 'RATE_LIMITED':
      return 429;
    case 'INSUFFICIENT_DISK':
      return 507;
    case 'NETWORK_ERROR':
    case 'HEALTH_CHECK_FAILED':
    case 'START_FAILED':
      return 502;
    case 'INTERNAL':
      return 500;
  }
}
