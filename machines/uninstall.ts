// The uninstall job: stop the service if it runs, then remove the pointer and the versions (of
// a service), or remove a model's versions and free the blobs no other version uses.
// Both steps are idempotent, so recovery simply redoes them (restart-table.ts).
import { assign, setup } from 'xstate';
import { inert } from './inert.js';
import { errorInfoOf, type ErrorInfo } from './errors.js';
import { MAX_RESTORES, UNINSTALL_RESTART_TABLE } from './restart-table.js';

export interface UninstallInput {
  jobId: string;
  /** `kind`: a service (the default, and what logs of older nodes mean) or a model. */
  request: { id: string; version: string | null; kind?: 'service' | 'model' };
}

export interface UninstallContext extends UninstallInput {
  restores: number;
  removed: string[];
  current: string | null;
  error: ErrorInfo | null;
}

export type UninstallEvent = { type: 'RESTORED'; restores: number };

export interface StopServiceInput {
  id: string;
  /** null: whatever version runs; otherwise only if that version runs. */
  version: string | null;
  /** A model has nothing to stop. */
  kind?: 'service' | 'model';
}
export interface RemoveInput {
  jobId: string;
  id: string;
  version: string | null;
  kind?: 'service' | 'model';
}
export interface RemoveOutput {
  removed: string[];
  current: string | null;
  /** A model's files that no other version uses any more, freed from the blob store (src/store/blobs.ts). */
  blobsFreed?: { count: number; bytes: number };
}


export const uninstallMachine = setup({
  types: {
    context: {} as UninstallContext,
    events: {} as UninstallEvent,
    input: {} as UninstallInput,
    output: {} as { id: string; removed: string[]; current: string | null; error: ErrorInfo | null },
  },
  actors: {
    stopService: inert<StopServiceInput, { stopped: boolean }>(),
    removeVersions: inert<RemoveInput, RemoveOutput>(),
  },
  guards: {
    restartLoop: ({ event }) => event.restores > MAX_RESTORES,
  },
  actions: {
    noteRestore: assign({ restores: ({ event }) => event.restores }),
    noteRestartLoop: assign({
      restores: ({ event }) => event.restores,
      error: { code: 'INTERNAL' as const, message: `restart loop: the job was interrupted more than ${MAX_RESTORES} times`, retryable: false },
    }),
  },
}).createMachine({
  id: 'uninstall',
  context: ({ input }) => ({ ...input, restores: 0, removed: [], current: null, error: null }),
  initial: 'stopping',
  output: ({ context }) => ({ id: context.request.id, removed: context.removed, current: context.current, error: context.error }),
  states: {
    stopping: {
      invoke: {
        id: 'stopService',
        src: 'stopService',
        input: ({ context }) => ({ id: context.request.id, version: context.request.version, kind: context.request.kind ?? 'service' }),
        onDone: { target: 'removing' },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: UNINSTALL_RESTART_TABLE.stopping },
    },
    removing: {
      invoke: {
        id: 'removeVersions',
        src: 'removeVersions',
        input: ({ context }) => ({ jobId: context.jobId, id: context.request.id, version: context.request.version, kind: context.request.kind ?? 'service' }),
        onDone: { target: 'committed', actions: assign({ removed: ({ event }) => event.output.removed, current: ({ event }) => event.output.current }) },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: UNINSTALL_RESTART_TABLE.removing },
    },
    committed: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type UninstallMachine = typeof uninstallMachine;
