// Control flow of the ranged reader, never shown to a user as such: when reading single entries
// out of a remote zip cannot be done (or cannot be trusted), the caller reads the whole package
// instead, which has its own checks (the archive's signed SHA-256) and its own errors. Like the
// downloader's RetryableAttempt (src/download/errors.ts), these stay inside their module's
// callers; what reaches a job is a ModelhubError.

/** Why a job read the whole package rather than single entries; recorded in the job's events. */
export type DeltaFallbackReason =
  /** No installed version to reuse files from, or nothing of it matches. */
  | 'nothing_to_reuse'
  /** The entries to fetch would be more than the share of the package worth ranging for. */
  | 'not_worth_it'
  /** The server answered a ranged request with the whole file (200), or refused ranges. */
  | 'range_ignored'
  /** The file served is not the signed one (another size or ETag, or a 404). */
  | 'archive_differs'
  /** The zip's end records, central directory or a local header cannot be read safely. */
  | 'bad_archive'
  /** The central directory disagrees with the signed manifest's files (names, sizes, kinds, extra entries). */
  | 'manifest_mismatch'
  /** An entry's bytes did not match its signed size or SHA-256. */
  | 'entry_mismatch'
  /** Requests kept failing (after retries); the whole-file downloader waits out outages. */
  | 'network'
  /** A full download of this release was already under way (a resumed job goes on with it). */
  | 'full_download_started'
  /** Turned off (EngineOptions.delta === false). */
  | 'disabled';

export class DeltaUnavailable extends Error {
  constructor(
    readonly reason: DeltaFallbackReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DeltaUnavailable';
  }
}

/** One ranged request failed in a way that another request may fix (a reset, a stall, a 5xx). */
export class RangeRetryable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RangeRetryable';
  }
}
