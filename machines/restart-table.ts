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
