// The model pull job: resolve → verify manifest → download every file (resumable, in
// parallel, each checked against the signed manifest) → install (one rename) → committed.
import { assign, setup } from 'xstate';
import { inert } from './inert.js';
import { errorInfoOf, type ErrorInfo } from './errors.js';
import { MAX_RESTORES, MODEL_PULL_RESTART_TABLE } from './restart-table.js';
import type { SourceUse } from '../src/download/sources.js';
import type { StoreUse } from '../src/store/model-files.js';

export interface ModelPullInput {
  jobId: string;
  request: { id: string; version: string | null };
}

export interface ResolvedModel {
  version: string;
  manifestText: string;
  signatureText: string;
  installedVersions: string[];
}

export interface VerifiedModel {
  keyId: string;
  totalBytes: number;
  files: { path: string; size: number; sha256: string; url: string }[];
}

export interface ModelPullContext extends ModelPullInput {
  restores: number;
  resolved: ResolvedModel | null;
  verified: VerifiedModel | null;
  progress: { bytesDone: number; bytesTotal: number };
  stagingDir: string | null;
  path: string | null;
  error: ErrorInfo | null;
  cancelled: boolean;
}

export type ModelPullEvent =
  | { type: 'DOWNLOAD_PROGRESS'; bytesDone: number; bytesTotal: number }
  | { type: 'RESTORED'; restores: number }
  | { type: 'CANCEL' }
  | { type: 'PAUSE' }
  | { type: 'RESUME' };

export interface ResolveModelInput {
  request: { id: string; version: string | null };
}
export interface VerifyModelInput {
  id: string;
  resolved: ResolvedModel;
}
export interface DownloadModelInput {
  jobId: string;
  id: string;
  version: string;
  files: VerifiedModel['files'];
}
export interface DownloadModelOutput {
  stagingDir: string;
  /** Every source asked (mirrors, the hub), with the files and bytes each served (SPEC §12). Absent in logs of older nodes. */
  sources?: SourceUse[];
  /** Files taken from the node's blob store instead of the network, and files added to it (src/store/blobs.ts). */
  store?: StoreUse;
}
export interface InstallModelInput {
  jobId: string;
  id: string;
  version: string;
  stagingDir: string;
  /** Kept with the version as its proof (`<version>/.modelhub/`, src/engine/version-proof.ts). */
  manifestText: string;
  signatureText: string;
}
export interface CleanUpModelInput {
  jobId: string;
  id: string;
  version: string | null;
  discard: boolean;
}

const DISCARD_CODES = new Set(['CHECKSUM_MISMATCH', 'SIZE_EXCEEDED']);

