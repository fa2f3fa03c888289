// The install/update job: resolve → verify manifest → download → verify archive → stage →
// switch → (stop old → start → health check) → commit, or clean up / roll back.
// Pure: every effect is a named actor supplied by src/ through .provide(); guards and assigns
// read only context and events. Time enters only inside events (see NOTES: XState persistence).
import { assign, setup } from 'xstate';
import { inert } from './inert.js';
import { errorInfoOf, type ErrorInfo } from './errors.js';
import { INSTALL_RESTART_TABLE, MAX_RESTORES, type RestartRule } from './restart-table.js';
import type { DownloadSource, SourceUse } from '../src/download/sources.js';
import type { DeltaFetchResult } from '../src/delta/service-delta.js';

export interface InstallRequest {
  id: string;
  /** null: the hub's latest version. */
  version: string | null;
  platform: string;
  allowDowngrade: boolean;
  /** false for --no-start: commit right after the switch. */
  start: boolean;
}

export interface InstallInput {
  jobId: string;
  request: InstallRequest;
}

export interface InstalledState {
  current: string | null;
  versions: string[];
  running: boolean;
}

export interface ResolvedRelease {
  version: string;
  manifestText: string;
  signatureText: string;
  archiveUrl: string;
  installed: InstalledState;
}

export interface VerifiedRelease {
  keyId: string;
  archive: { url: string; sha256: string; size: number };
  /** startup grace + health timeout of the new version's service.json. */
  healthBudgetMs: number;
}

export interface DownloadOutput {
  path: string;
  size: number;
  sha256: string;
  bytesFetched: number;
  resumedFrom: number;
  /** The files were staged while downloading (to be checked by the stage step). */
  prestaged?: boolean;
  /** Who completed the download: a mirror, the hub, or 'local' (SPEC §12). Absent in logs of older nodes. */
  source?: DownloadSource;
  /** Every source asked, with the bytes it sent and why it was left (a mirror that failed). */
  sources?: SourceUse[];
  /**
   * A delta update (src/delta): no package was downloaded; the release's files were gathered by
   * SHA-256 into `delta.dir`, the unchanged ones from installed versions and the others read
   * with Range requests out of the package. `path` is then the package's would-be path (its
   * `.delta` folder's base), `size` and `sha256` are 0 and ''.
   */
  delta?: DeltaSummary;
  /** Why a delta update was not possible (or not worth it) and the whole package was downloaded. */
  deltaFallback?: { reason: string; message: string };
}
/** What a delta update gathered and fetched (src/delta/service-delta.ts), and from which source. */
export type DeltaSummary = DeltaFetchResult & {
  /** The source the entries came from (a mirror's base URL or the hub's); null when nothing was fetched. */
  source: string | null;
};
export interface StageOutput {
  stagingDir: string;
  files: number;
  bytes: number;
}
export interface SwitchOutput {
  current: string;
  previous: string | null;
}
export interface StartOutput {
  pid: number;
  port: number;
  startedAt: number;
}
export interface HealthOutput {
  checks: number;
  elapsedMs: number;
}
export interface CommitOutput {
  removed: string[];
}
export interface RollbackOutput {
  current: string | null;
  restarted: boolean;
}

export interface InstallContext {
  jobId: string;
  request: InstallRequest;
  restores: number;
  release: ResolvedRelease | null;
  verified: VerifiedRelease | null;
  progress: { bytesDone: number; bytesTotal: number };
  download: DownloadOutput | null;
  staged: StageOutput | null;
  switched: SwitchOutput | null;
  started: StartOutput | null;
  /** The version `current` points to, as far as this job knows. */
  current: string | null;
  rolledBack: boolean;
  error: ErrorInfo | null;
  cancelled: boolean;
}

