// A download request after validation, with every default filled in, and the counters one
// downloadFile() call keeps across its attempts, connections and restarts.
import type { ConnectionPool } from './connection-pool.js';
import type { FetchLike } from './fetch-like.js';
import type { TokenBucket } from './token-bucket.js';

export interface DownloadProgress {
  /** Bytes of the file we have (on disk or about to be written). */
  bytesDone: number;
  bytesTotal: number;
  /**
   * Where the current run of `bytesDone` values started: the bytes of the `.part` this call
   * resumed, or 0 once the download had to restart from the beginning. `bytesDone` never goes
   * down while `resumedFrom` stays the same; when it does go down (to 0), `resumedFrom` is 0.
   */
  resumedFrom: number;
}

export interface Config {
  url: string;
  dest: string;
  part: string;
  meta: string;
  expectedSize: number;
  expectedSha256: string;
  fetch: FetchLike;
  signal: AbortSignal | undefined;
  stallTimeoutMs: number;
  maxAttempts: number;
  maxStalls: number;
  backoffMs: (attempt: number) => number;
  maxNetworkWaitMs: number;
  probeDelayMs: (probe: number) => number;
  /** Connections for this file at most (1: never in segments). */
  maxConnections: number;
  /** Files bigger than this may be fetched in segments. */
  segmentMinSize: number;
  /** A piece is split only when each half gets at least this many bytes. */
  minSplitSize: number;
  bandwidth: TokenBucket | undefined;
  pool: ConnectionPool | undefined;
  onProgress: ((p: DownloadProgress) => void) | undefined;
  onFlushed: ((bytesOnDisk: number) => void) | undefined;
  onRestart: (() => void) | undefined;
  onNetworkWait: ((waiting: boolean) => void) | undefined;
  guard: (() => void) | undefined;
  durable: boolean;
  checksumRefetches: number;
  strictServer: boolean;
  /** Free space kept beyond the bytes still to download. */
  diskMarginBytes: number;
}

export interface Stats {
  requests: number;
  /** Stalls of every kind (a silent body, and no answer in time). */
  stalls: number;
  bytesFetched: number;
  restartedFromZero: boolean;
  resumedFrom: number;
  /** Most connections open at once. */
  connections: number;
  splits: number;
  readBack: { bytes: number; readMs: number; hashMs: number };
  networkWaitMs: number;
}

export function newStats(): Stats {
  return {
    requests: 0,
    stalls: 0,
    bytesFetched: 0,
    restartedFromZero: false,
    resumedFrom: 0,
    connections: 0,
    splits: 0,
    readBack: { bytes: 0, readMs: 0, hashMs: 0 },
    networkWaitMs: 0,
  };
}

/** Segments pay off only for big files from a server that answers ranges. */
export function segmentable(cfg: Config): boolean {
  return cfg.maxConnections > 1 && cfg.expectedSize > cfg.segmentMinSize;
}
