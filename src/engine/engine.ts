// The engine as a library (what an Electron main process embeds; the CLI is a thin shell on
// it). One job per subject across threads and processes: the first caller runs the job, the
// others attach to it and get its result.
import { randomUUID } from 'node:crypto';
import type { AnyStateMachine, Snapshot } from 'xstate';
import { installMachine, type InstallContext, type InstallInput, type InstallOutput } from '../../machines/install.js';
import { uninstallMachine, type UninstallContext, type UninstallInput } from '../../machines/uninstall.js';
import type { ErrorInfo } from '../../machines/errors.js';
import { defaultFetch, type FetchLike } from '../download/fetch-like.js';
import { ModelhubError } from '../errors.js';
import { platformAdapter, type PlatformAdapter } from '../platform/adapter.js';
import { platformNameOf } from '../platform/name.js';
import type { Platform } from '../schemas/common.js';
import { TrustStore } from '../trust/store.js';
import { openDb, type Db } from './db.js';
import type { EngineContext } from './effects/context.js';
import { installEffects } from './effects/install.js';
import { uninstallEffects } from './effects/uninstall.js';
import { modelPullEffects } from './effects/model-pull.js';
import { modelPullMachine, type ModelPullContext, type ModelPullInput } from '../../machines/model-pull.js';
import { sweepServiceDir } from './fs-util.js';
import { Home } from './home.js';
import { HubClient } from './hub-client.js';
import { JobsStore, type JobKind, type JobRow } from './jobs-store.js';
import { DEFAULT_LEASE_TTL_MS, Leases } from './leases.js';
import { ProgressHub, type ProgressEvent } from './progress.js';
import { Registry } from './registry.js';
import { JobRun, type JobHandle } from './runner.js';
import { RuntimeRegistry } from './runtime-registry.js';
import { verifyServiceRelease } from './verify-release.js';
import { readdir } from 'node:fs/promises';

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
  leaseTtlMs?: number;
  heartbeatMs?: number;
  warn?: (message: string) => void;
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
}

export interface RecoverReport {
  recovered: { jobId: string; kind: JobKind; target: string; from: string; state: string }[];
  busy: string[];
  swept: string[];
}

const POLL_MS = 100;
const FINAL_OK = 'committed';

function subjectOf(kind: JobKind, id: string): string {
  return kind === 'model_pull' ? `model:${id}` : `service:${id}`;
}

export class Engine {
  readonly home: Home;
  readonly db: Db;
  readonly jobs: JobsStore;
  readonly registry: Registry;
  readonly runtime: RuntimeRegistry;
  readonly trust: TrustStore;
  readonly platform: Platform;
  private readonly progressHub = new ProgressHub();
  private readonly leases: Leases;
  private readonly ctx: EngineContext;
  private readonly owner = randomUUID();
  private readonly running = new Set<JobRun>();
  /** Jobs this engine is running now: never "recovered" by this engine as if interrupted. */
  private readonly runningIds = new Set<string>();

  constructor(private readonly options: EngineOptions) {
    this.home = new Home(options.home);
    this.db = openDb(this.home.db);
    this.jobs = new JobsStore(this.db);
    this.registry = new Registry(this.db);
    this.leases = new Leases(this.db, this.owner);
    const adapter = options.adapter ?? platformAdapter;
    const platform = options.platform ?? platformNameOf(process.platform, process.arch);
    if (platform === null) throw new ModelhubError('PLATFORM_NOT_SUPPORTED', `no release platform for ${process.platform}-${process.arch}`);
    this.platform = platform;
    this.runtime = new RuntimeRegistry(this.db, this.home, adapter, platform);
    this.trust = new TrustStore(this.home.trust);
    const fetch = options.fetch ?? defaultFetch();
    const hub = options.hub !== undefined && options.hub !== '' ? new HubClient(options.hub, fetch) : null;
    this.ctx = {
      home: this.home,
      db: this.db,
      jobs: this.jobs,
      registry: this.registry,
      runtime: this.runtime,
      adapter,
      progress: this.progressHub,
      trust: this.trust,
      fetch,
      stallTimeoutMs: options.stallTimeoutMs,
      prestage: options.prestage ?? process.env.MODELHUB_PRESTAGE !== '0',
      now: options.now ?? Date.now,
      requireHub: () => {
        if (hub === null) throw new ModelhubError('INVALID_REQUEST', 'no hub: pass --hub URL or set MODELHUB_HUB');
        return hub;
      },
      verifyRelease: verifyServiceRelease,
      warn: options.warn ?? ((m) => process.stderr.write(`warning: ${m}\n`)),
    };
  }

