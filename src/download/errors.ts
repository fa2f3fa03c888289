// The downloader's internal control flow (what an attempt tells its retry loop) and the errors
// it hands to callers.
import { ModelhubError } from '../errors.js';

/** The attempt saw no bytes for stallTimeoutMs. `answered`: the server had sent its headers. */
export class StallError extends Error {
  constructor(
    ms: number,
    readonly answered: boolean,
  ) {
    super(answered ? `no data received for ${ms} ms` : `no answer within ${ms} ms`);
    this.name = 'StallError';
  }
}

/**
 * The attempt failed in a way another attempt may fix. `restart`: drop the `.part` first.
 * `loss`: the connection broke mid-body; if the next request finds no network at all, this was
 * the start of an outage, and the attempt is given back.
 */
export class RetryableAttempt extends Error {
  constructor(
    readonly error: ModelhubError,
    readonly restart = false,
    readonly loss = false,
  ) {
    super(error.message);
    this.name = 'RetryableAttempt';
  }
}

/** A request got no HTTP answer at all (refused, reset, DNS, unreachable): wait for the network. */
export class OutageError extends Error {
  constructor(readonly url: string, cause: unknown) {
    super(`${url}: no answer: ${errMessage(cause)}`, { cause });
    this.name = 'OutageError';
  }
}

/** The `.part` this download writes is no longer at its path (deleted or replaced). */
export class PartLost extends Error {
  constructor(part: string) {
    super(`${part} was deleted or replaced during the download`);
    this.name = 'PartLost';
  }
}

/** This connection's work was taken over (a restart from zero, or a split undone): stop quietly. */
export class Superseded extends Error {
  constructor(why: string) {
    super(why);
    this.name = 'Superseded';
  }
}

export function networkError(url: string, why: string, retryable: boolean, cause?: unknown, status?: number): ModelhubError {
  return new ModelhubError('NETWORK_ERROR', `${url}: ${why}`, {
    cause,
    retryable,
    details: status === undefined ? { url } : { url, status },
  });
}

export function sizeExceeded(url: string, expectedSize: number, why: string): ModelhubError {
  return new ModelhubError('SIZE_EXCEEDED', `${url}: ${why}; the signed size is ${expectedSize}`, {
    retryable: false,
    details: { url, expectedSize },
  });
}

export function diskError(part: string, err: unknown): ModelhubError {
  if (isErrno(err, 'ENOSPC')) {
    return new ModelhubError('INSUFFICIENT_DISK', `disk full while writing ${part}`, { cause: err, retryable: true });
  }
  return new ModelhubError('INTERNAL', `writing ${part}: ${errMessage(err)}`, { cause: err, retryable: false });
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
