// The renderer-side API of modelhub, as types only: what `window.modelhub` (Electron preload)
// and the local page's HTTP client both implement. Nothing here imports Node, Electron or any
// library, so it compiles to code a browser or a sandboxed preload can load.

/**
 * `rebuild`: the registry rebuilt from disk after engine.db was lost; `repair`: an installed
 * version's damaged files fetched again (SPEC §13).
 */
export type JobKind = 'install' | 'uninstall' | 'model_pull' | 'rebuild' | 'repair';

/**
 * One progress shape everywhere: the engine's `progress$`, the IPC bridge, the page's event
 * stream and the CLI's `{"type":"progress",…}` lines carry exactly these fields.
 */
export interface ProgressEvent {
  jobId: string;
  kind: JobKind;
  /** `ID@VERSION` once the version is known, else `ID@latest`. */
  target: string;
  /** The job machine's state: resolving, downloading, waiting_for_network, staging, … committed. */
  phase: string;
  bytesDone: number;
  bytesTotal: number;
  /** 0–100 with one decimal: bytesDone / bytesTotal, 100 once committed. */
  percent: number;
  speedBps: number;
  etaSeconds: number | null;
  /** ms since the epoch. */
  ts: number;
}

export interface JobStateEvent {
  jobId: string;
  kind: JobKind;
  target: string;
  state: string;
  previous: string | null;
}

