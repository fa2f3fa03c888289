// The repair job (`modelhub verify --repair`, SPEC §13): one installed version whose files no
// longer match its signed manifest gets back exactly the damaged files, fetched through the
// normal verified path — check → fetch the damaged files (Range reads of single zip entries
// when the hub serves them, else the whole package; a model's files one by one) → replace them
// in place, each by temp name → fsync → rename → committed. The version is never switched:
// `current` is rewritten only when the pointer itself was already broken.
// Pure: every effect is a named actor supplied by src/ through .provide().
import { assign, setup } from 'xstate';
import { inert } from './inert.js';
import { errorInfoOf, type ErrorInfo } from './errors.js';
import { REPAIR_RESTART_TABLE, isRestartLoop, RESTART_LOOP_ERROR, restoresOf } from './restart-table.js';

export interface RepairInput {
  jobId: string;
  subject: 'service' | 'model';
  id: string;
  version: string;
}

export interface DamagedFile {
  path: string;
  sha256: string;
  size: number;
  mode?: number;
}

export interface CheckVersionOutput {
  /** Files modified or missing, with what the signed manifest says they are. */
  damaged: DamagedFile[];
  /** The signed manifest the version was checked against (from its proof, else from the hub). */
  manifestText: string;
  signatureText: string;
  /** The proof in `.modelhub/` is missing or did not verify: it is written again. */
  writeProof: boolean;
  /** `current` names this version in the registry but the pointer is dangling or unreadable. */
  pointerBroken: boolean;
}

export interface FetchDamagedInput {
  jobId: string;
  subject: 'service' | 'model';
  id: string;
  version: string;
  manifestText: string;
  damaged: DamagedFile[];
}

export interface FetchDamagedOutput {
  /** Where the fetched files wait, each named by its SHA-256 (verified when written). */
  contentDir: string;
  /** Body bytes received for this repair (by this run). */
  bytesFetched: number;
  /** `range`: single entries by Range; `package`: the whole package, then only the damaged entries; `files`: a model's files. */
  method: 'range' | 'package' | 'files';
  /** Why single entries could not be read, when the whole package was fetched. */
  fallback: string | null;
}

export interface ReplaceFilesInput {
  jobId: string;
  subject: 'service' | 'model';
  id: string;
  version: string;
  contentDir: string | null;
  damaged: DamagedFile[];
  proof: { manifestText: string; signatureText: string } | null;
  pointerBroken: boolean;
}

export interface ReplaceFilesOutput {
  repaired: string[];
  proofWritten: boolean;
  pointerRepaired: boolean;
}

export interface RepairContext extends RepairInput {
  restores: number;
  checked: CheckVersionOutput | null;
  fetched: FetchDamagedOutput | null;
  replaced: ReplaceFilesOutput | null;
  error: ErrorInfo | null;
}

export type RepairEvent = { type: 'RESTORED'; restores: number };

export interface RepairOutput {
  id: string;
  version: string;
  repaired: string[];
  bytesFetched: number;
  method: FetchDamagedOutput['method'] | null;
  fallback: string | null;
  proofWritten: boolean;
  pointerRepaired: boolean;
  error: ErrorInfo | null;
}

