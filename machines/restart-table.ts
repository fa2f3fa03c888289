// What recovery does for a job found in each persisted state (Mender's rule per state).
//   resume    – the step's effect runs again and continues where it was (a download goes on
//               from the .part size; resolving and verifying are read-only and simply rerun)
//   redo      – the step's effect runs again from scratch; it is idempotent (staging is wiped
//               and redone, the pointer switch is re-applied, commit and clean-up re-run)
//   roll_back – the job cannot be trusted to finish: after the switch and before commit the
//               node returns to the version that was running
//   hold      – a user paused the job: recovery leaves it paused (its partial files are kept)
//               until the user resumes or cancels it
// Restoring a job more than MAX_RESTORES times means a restart loop: it is failed (before the
// switch) or rolled back (after it).

export type RestartRule = 'resume' | 'redo' | 'roll_back' | 'hold';

export const MAX_RESTORES = 3;

/** The error a job ends with when it was restored more than MAX_RESTORES times. */
export const RESTART_LOOP_ERROR = { code: 'INTERNAL' as const, message: `restart loop: the job was interrupted more than ${MAX_RESTORES} times`, retryable: false };

type RestoredEvent = { type: string; restores?: number };

/** Guard: this RESTORED is one restore too many. */
export const isRestartLoop = ({ event }: { event: RestoredEvent }): boolean => event.type === 'RESTORED' && (event.restores ?? 0) > MAX_RESTORES;

/** The restore count a RESTORED event carries (for `assign({ restores: restoresOf })`). */
export const restoresOf = ({ context, event }: { context: { restores: number }; event: RestoredEvent }): number => (event.type === 'RESTORED' ? (event.restores ?? context.restores) : context.restores);

export const INSTALL_RESTART_TABLE = {
  resolving: 'resume',
  verifying_manifest: 'resume',
  downloading: 'resume',
  paused: 'hold',
  verifying_archive: 'redo',
  staging: 'redo',
  switching: 'redo',
  stopping_old: 'roll_back',
  starting: 'roll_back',
  health_checking: 'roll_back',
  committing: 'redo',
  cleaning_up: 'redo',
  rolling_back: 'redo',
} as const satisfies Record<string, RestartRule>;

export const UNINSTALL_RESTART_TABLE = {
  stopping: 'redo',
  removing: 'redo',
} as const satisfies Record<string, RestartRule>;

export const MODEL_PULL_RESTART_TABLE = {
  resolving: 'resume',
  verifying_manifest: 'resume',
  downloading: 'resume',
  paused: 'hold',
  installing: 'redo',
  cleaning_up: 'redo',
} as const satisfies Record<string, RestartRule>;

// Rebuilding the registry from disk (engine.db was lost): every step reads the disk again and
// is idempotent — a folder already quarantined is found in the quarantine and judged again
// there, a pointer already repaired reads as intact.
export const REBUILD_RESTART_TABLE = {
  scanning: 'redo',
  verifying: 'redo',
  restoring_pointers: 'redo',
} as const satisfies Record<string, RestartRule>;

// Repairing one installed version's damaged files: the check is read-only; fetching resumes
// from what the content folder holds (each file there is complete and verified); replacing
// skips files that already match and redoes the rest; clean-up is a removal.
export const REPAIR_RESTART_TABLE = {
  checking: 'redo',
  fetching: 'resume',
  replacing: 'redo',
  cleaning_up: 'redo',
} as const satisfies Record<string, RestartRule>;
