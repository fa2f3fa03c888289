// The engine as a library (what an Electron main process embeds; the CLI is a thin shell on
// it). One job per subject across threads and processes: the first caller runs the job, the
// others attach to it and get its result.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { AnyStateMachine, Snapshot } from 'xstate';
import { installMachine, type InstallContext, type InstallInput, type InstallOutput } from '../../machines/install.js';
import { uninstallMachine, type UninstallContext, type UninstallInput } from '../../machines/uninstall.js';
import type { ErrorInfo } from '../../machines/errors.js';
import { defaultFetch, type FetchLike } from '../download/fetch-like.js';
import { ConnectionPool, DEFAULT_MAX_CONNECTIONS } from '../download/connection-pool.js';
import { TokenBucket } from '../download/token-bucket.js';
import { DISK_MARGIN_BYTES } from '../download/download.js';
import { parseMirrors } from '../download/sources.js';
import type { JobEventLine, RepairJobValue, RepairReportValue, ServiceStatusValue, StartResultValue, UpdateInfo, VerifyReportValue } from '../client/types.js';
import { ModelhubError } from '../errors.js';
import { waitHealthy } from '../runtime/manager.js';
import { healthBudgetMs } from '../schemas/service.js';
import { latestVersion } from '../schemas/versions.js';
import { platformAdapter, type PlatformAdapter } from '../platform/adapter.js';
import { platformNameOf } from '../platform/name.js';
import type { Platform } from '../schemas/common.js';
import { TrustStore } from '../trust/store.js';
import type { Db } from './db.js';
import { openUnsyncedConnection } from './db.js';
import { openCheckedDb } from './db-open.js';
import { planRebuild, recordsNotice, type RecordsNotice } from './records.js';
import { repairPointers, type PointerRepair } from './pointers.js';
import { ensureReserve, releaseReserve, RESERVE_BYTES } from './disk-reserve.js';
import type { EngineContext } from './effects/context.js';
import { installEffects } from './effects/install.js';
import { uninstallEffects } from './effects/uninstall.js';
import { modelPullEffects } from './effects/model-pull.js';
import { modelPullMachine, type ModelPullContext, type ModelPullInput } from '../../machines/model-pull.js';
import { rebuildMachine } from '../../machines/rebuild.js';
import { rebuildEffects } from './effects/rebuild.js';
import { repairMachine, type RepairInput, type RepairOutput } from '../../machines/repair.js';
import { repairEffects } from './effects/repair.js';
import { verifyInstalled, type VerifyTarget } from './verify.js';
import { sweepUnowned, SWEEP_GRACE_MS, type SweptEntry } from './sweep.js';
import { BlobStore } from '../store/blobs.js';
import { modelBlobRefs } from './effects/model-remove.js';
import { Home } from './home.js';
import { HubClient } from './hub-client.js';
import { toExportLine } from './export-format.js';
import { JobControls } from './job-controls.js';
import { NodeMetadata } from './node-metadata.js';
import { latestForNode } from '../metadata/rollout.js';
import { JobsStore, type JobKind, type JobRow } from './jobs-store.js';
import { DEFAULT_LEASE_TTL_MS, Leases } from './leases.js';
import { ProgressHub, withPercent, type ProgressEvent } from './progress.js';
import { Registry } from './registry.js';
import { JobRun, PAUSED, type JobHandle } from './runner.js';
import { RuntimeRegistry } from './runtime-registry.js';
import { serviceStatuses } from './status.js';
import { verifyServiceRelease } from './verify-release.js';
import { modelPath, ModelNotAvailableError, parseModelRequest, reportOf } from './model-path.js';
import { ensureNodeId } from './node-id.js';
import { BackgroundReporter, schedulerTargetOf } from './scheduler-report.js';

export interface EngineOptions {
  home: string;
  hub?: string;
  fetch?: FetchLike;
  platform?: Platform;
  adapter?: PlatformAdapter;
  now?: () => number;
  stallTimeoutMs?: number;
  /** Stage files while the package downloads (default true). */
  prestage?: boolean;
  /**
   * Delta updates (default true; `MODELHUB_DELTA=0` turns them off): an update fetches only the
   * files this node does not have, with Range requests out of the package (src/delta).
   */
  delta?: boolean;
  leaseTtlMs?: number;
  heartbeatMs?: number;
  warn?: (message: string) => void;
  /**
   * The Node executable for the processes the engine spawns (the service supervisor). Default:
   * this process's executable, run as Node (ELECTRON_RUN_AS_NODE=1) inside Electron.
   */
  nodeExecutable?: string;
  /**
   * Free space kept in hand beyond what a download and its unpacked files need, checked before
   * any byte is fetched (default 64 MiB, DISK_MARGIN_BYTES; README "Disk space"). The CLI sets
   * it from --disk-margin or $MODELHUB_DISK_MARGIN.
   */
  diskMarginBytes?: number;
  /** Cap on the download speed of all this engine's jobs together (bytes per second). */
  maxBytesPerSecond?: number;
  /** How long a download waits for the network to come back before it fails (default 30 min). */
  maxNetworkWaitMs?: number;
  /** Connections of all this engine's downloads together (default 8): big files get segments only while there is room. */
  maxConnections?: number;
  /** Connections (segments) per file at most (default 8); 1 fetches every file over one connection. */
  maxConnectionsPerDownload?: number;
  /**
   * Where a MODEL_NOT_AVAILABLE answer of getModelPath is also POSTed, as
   * `{ type: "model_unavailable", node_id, model_id, version, reason, ts }` (SPEC §10), in the
   * background. Default: $MODELHUB_SCHEDULER; '' for none.
   */
  scheduler?: string;
  /** Bearer token for the scheduler (e.g. the hub's node token). Default: $MODELHUB_NODE_TOKEN. */
  schedulerToken?: string;
  /**
   * Mirrors (SPEC §12): base URLs of static copies of the hub's storage folder (http or https;
   * no credentials, query or fragment). Service packages and model files come from the first
   * one that serves them right, then from the hub; metadata only ever from the hub. A bad URL is
   * INVALID_REQUEST. Default none (the library reads no environment variable for this; the CLI
   * passes --mirror or $MODELHUB_MIRRORS).
   */
  mirrors?: readonly string[];
}

