// The rebuild job (SPEC §13): engine.db was missing or not a database, so the registry is
// rebuilt from what is on disk. scan the version folders → verify each one against the signed
// manifest it keeps (one invocation per folder, so a restart redoes only the folder it was in)
// → restore each service's `current` from its pointer (repairing a broken one) → committed.
// Folders that fail are quarantined by the verify effect; the job's events are the record of
// what was found, and the registry is their projection (src/engine/projections.ts).
// Pure: every effect is a named actor supplied by src/ through .provide().
import { assign, setup } from 'xstate';
import { inert } from './inert.js';
import { errorInfoOf, type ErrorInfo } from './errors.js';
import { REBUILD_RESTART_TABLE, isRestartLoop, RESTART_LOOP_ERROR, restoresOf } from './restart-table.js';

export type RebuildReason = 'missing' | 'corrupt';

export interface RebuildInput {
  jobId: string;
  /** What happened to engine.db: gone, or not a database (then kept as `keptAs`). */
  reason: RebuildReason;
  /** Where the unreadable database was moved (`engine.db.corrupt-<timestamp>`), else null. */
  keptAs: string | null;
  /** When the loss was found (ms since the epoch): job history before it is lost. */
  detectedAt: number;
}

export interface VersionRef {
  kind: 'service' | 'model';
  id: string;
  version: string;
}

export interface ScanOutput {
  candidates: VersionRef[];
}

export interface VerifyVersionInput extends VersionRef {
  jobId: string;
}

/**
 * intact: the signed manifest verifies and every file matches → an installed version.
 * quarantined: it does not → moved to `<home>/quarantine/<job>/…`, reported.
 * unproven: no proof could be found (a version from before proofs, no hub to ask): left where
 * it is, not registered, reported — absence of proof is not evidence of tampering.
 */
export type VersionStatus = 'intact' | 'quarantined' | 'unproven';

export interface VersionVerdict extends VersionRef {
  status: VersionStatus;
  /** The signed manifest of an intact version (carried by the event, for the registry). */
  manifestText: string | null;
  keyId: string | null;
  problem: string | null;
  modified: string[];
  missing: string[];
  quarantinedTo: string | null;
}

export interface RestorePointersInput {
  jobId: string;
  /** Per service id, its intact versions. */
  intact: Record<string, string[]>;
  /** Per service id, versions left in place without proof: a pointer to one is left alone. */
  unproven: Record<string, string[]>;
}

export interface PointerOutcome {
  id: string;
  current: string | null;
  previous: string | null;
  /** Set when the pointer was rewritten or removed, with why. */
  repaired: { from: string | null; to: string | null; why: string } | null;
}

export interface RestorePointersOutput {
  services: PointerOutcome[];
}

export interface RebuildContext extends RebuildInput {
  restores: number;
  candidates: VersionRef[];
  /** Without the manifests: those live in the events only (the snapshot is saved per event). */
  verdicts: VersionVerdict[];
  pointers: PointerOutcome[];
  error: ErrorInfo | null;
}

export type RebuildEvent = { type: 'RESTORED'; restores: number };

export interface RebuildOutput {
  reason: RebuildReason;
  keptAs: string | null;
  detectedAt: number;
  intact: VersionRef[];
  quarantined: VersionVerdict[];
  unproven: VersionVerdict[];
  pointers: PointerOutcome[];
  error: ErrorInfo | null;
}

function byService(verdicts: readonly VersionVerdict[], status: VersionStatus): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const v of verdicts) if (v.kind === 'service' && v.status === status) out[v.id] = [...(out[v.id] ?? []), v.version];
  return out;
}

const ref = (v: VersionRef): VersionRef => ({ kind: v.kind, id: v.id, version: v.version });

export const rebuildMachine = setup({
  types: {
    context: {} as RebuildContext,
    events: {} as RebuildEvent,
    input: {} as RebuildInput,
    output: {} as RebuildOutput,
  },
  actors: {
    scanVersions: inert<{ jobId: string }, ScanOutput>(),
    verifyVersion: inert<VerifyVersionInput, VersionVerdict>(),
    restorePointers: inert<RestorePointersInput, RestorePointersOutput>(),
  },
  guards: {
    restartLoop: isRestartLoop,
    nothingFound: ({ event }) => 'output' in event && (event.output as ScanOutput).candidates.length === 0,
    // Evaluated before the verdict is assigned: more remain after this one.
    moreToVerify: ({ context }) => context.verdicts.length + 1 < context.candidates.length,
  },
  actions: {
    noteRestore: assign({ restores: restoresOf }),
    noteRestartLoop: assign({ restores: restoresOf, error: RESTART_LOOP_ERROR }),
  },
}).createMachine({
  id: 'rebuild',
  context: ({ input }) => ({ ...input, restores: 0, candidates: [], verdicts: [], pointers: [], error: null }),
  initial: 'scanning',
  output: ({ context }) => ({
    reason: context.reason,
    keptAs: context.keptAs,
    detectedAt: context.detectedAt,
    intact: context.verdicts.filter((v) => v.status === 'intact').map(ref),
    quarantined: context.verdicts.filter((v) => v.status === 'quarantined'),
    unproven: context.verdicts.filter((v) => v.status === 'unproven'),
    pointers: context.pointers,
    error: context.error,
  }),
  states: {
    scanning: {
      invoke: {
        id: 'scanVersions',
        src: 'scanVersions',
        input: ({ context }) => ({ jobId: context.jobId }),
        onDone: [
          { guard: 'nothingFound', target: 'restoring_pointers', actions: assign({ candidates: [] }) },
          { target: 'verifying', actions: assign({ candidates: ({ event }) => event.output.candidates }) },
        ],
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: REBUILD_RESTART_TABLE.scanning },
    },
    verifying: {
      invoke: {
        id: 'verifyVersion',
        src: 'verifyVersion',
        input: ({ context }) => ({ jobId: context.jobId, ...context.candidates[context.verdicts.length]! }),
        onDone: [
          { guard: 'moreToVerify', target: 'verifying', reenter: true, actions: assign({ verdicts: ({ context, event }) => [...context.verdicts, { ...event.output, manifestText: null }] }) },
          { target: 'restoring_pointers', actions: assign({ verdicts: ({ context, event }) => [...context.verdicts, { ...event.output, manifestText: null }] }) },
        ],
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: REBUILD_RESTART_TABLE.verifying },
    },
    restoring_pointers: {
      invoke: {
        id: 'restorePointers',
        src: 'restorePointers',
        input: ({ context }) => ({ jobId: context.jobId, intact: byService(context.verdicts, 'intact'), unproven: byService(context.verdicts, 'unproven') }),
        onDone: { target: 'committed', actions: assign({ pointers: ({ event }) => event.output.services }) },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: REBUILD_RESTART_TABLE.restoring_pointers },
    },
    committed: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type RebuildMachine = typeof rebuildMachine;
