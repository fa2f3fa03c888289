// What the effects of every job kind share: the engine's parts, injected, never global.
import type { ConnectionPool } from '../../download/connection-pool.js';
import type { FetchLike } from '../../download/fetch-like.js';
import type { TokenBucket } from '../../download/token-bucket.js';
import type { PlatformAdapter } from '../../platform/adapter.js';
import type { TrustStore } from '../../trust/store.js';
import type { Db } from '../db.js';
import type { Home } from '../home.js';
import type { HubClient } from '../hub-client.js';
import type { JobsStore } from '../jobs-store.js';
import type { NodeMetadata } from '../node-metadata.js';
import type { ProgressHub } from '../progress.js';
import type { Registry } from '../registry.js';
import type { RuntimeRegistry } from '../runtime-registry.js';
import type { verifyServiceRelease } from '../verify-release.js';

export interface EngineContext {
  home: Home;
  db: Db;
  jobs: JobsStore;
  registry: Registry;
  runtime: RuntimeRegistry;
  adapter: PlatformAdapter;
  progress: ProgressHub;
  trust: TrustStore;
  /** The hub's verified snapshot and this node's rollback floors (SPEC §11). */
  metadata: NodeMetadata;
  /** This node's stable id (rollout membership). */
  nodeId(): string;
  fetch: FetchLike;
  stallTimeoutMs?: number;
  /** Shared by every download of the engine (a token bucket). */
  maxBytesPerSecond?: number;
  /** The token bucket that enforces maxBytesPerSecond for all downloads of the engine. */
  bandwidth?: TokenBucket;
  /** Connections of all downloads of the engine together (segments take extra ones only while it has room). */
  connectionPool?: ConnectionPool;
  /** Connections (segments) per downloaded file at most; 1: one connection each. */
  maxConnectionsPerDownload?: number;
  /** A download waits this long for the network to come back before it fails. */
  maxNetworkWaitMs?: number;
  /** Stage files while the package downloads (default on). */
  prestage?: boolean;
  /** Free space kept beyond what a download and its unpacked files need (EngineOptions.diskMarginBytes). */
  diskMarginBytes: number;
  /** Delta updates: fetch only the files this node lacks, by Range, out of the package (default on; src/delta). */
  delta?: boolean;
  /** Mirrors' base URLs (validated, normalised): blobs come from them first, then the hub (SPEC §12). */
  mirrors?: readonly string[];
  now(): number;
  requireHub(): HubClient;
  verifyRelease: typeof verifyServiceRelease;
  warn(message: string): void;
}

/**
 * The downloader options every job passes alike: the engine's limits, shared by all its
 * downloads, and the job's lease and signal — a holder that lost its lease (taken over) writes
 * no further byte.
 */
export function engineDownloadOptions(ctx: EngineContext, job: { assertLease(): void }, signal: AbortSignal) {
  return {
    fetch: ctx.fetch,
    diskMarginBytes: ctx.diskMarginBytes,
    guard: () => job.assertLease(),
    signal,
    stallTimeoutMs: ctx.stallTimeoutMs,
    maxNetworkWaitMs: ctx.maxNetworkWaitMs,
    // Big files in segments, within the engine's connection limit shared by every download.
    maxConnections: ctx.maxConnectionsPerDownload,
    connectionPool: ctx.connectionPool,
    bandwidth: ctx.bandwidth,
  };
}