export const repairMachine = setup({
  types: {
    context: {} as RepairContext,
    events: {} as RepairEvent,
    input: {} as RepairInput,
    output: {} as RepairOutput,
  },
  actors: {
    checkVersion: inert<RepairInput, CheckVersionOutput>(),
    fetchDamaged: inert<FetchDamagedInput, FetchDamagedOutput>(),
    replaceFiles: inert<ReplaceFilesInput, ReplaceFilesOutput>(),
    cleanUpRepair: inert<{ jobId: string }, { removed: string[] }>(),
  },
  guards: {
    restartLoop: isRestartLoop,
    nothingToRepair: ({ event }) => {
      if (!('output' in event)) return false;
      const o = event.output as CheckVersionOutput;
      return o.damaged.length === 0 && !o.writeProof && !o.pointerBroken;
    },
    succeeded: ({ context }) => context.error === null,
    nothingToFetch: ({ event }) => 'output' in event && (event.output as CheckVersionOutput).damaged.length === 0,
  },
  actions: {
    noteRestore: assign({ restores: restoresOf }),
    noteRestartLoop: assign({ restores: restoresOf, error: RESTART_LOOP_ERROR }),
  },
}).createMachine({
  id: 'repair',
  context: ({ input }) => ({ ...input, restores: 0, checked: null, fetched: null, replaced: null, error: null }),
  initial: 'checking',
  output: ({ context }) => ({
    id: context.id,
    version: context.version,
    repaired: context.replaced?.repaired ?? [],
    bytesFetched: context.fetched?.bytesFetched ?? 0,
    method: context.fetched?.method ?? null,
    fallback: context.fetched?.fallback ?? null,
    proofWritten: context.replaced?.proofWritten ?? false,
    pointerRepaired: context.replaced?.pointerRepaired ?? false,
    error: context.error,
  }),
  states: {
    checking: {
      invoke: {
        id: 'checkVersion',
        src: 'checkVersion',
        input: ({ context }) => ({ jobId: context.jobId, subject: context.subject, id: context.id, version: context.version }),
        onDone: [
          { guard: 'nothingToRepair', target: 'committed', actions: assign({ checked: ({ event }) => event.output }) },
          { guard: 'nothingToFetch', target: 'replacing', actions: assign({ checked: ({ event }) => event.output }) },
          { target: 'fetching', actions: assign({ checked: ({ event }) => event.output }) },
        ],
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: REPAIR_RESTART_TABLE.checking },
    },
    fetching: {
      invoke: {
        id: 'fetchDamaged',
        src: 'fetchDamaged',
        input: ({ context }) => ({ jobId: context.jobId, subject: context.subject, id: context.id, version: context.version, manifestText: context.checked!.manifestText, damaged: context.checked!.damaged }),
        onDone: { target: 'replacing', actions: assign({ fetched: ({ event }) => event.output }) },
        onError: { target: 'cleaning_up', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'cleaning_up', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: REPAIR_RESTART_TABLE.fetching },
    },
    replacing: {
      invoke: {
        id: 'replaceFiles',
        src: 'replaceFiles',
        input: ({ context }) => ({
          jobId: context.jobId,
          subject: context.subject,
          id: context.id,
          version: context.version,
          contentDir: context.fetched?.contentDir ?? null,
          damaged: context.checked!.damaged,
          proof: context.checked!.writeProof ? { manifestText: context.checked!.manifestText, signatureText: context.checked!.signatureText } : null,
          pointerBroken: context.checked!.pointerBroken,
        }),
        onDone: { target: 'cleaning_up', actions: assign({ replaced: ({ event }) => event.output }) },
        onError: { target: 'cleaning_up', actions: assign({ error: ({ event }) => errorInfoOf(event.error) }) },
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'cleaning_up', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: REPAIR_RESTART_TABLE.replacing },
    },
    // The fetched files and any package go, whatever happened: a repair is small, and a later
    // one starts again from a fresh check.
    cleaning_up: {
      invoke: {
        id: 'cleanUpRepair',
        src: 'cleanUpRepair',
        input: ({ context }) => ({ jobId: context.jobId }),
        onDone: [{ guard: 'succeeded', target: 'committed' }, { target: 'failed' }],
        onError: [{ guard: 'succeeded', target: 'committed' }, { target: 'failed' }],
      },
      on: { RESTORED: [{ guard: 'restartLoop', target: 'failed', actions: 'noteRestartLoop' }, { actions: 'noteRestore' }] },
      meta: { restart: REPAIR_RESTART_TABLE.cleaning_up },
    },
    committed: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type RepairMachine = typeof repairMachine;