export type InstallEvent =
  | { type: 'DOWNLOAD_PROGRESS'; bytesDone: number; bytesTotal: number }
  | { type: 'RESTORED'; restores: number }
  | { type: 'CANCEL' }
  | { type: 'PAUSE' }
  | { type: 'RESUME' };

export interface InstallOutput {
  id: string;
  version: string | null;
  current: string | null;
  rolled_back: boolean;
  error: ErrorInfo | null;
}

// ---- effect signatures (implemented in src/engine/effects) ----------------------------

export interface ResolveInput {
  jobId: string;
  request: InstallRequest;
}
export interface VerifyManifestInput {
  request: InstallRequest;
  release: ResolvedRelease;
}
export interface DownloadInput {
  jobId: string;
  id: string;
  version: string;
  platform: string;
  archive: { url: string; sha256: string; size: number };
  /** Lets the download stage files while it runs. */
  manifestText: string;
}
export interface VerifyArchiveInput {
  download: DownloadOutput;
  archive: { sha256: string; size: number };
}
export interface StageInput {
  jobId: string;
  /** The key that signed the manifest: refused if it was revoked since. */
  keyId: string;
  id: string;
  version: string;
  archivePath: string;
  manifestText: string;
  /** Kept with the version as its proof (`<version>/.modelhub/`, src/engine/version-proof.ts). */
  signatureText: string;
  prestaged: boolean;
  /** A delta update: the content folder to stage from instead of the package (DownloadOutput.delta). */
  contentDir?: string | null;
}
export interface SwitchInput {
  jobId: string;
  id: string;
  version: string;
  stagingDir: string;
  previous: string | null;
}
export interface StopOldInput {
  id: string;
  version: string | null;
}
export interface StartInput {
  jobId: string;
  id: string;
  version: string;
}
export interface HealthInput {
  id: string;
  version: string;
  pid: number;
  port: number;
  /** Absolute: restored jobs do not get a fresh budget. */
  deadline: number;
}
export interface CommitInput {
  jobId: string;
  id: string;
  version: string;
  previous: string | null;
  archivePath: string | null;
}
export interface CleanUpInput {
  jobId: string;
  id: string;
  stagingDir: string | null;
  archivePath: string | null;
  /** The release being downloaded, so its partial download can be found before it completed. */
  archive: { version: string; platform: string; sha256: string } | null;
  /**
   * A corrupt or hostile download is thrown away, and so is a cancelled one; an interrupted
   * one is kept for resume.
   */
  discardDownload: boolean;
}
export interface RollbackInput {
  jobId: string;
  id: string;
  version: string;
  previous: string | null;
  /** Was the previous version running before this job? Then it is started again. */
  restartPrevious: boolean;
  /** Did the new version's directory exist before this job? Then it is kept. */
  keepNewVersionDir: boolean;
  archivePath: string | null;
}

function restartRuleOf(state: keyof typeof INSTALL_RESTART_TABLE): RestartRule {
  return INSTALL_RESTART_TABLE[state];
}

/** Codes that mean the downloaded bytes are bad, not merely incomplete. */
const DISCARD_DOWNLOAD_CODES = new Set(['CHECKSUM_MISMATCH', 'SIZE_EXCEEDED', 'UNSAFE_ARCHIVE', 'MANIFEST_MISMATCH']);