  /** Live progress of every job this engine runs or attaches to (throttled, monotonic). */
  get progress$() {
    return this.progressHub.progress$;
  }

  get hooks() {
    return this.progressHub.hooks;
  }

  close(): void {
    this.db.close();
  }

  // ---- jobs ------------------------------------------------------------------------------

  private machineFor(kind: JobKind, handle: JobHandle & { jobId: string; target: () => string }): AnyStateMachine {
    if (kind === 'install') return installMachine.provide({ actors: installEffects(this.ctx, handle) });
    if (kind === 'uninstall') return uninstallMachine.provide({ actors: uninstallEffects(this.ctx) });
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
    const m = context as ModelPullContext;
    return `${m.request.id}@${m.resolved?.version ?? m.request.version ?? 'latest'}`;
  }

  private run(row: { id: string; kind: JobKind; subject: string; target: string }, start: { input: unknown } | { snapshot: Snapshot<unknown>; restores: number }): Promise<{ state: string; output: unknown }> {
    let target = row.target;
    let previous: string | null = null;
    // The effects get a handle to the run before it exists; they only use it once it runs.
    const handle = {
      jobId: row.id,
      target: () => target,
      send: (e: { type: string; [k: string]: unknown }) => run.send(e),
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
    this.running.add(run);
    this.runningIds.add(row.id);
    run.start();
    return run.done.finally(() => {
      this.running.delete(run);
      this.runningIds.delete(row.id);
      this.progressHub.forget(row.id);
    });
  }

  /** Resumes, redoes or rolls back one interrupted job (restart table), to its end. */
  private async resume(row: JobRow): Promise<{ state: string; output: unknown }> {
    if (row.snapshot === '') {
      // Created but interrupted before its first event: start it from its input.
      return this.run(row, { input: JSON.parse(row.input) as unknown });
    }
    const restores = this.jobs.bumpRestores(row.id);
    return this.run(row, { snapshot: JSON.parse(row.snapshot) as Snapshot<unknown>, restores });
  }

  private async waitForJob(jobId: string, onProgress?: (p: ProgressEvent) => void): Promise<JobRow> {
    let lastProgress = '';
    let lastState = '';
    for (;;) {
      const row = this.jobs.job(jobId);
      if (row === undefined) throw new ModelhubError('INTERNAL', `job ${jobId} vanished`);
      if (row.active === 0) return row;
      if (onProgress !== undefined) {
        if (row.progress !== null && row.progress !== lastProgress && row.state === 'downloading') {
          lastProgress = row.progress;
          try {
            onProgress(JSON.parse(row.progress) as ProgressEvent);
          } catch {
            // a partially written progress row is skipped
          }
        }
        if (row.state !== lastState) {
          lastState = row.state;
          onProgress({ jobId, kind: row.kind, target: row.target, phase: row.state, bytesDone: 0, bytesTotal: 0, speedBps: 0, etaSeconds: null, ts: this.ctx.now() });
        }
      }
      // A holder that died while we waited: take the job over.
      const lease = this.leases.get(row.subject);
      if (lease === undefined || (lease.job_id === jobId && !this.leases.isLive(lease, this.ctx.now()))) {
        const took = this.db.transaction(() => this.leases.tryTake(row.subject, jobId, this.ctx.now(), this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS)).immediate();
        if (took) {
          const fresh = this.jobs.job(jobId);
          if (fresh !== undefined && fresh.active === 1) await this.resume(fresh);
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
  private async runOrAttach(kind: JobKind, id: string, requested: string, input: (jobId: string) => unknown, onProgress?: (p: ProgressEvent) => void): Promise<JobResult> {
    const subject = subjectOf(kind, id);
    for (;;) {
      const now = this.ctx.now();
      const decision = this.db
        .transaction((): { run: string; input: unknown } | { attach: string } | { wait: string } | { resume: JobRow } => {
          const active = this.jobs.activeJobFor(subject);
          const lease = this.leases.get(subject);
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

      if ('resume' in decision) {
        await this.resume(decision.resume);
        continue;
      }
      if ('wait' in decision) {
        if (decision.wait !== '') await this.waitForJob(decision.wait);
        else await new Promise((r) => setTimeout(r, POLL_MS));
        continue;
      }
      if ('attach' in decision) {
        const row = await this.waitForJob(decision.attach, onProgress);
        return this.resultOf(row, true);
      }
      const sub = onProgress !== undefined ? this.progress$.subscribe((p) => p.jobId === decision.run && onProgress(p)) : undefined;
      try {
        await this.run({ id: decision.run, kind, subject, target: requested }, { input: decision.input });
      } finally {
        sub?.unsubscribe();
      }
      return this.resultOf(this.jobs.job(decision.run)!, false);
    }
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
    const r = await this.runOrAttach('install', o.id, requested, (jobId): InstallInput => ({ jobId, request }), onProgress);
    const out = r.output as InstallOutput | null;
    return { ...r, id: o.id, version: out?.version ?? request.version, current: out?.current ?? this.registry.installedState(o.id).current, rolled_back: out?.rolled_back ?? false };
  }

  async uninstall(o: { id: string; version?: string | null }): Promise<JobResult & { removed: string[]; current: string | null }> {
    await this.recover();
    const state = this.registry.installedState(o.id);
    if (state.current === null && state.versions.length === 0) throw new ModelhubError('NOT_FOUND', `${o.id} is not installed`);
    if (o.version !== undefined && o.version !== null && !state.versions.includes(o.version)) {
      throw new ModelhubError('VERSION_NOT_FOUND', `${o.id} ${o.version} is not installed`, { details: { versions: state.versions } });
    }
    const request = { id: o.id, version: o.version ?? null };
    const r = await this.runOrAttach('uninstall', o.id, `${o.id}@${o.version ?? '*'} uninstall`, (jobId): UninstallInput => ({ jobId, request }));
    const out = r.output as { removed?: string[]; current?: string | null } | null;
    return { ...r, removed: out?.removed ?? [], current: out?.current ?? null };
  }

  async pullModel(o: { id: string; version?: string | null }, onProgress?: (p: ProgressEvent) => void): Promise<JobResult & { id: string; version: string | null; path: string | null }> {
    await this.recover();
    const request = { id: o.id, version: o.version ?? null };
    const r = await this.runOrAttach('model_pull', o.id, `${o.id}@${o.version ?? 'latest'}`, (jobId): ModelPullInput => ({ jobId, request }), onProgress);
    const out = r.output as { version?: string | null; path?: string | null } | null;
    const version = out?.version ?? request.version;
    const path = out?.path ?? (r.ok && version !== null ? this.home.modelDir(o.id, version) : null);
    return { ...r, id: o.id, version, path };
  }

  /** Finishes or rolls back every interrupted job whose holder is gone (restart table). */
  async recover(): Promise<RecoverReport> {
    const report: RecoverReport = { recovered: [], busy: [], swept: [] };
    for (const row of this.jobs.activeJobs()) {
      if (this.runningIds.has(row.id)) {
        report.busy.push(row.id);
        continue;
      }
      const now = this.ctx.now();
      const took = this.db
        .transaction(() => {
          const lease = this.leases.get(row.subject);
          if (lease !== undefined && lease.owner !== this.owner && this.leases.isLive(lease, now)) return false;
          return this.leases.tryTake(row.subject, row.id, now, this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS);
        })
        .immediate();
      if (!took) {
        report.busy.push(row.id);
        continue;
      }
      const fresh = this.jobs.job(row.id);
      if (fresh === undefined || fresh.active === 0) {
        this.leases.release(row.subject);
        continue;
      }
      const r = await this.resume(fresh);
      report.recovered.push({ jobId: row.id, kind: row.kind, target: fresh.target, from: fresh.state, state: r.state });
    }
    const activeIds = new Set(this.jobs.activeJobs().map((j) => j.id));
    let ids: string[] = [];
    try {
      ids = await readdir(this.home.services);
    } catch {
      ids = [];
    }
    for (const id of ids) {
      for (const name of await sweepServiceDir(this.home.serviceDir(id), activeIds)) report.swept.push(`${id}/${name}`);
    }
    return report;
  }

  /** start/stop of a service must not race an install or uninstall that is switching it. */
  assertNoJob(id: string): void {
    const job = this.jobs.activeJobFor(`service:${id}`);
    const lease = job === undefined ? undefined : this.leases.get(job.subject);
    if (job !== undefined && lease !== undefined && lease.job_id === job.id && this.leases.isLive(lease, this.ctx.now())) {
      throw new ModelhubError('INVALID_REQUEST', `${id}: a ${job.kind} job (${job.target}, ${job.state}) is running; try again when it ends`, { retryable: true, details: { job_id: job.id } });
    }
  }

  /** Stops the jobs this engine runs (their state stays persisted for recovery). */
  async shutdown(): Promise<void> {
    for (const run of this.running) run.send({ type: 'CANCEL' });
    await Promise.allSettled([...this.running].map((r) => r.done));
  }
}