export interface JobResult {
  ok: boolean;
  jobId: string;
  kind: JobKind;
  target: string;
  state: string;
  attached: boolean;
  output: unknown;
  error: ErrorInfo | null;
}

export interface InstallResult extends JobResult {
  id: string;
  version: string | null;
  current: string | null;
  rolled_back: boolean;
}

export interface InstallOptions {
  id: string;
  version?: string | null;
  allowDowngrade?: boolean;
  start?: boolean;
  platform?: Platform;
  /**
   * Aborting cancels the job when this call started it (before the switch; after it, the job
   * runs to its end). A call that joined another caller's job stops waiting and rejects.
   */
  signal?: AbortSignal;
}

export interface PullResult extends JobResult {
  id: string;
  version: string | null;
  path: string | null;
}

/** What `resume` answers: the result of the job's kind. */
export type ResumeResult = (InstallResult & { kind: 'install' }) | (PullResult & { kind: 'model_pull' }) | JobResult;

export interface PullOptions {
  id: string;
  version?: string | null;
  signal?: AbortSignal;
}

/** States in which a job can still be cancelled: nothing of the new version is current yet. */
const CANCELLABLE_STATES = new Set(['created', 'resolving', 'verifying_manifest', 'downloading', 'verifying_archive', 'staging', PAUSED]);
/** States a user can pause: before and while bytes flow. */
const PAUSABLE_STATES = new Set(['resolving', 'verifying_manifest', 'downloading']);

export interface RecoverReport {
  recovered: { jobId: string; kind: JobKind; target: string; from: string; state: string }[];
  busy: string[];
  /** Jobs a user paused: left as they are. */
  paused: string[];
  swept: string[];
  /** Services whose `current` pointer was half-written or dangling, repaired from the registry. */
  pointers: PointerRepair[];
}

const POLL_MS = 100;
const FINAL_OK = 'committed';

/** What a job holds the lease of: a service or a model (an uninstall of a model holds the model's). */
function subjectOf(kind: JobKind, id: string, of?: 'service' | 'model'): string {
  return (of ?? (kind === 'model_pull' ? 'model' : 'service')) === 'model' ? `model:${id}` : `service:${id}`;
}

export class Engine {
  readonly home: Home;
  /** @internal engine.db is not part of the public API. */
  readonly db: Db;
  /** engine.db again, for the writes that need no fsync (progress rows). */
  private readonly progressDb: Db;
  readonly jobs: JobsStore;
  readonly registry: Registry;
  readonly runtime: RuntimeRegistry;
  readonly trust: TrustStore;
  readonly platform: Platform;
  private readonly progressHub = new ProgressHub();
  private readonly leases: Leases;
  private readonly ctx: EngineContext;
  private readonly owner = randomUUID();
  /** Jobs this engine is running now: never "recovered" by this engine as if interrupted. */
  private readonly running = new Map<string, JobRun>();
  private readonly controls: JobControls;
  /** The hub's verified catalog snapshot and the rollback floors. */
  readonly metadata: NodeMetadata;
  /** The hub client, or null when the engine was made without a hub. */
  readonly hub: HubClient | null;

  constructor(private readonly options: EngineOptions) {
    // Options first: a bad one must not leave engine.db open.
    const mirrors = parseMirrors(options.mirrors ?? []);
    if (options.diskMarginBytes !== undefined && !(Number.isSafeInteger(options.diskMarginBytes) && options.diskMarginBytes >= 0)) {
      throw new ModelhubError('INVALID_REQUEST', `diskMarginBytes must be a whole number of bytes ≥ 0, not ${String(options.diskMarginBytes)}`);
    }
    this.home = new Home(options.home);
    // Checked before use: a missing or unreadable engine.db is replaced (the bad one kept aside)
    // and the registry rebuilt from the version folders by a rebuild job (SPEC §13).
    const opened = openCheckedDb(this.home.db, (options.now ?? Date.now)());
    this.db = opened.db;
    this.progressDb = openUnsyncedConnection(this.db);
    this.jobs = new JobsStore(
      this.db,
      () => {
        const freed = releaseReserve(this.home.root);
        if (freed) this.ctx.warn(`the disk of ${this.home.root} is full: the engine's ${RESERVE_BYTES}-byte reserve was given up to record the job's state`);
        return freed;
      },
      this.progressDb,
    );
    this.registry = new Registry(this.db);
    this.leases = new Leases(this.db, this.owner);
    const adapter = options.adapter ?? platformAdapter;
    const platform = options.platform ?? platformNameOf(process.platform, process.arch);
    if (platform === null) throw new ModelhubError('PLATFORM_NOT_SUPPORTED', `no release platform for ${process.platform}-${process.arch}`);
    this.platform = platform;
    this.runtime = new RuntimeRegistry(this.db, this.home, adapter, platform, options.nodeExecutable);
    this.trust = new TrustStore(this.home.trust);
    this.controls = new JobControls(this.db);
    this.metadata = new NodeMetadata(this.db, this.trust, options.now ?? Date.now);
    const fetch = options.fetch ?? defaultFetch();
    const hub = options.hub !== undefined && options.hub !== '' ? new HubClient(options.hub, fetch) : null;
    this.hub = hub;
    this.ctx = {
      home: this.home,
      db: this.db,
      jobs: this.jobs,
      registry: this.registry,
      runtime: this.runtime,
      adapter,
      progress: this.progressHub,
      trust: this.trust,
      metadata: this.metadata,
      nodeId: () => this.nodeId,
      fetch,
      stallTimeoutMs: options.stallTimeoutMs,
      maxBytesPerSecond: options.maxBytesPerSecond,
      maxNetworkWaitMs: options.maxNetworkWaitMs,
      bandwidth: options.maxBytesPerSecond === undefined ? undefined : new TokenBucket(options.maxBytesPerSecond),
      connectionPool: new ConnectionPool(options.maxConnections ?? DEFAULT_MAX_CONNECTIONS),
      maxConnectionsPerDownload: options.maxConnectionsPerDownload,
      prestage: options.prestage ?? process.env.MODELHUB_PRESTAGE !== '0',
      diskMarginBytes: options.diskMarginBytes ?? DISK_MARGIN_BYTES,
      delta: options.delta ?? process.env.MODELHUB_DELTA !== '0',
      mirrors,
      now: options.now ?? Date.now,
      requireHub: () => {
        if (hub === null) throw new ModelhubError('INVALID_REQUEST', 'no hub: pass --hub URL or set MODELHUB_HUB');
        return hub;
      },
      verifyRelease: verifyServiceRelease,
      warn: options.warn ?? ((m) => process.stderr.write(`warning: ${m}\n`)),
    };
    ensureReserve(this.home.root, this.ctx.diskMarginBytes);
    if (planRebuild(this.db, this.jobs, this.home, opened.loss, this.ctx.now(), randomUUID) !== null && opened.loss !== null) {
      const kept = opened.loss.keptAs === null ? '' : `, kept as ${path.basename(opened.loss.keptAs)}`;
      this.ctx.warn(`engine.db ${opened.loss.reason === 'missing' ? 'was missing' : `was not a valid database (${opened.loss.problem})${kept}`}: the records are rebuilt from the version folders on disk`);
    }
  }

