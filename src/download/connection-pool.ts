// The connections of all downloads of one engine together: a download's first connection is
// always granted (a job never waits on another job for its only connection), extra ones (the
// segments of a big file) only while fewer than `limit` connections are open in all.
import { ModelhubError } from '../errors.js';

export const DEFAULT_MAX_CONNECTIONS = 8;

export class ConnectionPool {
  private open = 0;

  constructor(readonly limit = DEFAULT_MAX_CONNECTIONS) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new ModelhubError('INVALID_REQUEST', `connection limit must be an integer ≥ 1, got ${limit}`, { retryable: false });
    }
  }

  get inUse(): number {
    return this.open;
  }

  /** A download's first connection: granted at once, and counted. Returns its release. */
  first(): () => void {
    this.open += 1;
    return this.releaser();
  }

  /** An extra connection, or null when the engine has `limit` open already. */
  extra(): (() => void) | null {
    if (this.open >= this.limit) return null;
    this.open += 1;
    return this.releaser();
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open -= 1;
    };
  }
}