export const installMachine = setup({
  types: {
    context: {} as InstallContext,
    events: {} as InstallEvent,
    input: {} as InstallInput,
    output: {} as InstallOutput,
  },
  actors: {
    resolveRelease: inert<ResolveInput, ResolvedRelease>(),
    verifyManifest: inert<VerifyManifestInput, VerifiedRelease>(),
    downloadArchive: inert<DownloadInput, DownloadOutput>(),
    verifyArchive: inert<VerifyArchiveInput, DownloadOutput>(),
    stageRelease: inert<StageInput, StageOutput>(),
    switchVersion: inert<SwitchInput, SwitchOutput>(),
    stopOldVersion: inert<StopOldInput, { stopped: boolean }>(),
    startService: inert<StartInput, StartOutput>(),
    checkHealth: inert<HealthInput, HealthOutput>(),
    commitRelease: inert<CommitInput, CommitOutput>(),
    cleanUp: inert<CleanUpInput, { removed: string[] }>(),
    rollBack: inert<RollbackInput, RollbackOutput>(),
  },
  guards: {
    restartLoop: ({ event }) => event.type === 'RESTORED' && event.restores > MAX_RESTORES,
    startRequested: ({ context }) => context.request.start,
    wasCancelled: ({ context }) => context.cancelled,
    // Where a resumed job picks up: the first step whose result it does not have yet.
    hasVerified: ({ context }) => context.verified !== null,
    hasRelease: ({ context }) => context.release !== null,
    alreadyCurrent: ({ context, event }) => {
      if (!('output' in event)) return false;
      const r = event.output as ResolvedRelease;
      return r.installed.current === r.version && r.installed.versions.includes(r.version) && (!context.request.start || r.installed.running);
    },
  },
  actions: {
    noteRestore: assign({ restores: ({ context, event }) => (event.type === 'RESTORED' ? event.restores : context.restores) }),
    noteRestartLoop: assign({
      restores: ({ context, event }) => (event.type === 'RESTORED' ? event.restores : context.restores),
      error: ({ context }) => ({ code: 'INTERNAL' as const, message: `restart loop: the job was interrupted more than ${MAX_RESTORES} times`, retryable: false, ...(context.error ? { cause: context.error.message } : {}) }),
    }),
    noteInterrupted: assign({
      error: ({ context }) => context.error ?? { code: 'INTERNAL' as const, message: 'the engine stopped before the new version was confirmed healthy', retryable: false },
    }),
    noteCancel: assign({ cancelled: true, error: { code: 'INTERNAL' as const, message: 'cancelled', retryable: false } }),
    noteProgress: assign({
      progress: ({ context, event }) =>
        event.type === 'DOWNLOAD_PROGRESS'
          ? { bytesDone: Math.max(context.progress.bytesDone, event.bytesDone), bytesTotal: event.bytesTotal }
          : context.progress,
    }),
  },
}).createMachine({
  id: 'install',
  context: ({ input }) => ({
    jobId: input.jobId,
    request: input.request,
    restores: 0,
    release: null,
    verified: null,
    progress: { bytesDone: 0, bytesTotal: 0 },
    download: null,
    staged: null,
    switched: null,
    started: null,
    current: null,
    rolledBack: false,
    error: null,
    cancelled: false,
  }),
  initial: 'resolving',
  output: ({ context }) => ({
    id: context.request.id,
    version: context.release?.version ?? context.request.version,
    current: context.current,
    rolled_back: context.rolledBack,
    error: context.error,
  }),
  states: {
    resolving: {
      invoke: {
        id: 'resolveRelease',
        src: 'resolveRelease',
        input: ({ context }) => ({ jobId: context.jobId, request: context.request }),
        onDone: [
          // Already the current version (and running, when asked to run): nothing to do.
          { guard: 'alreadyCurrent', target: 'committed', actions: assign({ release: ({ event }) => event.output, current: ({ event }) => event.output.installed.current }) },
          { target: 'verifying_manifest', actions: assign({ release: ({ event }) => event.output, current: ({ event }) => event.output.installed.current }) },
        ],
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cancelled', actions: 'noteCancel' },
        PAUSE: { target: 'paused' },
      },
      meta: { restart: restartRuleOf('resolving') },
    },
    verifying_manifest: {
      invoke: {
        id: 'verifyManifest',
        src: 'verifyManifest',
        input: ({ context }) => ({ request: context.request, release: context.release! }),
        onDone: {
          target: 'downloading',
          actions: assign({
            verified: ({ event }) => event.output,
            progress: ({ event }) => ({ bytesDone: 0, bytesTotal: event.output.archive.size }),
          }),
        },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cancelled', actions: 'noteCancel' },
        PAUSE: { target: 'paused' },
      },
      meta: { restart: restartRuleOf('verifying_manifest') },
    },
    downloading: {
      invoke: {
        id: 'downloadArchive',
        src: 'downloadArchive',
        input: ({ context }) => ({
          jobId: context.jobId,
          id: context.request.id,
          version: context.release!.version,
          platform: context.request.platform,
          archive: context.verified!.archive,
          manifestText: context.release!.manifestText,
        }),
        onDone: { target: 'verifying_archive', actions: assign({ download: ({ event }) => event.output }) },
        onError: { target: 'cleaning_up', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        DOWNLOAD_PROGRESS: { actions: 'noteProgress' },
        RESTORED: [{ guard: 'restartLoop', target: 'cleaning_up', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cleaning_up', actions: 'noteCancel' },
        PAUSE: { target: 'paused' },
      },
      meta: { restart: restartRuleOf('downloading') },
    },
    // Nothing runs: no bytes flow, the engine releases the job's lease, the partial download
    // and staging stay for RESUME. Recovery leaves a paused job alone (restart rule `hold`).
    paused: {
      on: {
        RESUME: [
          { guard: 'hasVerified', target: 'downloading' },
          { guard: 'hasRelease', target: 'verifying_manifest' },
          { target: 'resolving' },
        ],
        CANCEL: { target: 'cleaning_up', actions: 'noteCancel' },
        RESTORED: { actions: 'noteRestore' },
      },
      meta: { restart: restartRuleOf('paused') },
    },
    verifying_archive: {
      invoke: {
        id: 'verifyArchive',
        src: 'verifyArchive',
        input: ({ context }) => ({ download: context.download!, archive: context.verified!.archive }),
        onDone: { target: 'staging', actions: assign({ download: ({ event }) => event.output }) },
        onError: { target: 'cleaning_up', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'cleaning_up', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cleaning_up', actions: 'noteCancel' },
      },
      meta: { restart: restartRuleOf('verifying_archive') },
    },
    staging: {
      invoke: {
        id: 'stageRelease',
        src: 'stageRelease',
        input: ({ context }) => ({
          jobId: context.jobId,
          keyId: context.verified!.keyId,
          id: context.request.id,
          version: context.release!.version,
          archivePath: context.download!.path,
          manifestText: context.release!.manifestText,
          signatureText: context.release!.signatureText,
          prestaged: context.download!.prestaged === true,
          contentDir: context.download!.delta?.dir ?? null,
        }),
        onDone: { target: 'switching', actions: assign({ staged: ({ event }) => event.output }) },
        onError: { target: 'cleaning_up', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'cleaning_up', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cleaning_up', actions: 'noteCancel' },
      },
      meta: { restart: restartRuleOf('staging') },
    },
    switching: {
      invoke: {
        id: 'switchVersion',
        src: 'switchVersion',
        input: ({ context }) => ({
          jobId: context.jobId,
          id: context.request.id,
          version: context.release!.version,
          stagingDir: context.staged!.stagingDir,
          previous: context.release!.installed.current,
        }),
        onDone: [
          { guard: 'startRequested', target: 'stopping_old', actions: assign({ switched: ({ event }) => event.output, current: ({ event }) => event.output.current }) },
          { target: 'committing', actions: assign({ switched: ({ event }) => event.output, current: ({ event }) => event.output.current }) },
        ],
        onError: { target: 'rolling_back', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'rolling_back', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
      },
      meta: { restart: restartRuleOf('switching') },
    },
    stopping_old: {
      invoke: {
        id: 'stopOldVersion',
        src: 'stopOldVersion',
        input: ({ context }) => ({ id: context.request.id, version: context.release!.installed.current }),
        onDone: { target: 'starting' },
        onError: { target: 'rolling_back', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'rolling_back', actions: 'noteRestartLoop' }, { target: 'rolling_back', actions: ['noteRestore', 'noteInterrupted'] }],
      },
      meta: { restart: restartRuleOf('stopping_old') },
    },
    starting: {
      invoke: {
        id: 'startService',
        src: 'startService',
        input: ({ context }) => ({ jobId: context.jobId, id: context.request.id, version: context.release!.version }),
        onDone: { target: 'health_checking', actions: assign({ started: ({ event }) => event.output }) },
        onError: { target: 'rolling_back', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'rolling_back', actions: 'noteRestartLoop' }, { target: 'rolling_back', actions: ['noteRestore', 'noteInterrupted'] }],
      },
      meta: { restart: restartRuleOf('starting') },
    },
    health_checking: {
      invoke: {
        id: 'checkHealth',
        src: 'checkHealth',
        input: ({ context }) => ({
          id: context.request.id,
          version: context.release!.version,
          pid: context.started!.pid,
          port: context.started!.port,
          deadline: context.started!.startedAt + context.verified!.healthBudgetMs,
        }),
        onDone: { target: 'committing' },
        onError: { target: 'rolling_back', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'rolling_back', actions: 'noteRestartLoop' }, { target: 'rolling_back', actions: ['noteRestore', 'noteInterrupted'] }],
      },
      meta: { restart: restartRuleOf('health_checking') },
    },
    committing: {
      invoke: {
        id: 'commitRelease',
        src: 'commitRelease',
        input: ({ context }) => ({
          jobId: context.jobId,
          id: context.request.id,
          version: context.release!.version,
          previous: context.switched!.previous,
          archivePath: context.download?.path ?? null,
        }),
        onDone: { target: 'committed' },
        onError: { target: 'rolling_back', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'rolling_back', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
      },
      meta: { restart: restartRuleOf('committing') },
    },
    cleaning_up: {
      invoke: {
        id: 'cleanUp',
        src: 'cleanUp',
        input: ({ context }) => ({
          jobId: context.jobId,
          id: context.request.id,
          stagingDir: context.staged?.stagingDir ?? null,
          archivePath: context.download?.path ?? null,
          archive: context.release !== null && context.verified !== null ? { version: context.release.version, platform: context.request.platform, sha256: context.verified.archive.sha256 } : null,
          discardDownload: context.cancelled || (context.error !== null && DISCARD_DOWNLOAD_CODES.has(context.error.code)),
        }),
        onDone: [{ guard: 'wasCancelled', target: 'cancelled' }, { target: 'failed' }],
        onError: [{ guard: 'wasCancelled', target: 'cancelled' }, { target: 'failed' }],
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
      },
      meta: { restart: restartRuleOf('cleaning_up') },
    },
    rolling_back: {
      invoke: {
        id: 'rollBack',
        src: 'rollBack',
        input: ({ context }) => ({
          jobId: context.jobId,
          id: context.request.id,
          version: context.release!.version,
          previous: context.release!.installed.current,
          restartPrevious: context.request.start && context.release!.installed.running,
          keepNewVersionDir: context.release!.installed.versions.includes(context.release!.version),
          archivePath: context.download?.path ?? null,
        }),
        onDone: { target: 'rolled_back', actions: assign({ current: ({ event }) => event.output.current, rolledBack: true }) },
        onError: { target: 'failed', actions: assign({ error: ({ context, event }) => ({ ...errorInfoOf(event.error), message: `rollback failed: ${errorInfoOf(event.error).message}${context.error ? ` (after: ${context.error.message})` : ''}` }) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
      },
      meta: { restart: restartRuleOf('rolling_back') },
    },
    committed: {
      type: 'final',
    },
    failed: {
      type: 'final',
    },
    rolled_back: {
      type: 'final',
    },
    cancelled: {
      type: 'final',
    },
  },
});

export type InstallMachine = typeof installMachine;