  /** Live progress of every job this engine runs or attaches to (throttled, monotonic). */
  get progress$() {
    return this.progressHub.progress$;
  }

  get hooks() {
    return this.progressHub.hooks;
  }

  close(): void {
    if (this.progressDb !== this.db) this.progressDb.close();
    this.db.close();
  }

  // ---- jobs ------------------------------------------------------------------------------

  private machineFor(kind: JobKind, handle: JobHandle & { jobId: string; target: () => string }): AnyStateMachine {
    if (kind === 'install') return installMachine.provide({ actors: installEffects(this.ctx, handle) });
    if (kind === 'uninstall') return uninstallMachine.provide({ actors: uninstallEffects(this.ctx, handle) });
    if (kind === 'rebuild') return rebuildMachine.provide({ actors: rebuildEffects(this.ctx, handle, { platform: this.platform }) });
    if (kind === 'repair') return repairMachine.provide({ actors: repairEffects(this.ctx, handle, { platform: this.platform }) });
    return modelPullMachine.provide({ actors: modelPullEffects(this.ctx, handle) });
  }

  private targetOf(kind: JobKind, context: unknown): string | undefined {
    if (kind === 'install') {
      const c = context as InstallContext;
      return `${c.request.id}@${c.release?.version ?? c.request.version ?? 'latest'}`;
    }
    if (kind === 'uninstall') {
      const c = context as UninstallContext;
      return `${c.request.id}@${c.request.version ?? '*'}`;
    }
    if (kind === 'rebuild') return undefined;
    if (kind === 'repair') {
      const c = context as RepairInput;
      return `${c.id}@${c.version}`;
    }
    const m = context as ModelPullContext;
    return `${m.request.id}@${m.resolved?.version ?? m.request.version ?? 'latest'}`;
  }

  private run(row: { id: string; kind: JobKind; subject: string; target: string }, start: { input: unknown } | { snapshot: Snapshot<unknown>; restores: number; userEvent?: 'RESUME' | 'CANCEL' }): Promise<{ state: string; output: unknown }> {
    let target = row.target;
    let previous: string | null = null;
    // The effects get a handle to the run before it exists; they only use it once it runs.
    const handle = {
      jobId: row.id,
      target: () => target,
      send: (e: { type: string; [k: string]: unknown }) => run.send(e),
      assertLease: () => run.assertLease(),
      get signal(): AbortSignal {
        return run.signal;
      },
    };
    const run: JobRun = new JobRun({
      jobId: row.id,
      kind: row.kind,
      subject: row.subject,
      owner: this.owner,
      machine: this.machineFor(row.kind, handle),
      start,
      store: this.jobs,
      leases: this.leases,
      now: () => this.ctx.now(),
      heartbeatMs: this.options.heartbeatMs,
      controls: this.controls,
      targetOf: (c) => this.targetOf(row.kind, c),
      onState: (state, context) => {
        target = this.targetOf(row.kind, context) ?? target;
        if (state !== previous) {
          this.progressHub.hooks.emit('jobStateChanged', { jobId: row.id, kind: row.kind, target, state, previous });
          const p = (context as { progress?: { bytesDone: number; bytesTotal: number } }).progress;
          this.progressHub.emit({ jobId: row.id, kind: row.kind, target, phase: state, bytesDone: p?.bytesDone ?? 0, bytesTotal: p?.bytesTotal ?? 0, speedBps: 0, etaSeconds: null, ts: this.ctx.now() });
          previous = state;
        }
      },
    });
    this.running.set(row.id, run);
    run.start();
    return run.done.finally(() => {
      this.running.delete(row.id);
      this.controls.clear(row.id);
      this.progressHub.forget(row.id);
    });
  }

  /** Resumes, redoes or rolls back one interrupted job (restart table), to its end. */
  private async restore(row: JobRow): Promise<{ state: string; output: unknown }> {
    if (row.snapshot === '') {
      // Created but interrupted before its first event: start it from its input.
      return this.run(row, { input: JSON.parse(row.input) as unknown });
    }
    const restores = this.jobs.bumpRestores(row.id);
    return this.run(row, { snapshot: JSON.parse(row.snapshot) as Snapshot<unknown>, restores });
  }

