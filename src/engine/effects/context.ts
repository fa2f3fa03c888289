// What the effects of every job kind share: the engine's parts, injected, never global.
import type { FetchLike } from '../../download/fetch-like.js';
import type { PlatformAdapter } from '../../platform/adapter.js';
import type { TrustStore } from '../../trust/store.js';
import type { Db } from '../db.js';
import type { Home } from '../home.js';
import type { HubClient } from '../hub-client.js';
import type { JobsStore } from '../jobs-store.js';
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
  fetch: FetchLike;
  stallTimeoutMs?: number;
  /** Shared by every download of the engine (a token bucket). */
  maxBytesPerSecond?: number;
  /** A download waits this long for the network to come back before it fails. */
  maxNetworkWaitMs?: number;
  /** Stage files while the package downloads (default on). */
  prestage?: boolean;
  now(): number;
  requireHub(): HubClient;
  verifyRelease: typeof verifyServiceRelease;
  warn(message: string): void;
}
