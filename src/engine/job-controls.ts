// Controls a user gives a job that another process may be running (cancel, pause). The request is a row in engine.db: whoever holds the job's lease polls for
// it and acts, so `modelhub cancel JOB` works on a job another CLI or an app is running.
import type { Db } from './db.js';

export type JobControl = 'cancel' | 'pause';

/** How often a job's holder looks for a control: the user waits at most about this long. */
export const CONTROL_POLL_MS = 250;

export class JobControls {
  /** @internal engine.db is not part of the public API. */
  constructor(private readonly db: Db) {}

  request(jobId: string, action: JobControl, now: number): void {
    this.db
      .prepare('INSERT INTO job_controls (job_id, action, requested_at) VALUES (?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET action = excluded.action, requested_at = excluded.requested_at')
      .run(jobId, action, now);
  }

  /** The pending control of a job, removed as it is taken. */
  take(jobId: string): JobControl | undefined {
    const row = this.db.prepare('DELETE FROM job_controls WHERE job_id = ? RETURNING action').get(jobId) as { action: JobControl } | undefined;
    return row?.action;
  }

  clear(jobId: string): void {
    this.db.prepare('DELETE FROM job_controls WHERE job_id = ?').run(jobId);
  }
}