  /**
   * Waits until the job ends (or `until` holds), taking it over if its holder dies meanwhile.
   * A paused job is nobody's to take over: it waits for its user.
   */
  private async waitForJob(jobId: string, onProgress?: (p: ProgressEvent) => void, signal?: AbortSignal, until: (row: JobRow) => boolean = (row) => row.active === 0): Promise<JobRow> {
    let lastProgress = '';
    let lastState = '';
    for (;;) {
      signal?.throwIfAborted();
      const row = this.jobs.job(jobId);
      if (row === undefined) throw new ModelhubError('INTERNAL', `job ${jobId} vanished`);
      if (row.active === 0 || until(row)) return row;
      if (onProgress !== undefined) {
        if (row.progress !== null && row.progress !== lastProgress && row.state === 'downloading') {
          lastProgress = row.progress;
          try {
            onProgress(withPercent(JSON.parse(row.progress) as ProgressEvent));
          } catch {
            // a partially written progress row is skipped
          }
        }
        if (row.state !== lastState) {
          lastState = row.state;
          onProgress(withPercent({ jobId, kind: row.kind, target: row.target, phase: row.state, bytesDone: 0, bytesTotal: 0, speedBps: 0, etaSeconds: null, ts: this.ctx.now() }));
        }
      }
      // A holder that died while we waited: take the job over.
      const lease = this.leases.get(row.subject);
      if (row.state !== PAUSED && (lease === undefined || (lease.job_id === jobId && !this.leases.isLive(lease, this.ctx.now())))) {
        const took = this.db.transaction(() => this.leases.tryTake(row.subject, jobId, this.ctx.now(), this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS)).immediate();
        if (took) {
          const fresh = this.jobs.job(jobId);
          if (fresh !== undefined && fresh.active === 1) await this.restore(fresh);
          else this.leases.release(row.subject);
          continue;
        }
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /**
   * Runs a job for `subject`, or attaches to the one already running for the same request.
   * A different request for the same subject waits for the running job to end first.
   */
  private async runOrAttach(kind: JobKind, id: string, requested: string, input: (jobId: string) => unknown, onProgress?: (p: ProgressEvent) => void, signal?: AbortSignal, of?: 'service' | 'model'): Promise<JobResult> {
    const subject = subjectOf(kind, id, of);
    for (;;) {
      const now = this.ctx.now();
      const decision = this.db
        .transaction((): { run: string; input: unknown } | { attach: string } | { wait: string } | { resume: JobRow } | { unpause: string } => {
          const active = this.jobs.activeJobFor(subject);
          const lease = this.leases.get(subject);
          if (active !== undefined && active.state === PAUSED) {
            // Asking again for what a paused job does resumes it; anything else must wait for
            // the user to resume or cancel it, which may be never.
            if (active.kind === kind && active.requested === requested) return { unpause: active.id };
            throw new ModelhubError('INVALID_REQUEST', `${subject.replace(/^\w+:/, '')}: a paused ${active.kind} job (${active.target}) holds it; resume or cancel job ${active.id} first`, {
              details: { job_id: active.id, state: active.state },
            });
          }
          if (active !== undefined) {
            const live = lease !== undefined && lease.job_id === active.id && this.leases.isLive(lease, now);
            if (live) return active.kind === kind && active.requested === requested ? { attach: active.id } : { wait: active.id };
            this.leases.tryTake(subject, active.id, now, this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS);
            return { resume: active };
          }
          const jobId = randomUUID();
          const jobInput = input(jobId);
          if (!this.leases.tryTake(subject, jobId, now, this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS)) return { wait: lease?.job_id ?? '' };
          this.jobs.createJob({ id: jobId, kind, subject, requested, target: requested.split(' ')[0] ?? requested, input: jobInput, startedAt: now });
          return { run: jobId, input: jobInput };
        })
        .immediate();

      if ('unpause' in decision) return this.resumeJob(decision.unpause, onProgress, signal);
      if ('resume' in decision) {
        await this.restore(decision.resume);
        continue;
      }
      if ('wait' in decision) {
        if (decision.wait !== '') await this.waitForJob(decision.wait);
        else await new Promise((r) => setTimeout(r, POLL_MS));
        continue;
      }
      if ('attach' in decision) {
        const row = await this.waitForJob(decision.attach, onProgress, signal);
        return this.resultOf(row, true);
      }
      const sub = onProgress !== undefined ? this.progress$.subscribe((p) => p.jobId === decision.run && onProgress(p)) : undefined;
      const onAbort = (): void => {
        const row = this.jobs.job(decision.run);
        if (row !== undefined && CANCELLABLE_STATES.has(row.state)) this.running.get(decision.run)?.send({ type: 'CANCEL' });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const done = this.run({ id: decision.run, kind, subject, target: requested }, { input: decision.input });
        if (signal?.aborted === true) onAbort();
        await done;
      } finally {
        signal?.removeEventListener('abort', onAbort);
        sub?.unsubscribe();
      }
      return this.resultOf(await this.untilEnded(decision.run, onProgress, signal), false);
    }
  }

  /** A job paused while this call ran it goes on waiting: the call answers when the job ends. */
  private async untilEnded(jobId: string, onProgress?: (p: ProgressEvent) => void, signal?: AbortSignal): Promise<JobRow> {
    const row = this.jobs.job(jobId)!;
    return row.active === 0 ? row : this.waitForJob(jobId, onProgress, signal);
  }

  /** Runs a paused job again in this process, from where it stopped (or to its cancellation), to its end. */
  private async resumeJob(jobId: string, onProgress?: (p: ProgressEvent) => void, signal?: AbortSignal, userEvent: 'RESUME' | 'CANCEL' = 'RESUME'): Promise<JobResult> {
    const row = this.jobs.job(jobId);
    if (row === undefined) throw new ModelhubError('NOT_FOUND', `no job ${jobId}`);
    if (row.active === 0) return this.resultOf(row, true);
    const took = this.db
      .transaction(() => {
        const fresh = this.jobs.job(jobId);
        if (fresh === undefined || fresh.state !== PAUSED) return false;
        const lease = this.leases.get(fresh.subject);
        if (lease !== undefined && lease.owner !== this.owner && this.leases.isLive(lease, this.ctx.now())) return false;
        return this.leases.tryTake(fresh.subject, jobId, this.ctx.now(), this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS);
      })
      .immediate();
    // Someone else resumed it first (or it is not paused any more): follow it to its end.
    if (!took) return this.resultOf(await this.waitForJob(jobId, onProgress, signal), true);
    const sub = onProgress !== undefined ? this.progress$.subscribe((p) => p.jobId === jobId && onProgress(p)) : undefined;
    try {
      await this.run(row, { snapshot: JSON.parse(row.snapshot) as Snapshot<unknown>, restores: row.restores, userEvent });
    } finally {
      sub?.unsubscribe();
    }
    return this.resultOf(await this.untilEnded(jobId, onProgress, signal), false);
  }

  private resultOf(row: JobRow, attached: boolean): JobResult {
    const output = row.output === null ? null : (JSON.parse(row.output) as { error?: ErrorInfo | null });
    return {
      ok: row.state === FINAL_OK,
      jobId: row.id,
      kind: row.kind,
      target: row.target,
      state: row.state,
      attached,
      output,
      error: output?.error ?? null,
    };
  }

  async install(o: InstallOptions, onProgress?: (p: ProgressEvent) => void): Promise<InstallResult> {
    await this.recover();
    const request = {
      id: o.id,
      version: o.version ?? null,
      platform: o.platform ?? this.platform,
      allowDowngrade: o.allowDowngrade ?? false,
      start: o.start ?? true,
    };
    const requested = `${o.id}@${o.version ?? 'latest'}${request.start ? '' : ' --no-start'}${request.allowDowngrade ? ' --allow-downgrade' : ''} ${request.platform}`;
    const r = await this.runOrAttach('install', o.id, requested, (jobId): InstallInput => ({ jobId, request }), onProgress, o.signal);
    return this.installResult(r, o.id, request.version);
  }

  private installResult(r: JobResult, id: string, version: string | null): InstallResult {
    const out = r.output as InstallOutput | null;
    return { ...r, id, version: out?.version ?? version, current: out?.current ?? this.registry.installedState(id).current, rolled_back: out?.rolled_back ?? false };
  }

  private pullResult(r: JobResult, id: string, requested: string | null): PullResult {
    const out = r.output as { version?: string | null; path?: string | null } | null;
    const version = out?.version ?? requested;
    const path = out?.path ?? (r.ok && version !== null ? this.home.modelDir(id, version) : null);
    return { ...r, id, version, path };
  }

  async uninstall(o: { id: string; version?: string | null }): Promise<JobResult & { removed: string[]; current: string | null }> {
    await this.recover();
    const state = this.registry.installedState(o.id);
    const model = this.registry.models().find((m) => m.id === o.id);
    if (state.current === null && state.versions.length === 0 && model !== undefined) {
      // Not a service but a model: its versions go, and the blobs no other version uses.
      if (o.version !== undefined && o.version !== null && !model.versions.includes(o.version)) {
        throw new ModelhubError('VERSION_NOT_FOUND', `model ${o.id} ${o.version} is not installed`, { details: { versions: model.versions } });
      }
      const request = { id: o.id, version: o.version ?? null, kind: 'model' as const };
      const r = await this.runOrAttach('uninstall', o.id, `${o.id}@${o.version ?? '*'} uninstall`, (jobId): UninstallInput => ({ jobId, request }), undefined, undefined, 'model');
      const out = r.output as { removed?: string[] } | null;
      return { ...r, removed: out?.removed ?? [], current: null };
    }
    if (state.current === null && state.versions.length === 0) throw new ModelhubError('NOT_FOUND', `${o.id} is not installed`);
    if (o.version !== undefined && o.version !== null && !state.versions.includes(o.version)) {
      throw new ModelhubError('VERSION_NOT_FOUND', `${o.id} ${o.version} is not installed`, { details: { versions: state.versions } });
    }
    const request = { id: o.id, version: o.version ?? null };
    const r = await this.runOrAttach('uninstall', o.id, `${o.id}@${o.version ?? '*'} uninstall`, (jobId): UninstallInput => ({ jobId, request }));
    const out = r.output as { removed?: string[]; current?: string | null } | null;
    return { ...r, removed: out?.removed ?? [], current: out?.current ?? null };
  }

  async pullModel(o: PullOptions, onProgress?: (p: ProgressEvent) => void): Promise<PullResult> {
    await this.recover();
    const request = { id: o.id, version: o.version ?? null };
    const r = await this.runOrAttach('model_pull', o.id, `${o.id}@${o.version ?? 'latest'}`, (jobId): ModelPullInput => ({ jobId, request }), onProgress, o.signal);
    return this.pullResult(r, o.id, request.version);
  }

  /** Finishes or rolls back every interrupted job whose holder is gone (restart table). */
  async recover(): Promise<RecoverReport> {
    // The records first: every other job reads the registry a rebuild restores.
    await this.restoreRecords();
    const report: RecoverReport = { recovered: [], busy: [], paused: [], swept: [], pointers: [] };
    for (const row of this.jobs.activeJobs()) {
      const r = await this.recoverJob(row);
      if (r === 'busy') report.busy.push(row.id);
      else if (r === 'paused') report.paused.push(row.id);
      else if (r !== 'skipped') report.recovered.push(r);
    }
    report.pointers = await repairPointers({ registry: this.registry, home: this.home, adapter: this.ctx.adapter, busy: (id) => this.jobs.activeJobFor(`service:${id}`) !== undefined, warn: (m) => this.ctx.warn(m) });
    report.swept = (await this.gc()).map((e) => path.relative(this.home.root, e.path));
    return report;
  }

  /** Takes an interrupted job over (when its holder is gone) and runs it to its end by the restart table. */
  private async recoverJob(row: JobRow): Promise<RecoverReport['recovered'][number] | 'busy' | 'paused' | 'skipped'> {
    if (this.running.has(row.id)) return 'busy';
    // Restart rule `hold`: a paused job waits for its user, across crashes and restarts.
    if (row.state === PAUSED) return 'paused';
    const now = this.ctx.now();
    const took = this.db
      .transaction(() => {
        const lease = this.leases.get(row.subject);
        if (lease !== undefined && lease.owner !== this.owner && this.leases.isLive(lease, now)) return false;
        return this.leases.tryTake(row.subject, row.id, now, this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS);
      })
      .immediate();
    if (!took) return 'busy';
    const fresh = this.jobs.job(row.id);
    if (fresh === undefined || fresh.active === 0 || fresh.state === PAUSED) {
      this.leases.release(row.subject);
      return 'skipped';
    }
    const r = await this.restore(fresh);
    return { jobId: row.id, kind: row.kind, target: fresh.target, from: fresh.state, state: r.state };
  }

  /**
   * Finishes the rebuild of the records when engine.db was lost (SPEC §13): runs the rebuild job
   * (or the rest of an interrupted one), or waits for the process that runs it. Answers what
   * `modelhub jobs` says about it; null when the records were never rebuilt. recover() and so
   * every job call do this first.
   */
  async restoreRecords(): Promise<RecordsNotice | null> {
    for (const row of this.jobs.activeJobs().filter((j) => j.kind === 'rebuild')) {
      const mine = this.running.get(row.id);
      if (mine !== undefined) await mine.done.catch(() => undefined);
      else if ((await this.recoverJob(row)) === 'busy') await this.waitForJob(row.id);
    }
    return recordsNotice(this.jobs);
  }

  /**
   * Removes what no job owns: downloads, model partials, staging folders and pointer temp files
   * of jobs that ended or were abandoned. A running or paused job's files are kept.
   */
  async gc(): Promise<SweptEntry[]> {
    const now = this.ctx.now();
    const swept = await sweepUnowned(this.home, this.jobs.activeJobs(), now);
    // Model blobs nothing uses any more: left by a crash between an uninstall's removal and its
    // freeing, or copies whose last version went (src/store/blobs.ts).
    const freed = await new BlobStore(this.home.blobs).free({ referenced: modelBlobRefs(this.registry), now, graceMs: SWEEP_GRACE_MS });
    return [...swept, ...freed];
  }

  /** start/stop of a service must not race an install or uninstall that is switching it. */
  assertNoJob(id: string): void {
    const job = this.jobs.activeJobFor(`service:${id}`);
    const lease = job === undefined ? undefined : this.leases.get(job.subject);
    if (job !== undefined && lease !== undefined && lease.job_id === job.id && this.leases.isLive(lease, this.ctx.now())) {
      throw new ModelhubError('INVALID_REQUEST', `${id}: a ${job.kind} job (${job.target}, ${job.state}) is running; try again when it ends`, { retryable: true, details: { job_id: job.id } });
    }
  }

  /**
   * Stops the jobs this engine runs where they are, as a crash would: no step is cancelled or
   * undone, the state stays persisted, and the next recover() resumes each one by the restart
   * table (an app that quits mid-download continues it on its next start).
   */
  async shutdown(): Promise<void> {
    const runs = [...this.running.values()];
    for (const run of runs) run.stop('the engine shut down; the job resumes on the next recover');
    await Promise.allSettled(runs.map((r) => r.done));
  }

  /**
   * Pauses a job while it resolves or downloads: no more bytes flow, its lease is released and
   * its partial files stay. A job another process runs gets the request through engine.db.
   * A paused job stays paused across crashes and restarts until resume() or cancel().
   */
  async pause(jobId: string): Promise<{ jobId: string; state: string }> {
    const row = this.jobs.job(jobId);
    if (row === undefined) throw new ModelhubError('NOT_FOUND', `no job ${jobId}`);
    if (row.active === 0) throw new ModelhubError('INVALID_REQUEST', `job ${jobId} already ended: ${row.state}`, { details: { state: row.state } });
    if (row.state === PAUSED) return { jobId, state: PAUSED };
    if (!PAUSABLE_STATES.has(row.state)) throw this.notPausable(jobId, row.state);
    const mine = this.running.get(jobId);
    if (mine !== undefined) mine.send({ type: 'PAUSE' });
    else this.controls.request(jobId, 'pause', this.ctx.now());
    // The holder acts within a poll; a job nobody holds is taken over here and pauses as it starts.
    const after = await this.waitForJob(jobId, undefined, undefined, (r) => r.state === PAUSED || !PAUSABLE_STATES.has(r.state));
    if (after.state !== PAUSED) throw this.notPausable(jobId, after.state);
    return { jobId, state: PAUSED };
  }

  private notPausable(jobId: string, state: string): ModelhubError {
    return new ModelhubError('INVALID_REQUEST', `job ${jobId} is ${state}: only a job that is resolving or downloading can be paused`, { details: { state } });
  }

  /** Resumes a paused job in this process, from its partial files, to its end. */
  async resume(jobId: string, onProgress?: (p: ProgressEvent) => void, signal?: AbortSignal): Promise<ResumeResult> {
    const row = this.jobs.job(jobId);
    if (row === undefined) throw new ModelhubError('NOT_FOUND', `no job ${jobId}`);
    if (row.active === 1 && row.state !== PAUSED) throw new ModelhubError('INVALID_REQUEST', `job ${jobId} is not paused: ${row.state}`, { details: { state: row.state } });
    const r = await this.resumeJob(jobId, onProgress, signal);
    const input = JSON.parse(row.input) as { request: { id: string; version: string | null } };
    if (r.kind === 'install') return { ...this.installResult(r, input.request.id, input.request.version), kind: 'install' };
    if (r.kind === 'model_pull') return { ...this.pullResult(r, input.request.id, input.request.version), kind: 'model_pull' };
    return r;
  }

  // ---- controls ----------------------------------------------------------------------------

  /**
   * Cancels a job before its switch: the job stops, its partial download and staging are
   * removed and `current` stays as it was. A job another process runs gets the request through
   * engine.db and acts on it within a second; an interrupted job is cancelled here. After the
   * switch only rollback applies: CANCEL_TOO_LATE.
   */
  async cancel(jobId: string): Promise<{ jobId: string; state: string }> {
    const row = this.jobs.job(jobId);
    if (row === undefined) throw new ModelhubError('NOT_FOUND', `no job ${jobId}`);
    if (row.active === 0) {
      if (row.state === 'cancelled') return { jobId, state: row.state };
      if (row.state === 'committed' || row.state === 'rolled_back') throw this.tooLate(jobId, row.state);
      throw new ModelhubError('INVALID_REQUEST', `job ${jobId} already ended: ${row.state}`, { details: { state: row.state } });
    }
    if (!CANCELLABLE_STATES.has(row.state)) throw this.tooLate(jobId, row.state);
    const mine = this.running.get(jobId);
    let ended: JobRow;
    if (mine !== undefined) {
      mine.send({ type: 'CANCEL' });
      await mine.done.catch(() => undefined);
      ended = this.jobs.job(jobId)!;
    } else if (row.state === PAUSED) {
      // Nobody runs a paused job: run its cancellation here (clean-up of its partial files).
      await this.resumeJob(jobId, undefined, undefined, 'CANCEL');
      ended = this.jobs.job(jobId)!;
    } else {
      this.controls.request(jobId, 'cancel', this.ctx.now());
      // Whoever holds the job acts on the request; a job nobody holds is resumed here (the
      // restart table) and takes the request as it starts.
      ended = await this.waitForJob(jobId);
    }
    if (ended.state !== 'cancelled') throw this.tooLate(jobId, ended.state);
    return { jobId, state: ended.state };
  }

  private tooLate(jobId: string, state: string): ModelhubError {
    return new ModelhubError('CANCEL_TOO_LATE', `job ${jobId} is past the switch (${state}); only rollback applies now`, { details: { state } });
  }

  // ---- records: verify and repair (SPEC §13) --------------------------------------------------

  /**
   * Re-hashes the installed files of every version (or of `id`, or `id@version`) against the
   * signed manifest each version keeps: modified and missing files are damage, extra files are
   * reported only. Reads nothing from the hub. NOT_FOUND when the target names nothing installed.
   */
  async verify(target: VerifyTarget = {}, signal?: AbortSignal): Promise<VerifyReportValue> {
    await this.restoreRecords();
    return verifyInstalled({ db: this.db, home: this.home, registry: this.registry, keys: await this.trust.keys(), now: () => this.ctx.now() }, target, signal);
  }

  /**
   * verify(), then one repair job per version found damaged (or without its proof): only the
   * damaged files are fetched again, through the verified path, and replaced in place; the
   * version in `current` is never switched (a broken pointer is rewritten). Answers the check
   * made after the repairs, and each repair.
   */
  async repair(target: VerifyTarget = {}, onProgress?: (p: ProgressEvent) => void, signal?: AbortSignal): Promise<RepairReportValue> {
    await this.recover();
    const before = await this.verify(target, signal);
    const repairs: RepairJobValue[] = [];
    const todo = [
      ...before.services.filter((v) => !v.ok || v.proof !== 'signed').map((v) => ({ subject: 'service' as const, ...v })),
      ...before.models.filter((v) => !v.ok || v.proof !== 'signed').map((v) => ({ subject: 'model' as const, ...v })),
    ];
    for (const v of todo) {
      const requested = `${v.id}@${v.version} repair ${v.subject}`;
      const r = await this.runOrAttach('repair', v.id, requested, (jobId): RepairInput => ({ jobId, subject: v.subject, id: v.id, version: v.version }), onProgress, signal, v.subject);
      const out = r.output as RepairOutput | null;
      repairs.push({
        ok: r.ok,
        jobId: r.jobId,
        kind: r.kind,
        target: r.target,
        state: r.state,
        attached: r.attached,
        error: r.error,
        id: v.id,
        version: v.version,
        subject: v.subject,
        repaired: out?.repaired ?? [],
        bytesFetched: out?.bytesFetched ?? 0,
        method: out?.method ?? null,
      });
    }
    const after = todo.length === 0 ? before : await this.verify(target, signal);
    return { ...after, repairs };
  }

  // ---- running services ----------------------------------------------------------------------

  /** Starts an installed service's current version and waits until it is healthy. */
  async start(id: string): Promise<StartResultValue> {
    this.assertNoJob(id);
    const state = this.registry.installedState(id);
    if (state.current === null) throw new ModelhubError('NOT_FOUND', `${id} is not installed`);
    const running = this.runtime.running(id);
    if (running !== undefined) return { id, version: running.version, pid: running.pid, port: running.port, alreadyRunning: true };
    const s = await this.runtime.start(id, state.current);
    const hc = s.service.health_check;
    try {
      await waitHealthy({ port: s.port, health: hc, pid: s.pid, deadline: Date.now() + healthBudgetMs(hc) });
    } catch (err) {
      await this.runtime.stop(id);
      throw err;
    }
    return { id, version: state.current, pid: s.pid, port: s.port, alreadyRunning: false };
  }

  async stop(id: string): Promise<{ id: string; stopped: boolean }> {
    this.assertNoJob(id);
    if (this.registry.installedState(id).versions.length === 0 && this.runtime.row(id) === undefined) throw new ModelhubError('NOT_FOUND', `${id} is not installed`);
    return { id, stopped: await this.runtime.stop(id) };
  }

  /** Installed services with their process and health. */
  status(id?: string): Promise<ServiceStatusValue[]> {
    return serviceStatuses({ registry: this.registry, home: this.home }, id);
  }

  /** Per installed service and model: what is installed, what the hub offers, whether to update. */
  async checkForUpdates(signal: AbortSignal = AbortSignal.timeout(30_000)): Promise<UpdateInfo> {
    const hub = this.ctx.requireHub();
    const installed = this.registry.services().filter((s) => s.current !== null || s.versions.length > 0);
    const models = this.registry.models();
    let latestOf: (id: string) => string | null;
    let defaultOf: (id: string) => Promise<string | null>;
    // What is latest comes from the signed snapshot when the hub has certified metadata (it
    // then also applies key rotations and revocations); only an uncertified hub is asked plainly.
    const meta = installed.length + models.length === 0 ? null : await this.metadata.load(hub, signal);
    if (meta?.snapshot) {
      const snapshot = meta.snapshot;
      latestOf = (id) => {
        const entry = snapshot.services[id]?.[this.platform];
        return entry === undefined ? null : latestForNode(entry.versions, this.nodeId, id);
      };
      defaultOf = async (id) => snapshot.models[id]?.default_version ?? null;
    } else {
      const listed = installed.length === 0 ? [] : await hub.services(this.platform, signal);
      const latest = new Map(listed.map((s) => [s.service_id, s.latest_version]));
      latestOf = (id) => latest.get(id) ?? null;
      defaultOf = async (id) => {
        try {
          return (await hub.model(id, signal)).default_version;
        } catch (err) {
          if (err instanceof ModelhubError && err.code === 'NOT_FOUND') return null;
          throw err;
        }
      };
    }
    const modelLatest = await Promise.all(models.map((m) => defaultOf(m.id)));
    const newer = (candidate: string | null, mine: string | null): boolean => candidate !== null && (mine === null || (latestVersion([candidate, mine]) === candidate && candidate !== mine));
    return {
      services: installed.map((s) => {
        const latest = latestOf(s.id);
        return { id: s.id, current: s.current, latest, updateAvailable: newer(latest, s.current) };
      }),
      models: models.map((m, i) => {
        const latest = modelLatest[i] ?? null;
        return { id: m.id, installed: m.versions, latest, updateAvailable: newer(latest, latestVersion(m.versions)) };
      }),
    };
  }

  /** Installed services (current version, versions, running) and models, as `modelhub list` shows them. */
  list(): { services: { id: string; current: string | null; versions: string[]; running: boolean }[]; models: { id: string; versions: string[] }[] } {
    return {
      services: this.registry.services().map((s) => ({ id: s.id, current: s.current, versions: s.versions, running: s.running })),
      models: this.registry.models(),
    };
  }

  /** One job's event log, as `modelhub events --export` writes it. */
  jobEvents(jobId: string): JobEventLine[] {
    const job = this.jobs.job(jobId);
    if (job === undefined) throw new ModelhubError('NOT_FOUND', `no job ${jobId}`);
    return this.jobs.events(jobId).map((e) => toExportLine(e, job.kind));
  }

  // ---- models: path, node id, scheduler ------------------------------------------------------

  private nodeIdValue: string | undefined;
  /** undefined: not set up yet; null: no scheduler (or a bad URL, warned about once). */
  private reporter: BackgroundReporter | null | undefined;

  /** This node's stable id, created in the home on first use (SPEC §10). */
  get nodeId(): string {
    this.nodeIdValue ??= ensureNodeId(this.home.root);
    return this.nodeIdValue;
  }

  /**
   * The installed model's directory, answered at once from the registry — or MODEL_NOT_AVAILABLE
   * with its reason (not_installed, downloading, verifying, error), thrown synchronously. That
   * answer is also reported to the scheduler in the background; a scheduler that is down, slow
   * or misconfigured changes neither the answer nor its speed.
   */
  getModelPath(id: string, version?: string | null): string {
    const request = parseModelRequest(id, version);
    try {
      return modelPath(this, request.id, request.version);
    } catch (err) {
      if (err instanceof ModelNotAvailableError) this.reportUnavailable(err);
      throw err;
    }
  }

  private reportUnavailable(err: ModelNotAvailableError): void {
    const warn = this.options.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
    if (this.reporter === undefined) {
      this.reporter = null;
      try {
        const target = schedulerTargetOf(this.options.scheduler ?? process.env.MODELHUB_SCHEDULER, this.options.schedulerToken ?? process.env.MODELHUB_NODE_TOKEN);
        if (target !== null) this.reporter = new BackgroundReporter(target, warn);
      } catch (e) {
        // A bad scheduler URL: said once (the reporter stays null); the answer stays the same.
        warn(`scheduler: ${(e as Error).message}; MODEL_NOT_AVAILABLE answers are not reported`);
      }
    }
    if (this.reporter === null) return;
    let nodeId: string | null = null;
    try {
      nodeId = this.nodeId;
    } catch (e) {
      warn(`node id: ${(e as Error).message}`);
    }
    this.reporter.send(reportOf(err, nodeId, this.ctx.now()));
  }

  /** Resolves once every scheduler report sent so far was delivered or given up (at most 5 s each). */
  async schedulerReportsSettled(): Promise<void> {
    await this.reporter?.settled();
  }
}