/** An error as a value: codes are those of SPEC §6 (and §10, §11). */
export interface ModelhubErrorValue {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/** Every call resolves to one of these; nothing is thrown across IPC or HTTP. */
export type ModelhubResult<T> = { ok: true; value: T } | { ok: false; error: ModelhubErrorValue };

export interface InstallRequest {
  id: string;
  version?: string;
  /** Start and health-check the new version (default true). */
  start?: boolean;
  allowDowngrade?: boolean;
}

export interface TargetRequest {
  id: string;
  version?: string;
}

export interface ErrorInfoValue {
  code: string;
  message: string;
  retryable: boolean;
}

export interface JobResultValue {
  ok: boolean;
  jobId: string;
  kind: JobKind;
  target: string;
  /** committed, rolled_back, failed or cancelled. */
  state: string;
  /** true when this call joined a job another caller had started. */
  attached: boolean;
  error: ErrorInfoValue | null;
}

export interface InstallResultValue extends JobResultValue {
  id: string;
  version: string | null;
  current: string | null;
  rolled_back: boolean;
}

export interface UninstallResultValue extends JobResultValue {
  removed: string[];
  current: string | null;
}

export interface PullResultValue extends JobResultValue {
  id: string;
  version: string | null;
  path: string | null;
}

export interface JobControlValue {
  jobId: string;
  /** The job's state after the control took effect (or was recorded for another process). */
  state: string;
}

export interface UpdateInfo {
  services: { id: string; current: string | null; latest: string | null; updateAvailable: boolean }[];
  models: { id: string; installed: string[]; latest: string | null; updateAvailable: boolean }[];
}

export interface ServiceStatusValue {
  id: string;
  version: string | null;
  pid: number | null;
  port: number | null;
  running: boolean;
  healthy: boolean;
}

export interface StartResultValue {
  id: string;
  version: string;
  pid: number;
  port: number;
  alreadyRunning: boolean;
}

/** One installed version checked against its signed manifest (`modelhub verify`, SPEC §13). */
export interface VersionCheckValue {
  id: string;
  version: string;
  /** Nothing modified or missing, and the proof (when there is one) verifies. */
  ok: boolean;
  modified: string[];
  missing: string[];
  /** Files the manifest does not list (the service may have written them): reported only. */
  extra: string[];
  /**
   * What the files were checked against: `signed`, the proof kept in `<version>/.modelhub/`;
   * `registry`, the manifest recorded at install (a version from before proofs); `invalid`, a
   * proof whose signature or content does not verify (a damage too).
   */
  proof: 'signed' | 'registry' | 'invalid';
  /** Why the version could not be checked fully, if so. */
  problem: string | null;
}

export interface VerifyReportValue {
  services: VersionCheckValue[];
  models: VersionCheckValue[];
}

/** One repair job: the damaged files of one version fetched again. */
export interface RepairJobValue extends JobResultValue {
  id: string;
  version: string;
  subject: 'service' | 'model';
  repaired: string[];
  /** Body bytes received for the repair. */
  bytesFetched: number;
  /** `range`: single entries of the package; `package`: the whole package; `files`: a model's files. */
  method: 'range' | 'package' | 'files' | null;
}

/** The versions as checked after the repairs, and each repair. */
export interface RepairReportValue extends VerifyReportValue {
  repairs: RepairJobValue[];
}

/** A version the last check found damaged (modified or missing files). */
export interface DamagedVersionView {
  version: string;
  modified: number;
  missing: number;
  checked_at: string;
}

export interface JobView {
  id: string;
  kind: string;
  target: string;
  state: string;
  active: boolean;
  percent: number | null;
  bytes_done: number;
  bytes_total: number;
  started_at: string;
  ended_at: string | null;
}

export interface ServiceView {
  id: string;
  name: string;
  /** Versions on the hub for this platform, newest first. */
  versions: string[];
  latest: string | null;
  current: string | null;
  installed: string[];
  running: boolean;
  /** Installed versions the last `verify` found damaged. */
  damaged: DamagedVersionView[];
  /** The job running for this service now, if any. */
  job: JobView | null;
  /** The last finished job's error, if it failed. */
  error: { code: string; message: string } | null;
}

export interface ModelView {
  id: string;
  name: string;
  versions: string[];
  latest: string | null;
  installed: string[];
  /** Installed versions the last `verify` found damaged. */
  damaged: DamagedVersionView[];
  job: JobView | null;
  error: { code: string; message: string } | null;
}

/** What the service-management page shows; `state()` of the API. */
export interface EngineState {
  platform: string;
  hub: { url: string | null; reachable: boolean; error: string | null };
  services: ServiceView[];
  models: ModelView[];
  jobs: JobView[];
}

export interface RankingEntry {
  model_id: string;
  request_count: number;
  rank: number;
}

/** One event of a job's log, as `modelhub events --export` writes it. */
export interface JobEventLine {
  seq: number;
  job_id: string;
  ts: string | number;
  type: string;
  payload: { type: string; [k: string]: unknown };
  state: string;
  kind?: JobKind;
}

/** `window.modelhub` in an Electron renderer, and the local page's client. */
export interface ModelhubApi {
  install(request: InstallRequest): Promise<ModelhubResult<InstallResultValue>>;
  uninstall(request: TargetRequest): Promise<ModelhubResult<UninstallResultValue>>;
  pullModel(request: TargetRequest): Promise<ModelhubResult<PullResultValue>>;
  cancel(jobId: string): Promise<ModelhubResult<JobControlValue>>;
  pause(jobId: string): Promise<ModelhubResult<JobControlValue>>;
  /** Runs a paused job to its end; answers like the job's kind (install, pullModel). */
  resume(jobId: string): Promise<ModelhubResult<InstallResultValue | PullResultValue | JobResultValue>>;
  state(): Promise<ModelhubResult<EngineState>>;
  ranking(): Promise<ModelhubResult<RankingEntry[]>>;
  checkForUpdates(): Promise<ModelhubResult<UpdateInfo>>;
  start(id: string): Promise<ModelhubResult<StartResultValue>>;
  stop(id: string): Promise<ModelhubResult<{ id: string; stopped: boolean }>>;
  status(): Promise<ModelhubResult<ServiceStatusValue[]>>;
  jobEvents(jobId: string): Promise<ModelhubResult<JobEventLine[]>>;
  /** Re-hashes installed files against their signed manifests (all, one id, or one id@version). */
  verify(request?: { id?: string; version?: string }): Promise<ModelhubResult<VerifyReportValue>>;
  /** Fetches again only the damaged files of what verify finds damaged, as repair jobs. */
  repair(request?: { id?: string; version?: string }): Promise<ModelhubResult<RepairReportValue>>;
  onProgress(callback: (event: ProgressEvent) => void): () => void;
  onJobState(callback: (event: JobStateEvent) => void): () => void;
}

/** The methods that are calls (everything but the subscriptions). */
export type ModelhubMethod = Exclude<keyof ModelhubApi, 'onProgress' | 'onJobState'>;

export const MODELHUB_METHODS: readonly ModelhubMethod[] = [
  'install',
  'uninstall',
  'pullModel',
  'cancel',
  'pause',
  'resume',
  'state',
  'ranking',
  'checkForUpdates',
  'start',
  'stop',
  'status',
  'jobEvents',
  'verify',
  'repair',
];

/** 0–100 with one decimal. */
export function percentOf(bytesDone: number, bytesTotal: number, phase: string): number {
  if (phase === 'committed') return 100;
  if (bytesTotal <= 0) return 0;
  return Math.min(100, Math.floor((bytesDone / bytesTotal) * 1000) / 10);
}

/** What `modelhub jobs` says about a rebuild: the records were rebuilt, when, and why. */
export interface RecordsNotice {
  job_id: string;
  /** When the loss was found: no job before this time is known. */
  rebuilt_at: string;
  reason: 'missing' | 'corrupt';
  /** Where an unreadable engine.db was kept. */
  kept_as: string | null;
  state: string;
  /** Counts from the finished rebuild (null while it runs). */
  intact: number | null;
  quarantined: number | null;
  unproven: number | null;
}

/** Which installed versions verify() and repair() look at: all, one id, or one id@version. */
export interface VerifyTarget {
  id?: string | null;
  version?: string | null;
}