export const modelPullMachine = setup({
  types: {
    context: {} as ModelPullContext,
    events: {} as ModelPullEvent,
    input: {} as ModelPullInput,
    output: {} as { id: string; version: string | null; path: string | null; error: ErrorInfo | null },
  },
  actors: {
    resolveModel: inert<ResolveModelInput, ResolvedModel>(),
    verifyModelManifest: inert<VerifyModelInput, VerifiedModel>(),
    downloadModelFiles: inert<DownloadModelInput, DownloadModelOutput>(),
    installModel: inert<InstallModelInput, { path: string }>(),
    cleanUpModel: inert<CleanUpModelInput, { removed: string[] }>(),
  },
  guards: {
    restartLoop: ({ event }) => event.type === 'RESTORED' && event.restores > MAX_RESTORES,
    wasCancelled: ({ context }) => context.cancelled,
    hasVerified: ({ context }) => context.verified !== null,
    hasResolved: ({ context }) => context.resolved !== null,
    alreadyInstalled: ({ event }) => 'output' in event && (event.output as ResolvedModel).installedVersions.includes((event.output as ResolvedModel).version),
  },
  actions: {
    noteRestore: assign({ restores: ({ context, event }) => (event.type === 'RESTORED' ? event.restores : context.restores) }),
    noteRestartLoop: assign({
      restores: ({ context, event }) => (event.type === 'RESTORED' ? event.restores : context.restores),
      error: { code: 'INTERNAL' as const, message: `restart loop: the job was interrupted more than ${MAX_RESTORES} times`, retryable: false },
    }),
    noteProgress: assign({
      progress: ({ context, event }) =>
        event.type === 'DOWNLOAD_PROGRESS' ? { bytesDone: Math.max(context.progress.bytesDone, event.bytesDone), bytesTotal: event.bytesTotal } : context.progress,
    }),
    noteCancel: assign({ cancelled: true, error: { code: 'INTERNAL' as const, message: 'cancelled', retryable: false } }),
  },
}).createMachine({
  id: 'model_pull',
  context: ({ input }) => ({ ...input, restores: 0, resolved: null, verified: null, progress: { bytesDone: 0, bytesTotal: 0 }, stagingDir: null, path: null, error: null, cancelled: false }),
  initial: 'resolving',
  output: ({ context }) => ({ id: context.request.id, version: context.resolved?.version ?? context.request.version, path: context.path, error: context.error }),
  states: {
    resolving: {
      invoke: {
        id: 'resolveModel',
        src: 'resolveModel',
        input: ({ context }) => ({ request: context.request }),
        onDone: [
          { guard: 'alreadyInstalled', target: 'committed', actions: assign({ resolved: ({ event }) => event.output }) },
          { target: 'verifying_manifest', actions: assign({ resolved: ({ event }) => event.output }) },
        ],
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cancelled', actions: 'noteCancel' },
        PAUSE: { target: 'paused' },
      },
      meta: { restart: MODEL_PULL_RESTART_TABLE.resolving },
    },
    verifying_manifest: {
      invoke: {
        id: 'verifyModelManifest',
        src: 'verifyModelManifest',
        input: ({ context }) => ({ id: context.request.id, resolved: context.resolved! }),
        onDone: {
          target: 'downloading',
          actions: assign({ verified: ({ event }) => event.output, progress: ({ event }) => ({ bytesDone: 0, bytesTotal: event.output.totalBytes }) }),
        },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cancelled', actions: 'noteCancel' },
        PAUSE: { target: 'paused' },
      },
      meta: { restart: MODEL_PULL_RESTART_TABLE.verifying_manifest },
    },
    downloading: {
      invoke: {
        id: 'downloadModelFiles',
        src: 'downloadModelFiles',
        input: ({ context }) => ({ jobId: context.jobId, id: context.request.id, version: context.resolved!.version, files: context.verified!.files }),
        onDone: { target: 'installing', actions: assign({ stagingDir: ({ event }) => event.output.stagingDir }) },
        onError: { target: 'cleaning_up', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: {
        DOWNLOAD_PROGRESS: { actions: 'noteProgress' },
        RESTORED: [{ guard: 'restartLoop', target: 'cleaning_up', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }],
        CANCEL: { target: 'cleaning_up', actions: 'noteCancel' },
        PAUSE: { target: 'paused' },
      },
      meta: { restart: MODEL_PULL_RESTART_TABLE.downloading },
    },
    // Nothing runs; the partial files stay for RESUME; recovery leaves it alone (`hold`).
    paused: {
      on: {
        RESUME: [
          { guard: 'hasVerified', target: 'downloading' },
          { guard: 'hasResolved', target: 'verifying_manifest' },
          { target: 'resolving' },
        ],
        CANCEL: { target: 'cleaning_up', actions: 'noteCancel' },
        RESTORED: { actions: 'noteRestore' },
      },
      meta: { restart: MODEL_PULL_RESTART_TABLE.paused },
    },
    installing: {
      invoke: {
        id: 'installModel',
        src: 'installModel',
        input: ({ context }) => ({
          jobId: context.jobId,
          id: context.request.id,
          version: context.resolved!.version,
          stagingDir: context.stagingDir!,
          manifestText: context.resolved!.manifestText,
          signatureText: context.resolved!.signatureText,
        }),
        onDone: { target: 'committed', actions: assign({ path: ({ event }) => event.output.path }) },
        onError: { target: 'cleaning_up', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'cleaning_up', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: MODEL_PULL_RESTART_TABLE.installing },
    },
    cleaning_up: {
      invoke: {
        id: 'cleanUpModel',
        src: 'cleanUpModel',
        // A cancelled pull's partial files go too (the user said so); an interrupted one keeps them.
        input: ({ context }) => ({ jobId: context.jobId, id: context.request.id, version: context.resolved?.version ?? null, discard: context.cancelled || (context.error !== null && DISCARD_CODES.has(context.error.code)) }),
        onDone: [{ guard: 'wasCancelled', target: 'cancelled' }, { target: 'failed' }],
        onError: [{ guard: 'wasCancelled', target: 'cancelled' }, { target: 'failed' }],
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: MODEL_PULL_RESTART_TABLE.cleaning_up },
    },
    committed: { type: 'final' },
    failed: { type: 'final' },
    cancelled: { type: 'final' },
  },
});

export type ModelPullMachine = typeof modelPullMachine;
