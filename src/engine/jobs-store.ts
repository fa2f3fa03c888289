// Jobs and their event log. One transaction per event: the event row, the job's persisted
// snapshot and the registry projection commit together, before the engine acts on the state.
import type { JobKind } from '../client/types.js';
import type { Db } from './db.js';
import { isDiskFull } from '../errors.js';
import { project } from './projections.js';

export type { JobKind };

export interface JobRow {
  id: string;
  kind: JobKind;
  subject: string;
  requested: string;
  target: string;
  state: string;
  active: number;
  input: string;
  snapshot: string;
  restores: number;
  progress: string | null;
  output: string | null;
  started_at: number;
  ended_at: number | null;
}

export interface EventRow {
  seq: number;
  job_id: string;
  ts: number;
  type: string;
  payload: string;
  state: string;
}

export interface AppendArgs {
  jobId: string;
  kind: JobKind;
  ts: number;
  event: { type: string; [k: string]: unknown };
  state: string;
  snapshot: unknown;
  context: unknown;
  done: boolean;
  output: unknown;
  target?: string;
  /** Fencing: the append fails when this owner no longer holds the job's lease. */
  owner: string;
}

export class LostLeaseError extends Error {
  constructor(jobId: string) {
    super(`job ${jobId}: this process no longer holds its lease`);
    this.name = 'LostLeaseError';
  }
}

export class JobsStore {
  /**
   * @internal engine.db is not part of the public API. `onDiskFull` frees some space when an
   * append fails on a full disk (disk-reserve.ts); true when it did, and the append is tried again.
   */
  /**
   * @internal `progressDb`: where progress rows go, a connection that does not fsync
   * (openUnsyncedConnection); the store's own db when not given.
   */
  constructor(
    private readonly db: Db,
    private readonly onDiskFull?: () => boolean,
    private readonly progressDb: Db = db,
  ) {}

  /** A job before its first event: its input is kept so that recovery can start it. */
  createJob(job: { id: string; kind: JobKind; subject: string; requested: string; target: string; input: unknown; startedAt: number }): void {
    this.db
      .prepare(
        `INSERT INTO jobs (id, kind, subject, requested, target, state, active, input, snapshot, restores, started_at)
         VALUES (?, ?, ?, ?, ?, 'created', 1, ?, '', 0, ?)`,
      )
      .run(job.id, job.kind, job.subject, job.requested, job.target, JSON.stringify(job.input), job.startedAt);
  }

  readonly append = (a: AppendArgs): number => {
    const tx = this.db.transaction((): number => {
      const lease = this.db.prepare('SELECT owner FROM leases WHERE job_id = ?').get(a.jobId) as { owner: string } | undefined;
      if (lease === undefined || lease.owner !== a.owner) throw new LostLeaseError(a.jobId);
      const info = this.db
        .prepare('INSERT INTO events (job_id, ts, type, payload, state) VALUES (?, ?, ?, ?, ?)')
        .run(a.jobId, a.ts, a.event.type, JSON.stringify(a.event), a.state);
      this.db
        .prepare(
          `UPDATE jobs SET state = ?, snapshot = ?, active = ?, output = ?, ended_at = ?, target = COALESCE(?, target) WHERE id = ?`,
        )
        .run(a.state, JSON.stringify(a.snapshot), a.done ? 0 : 1, a.done ? JSON.stringify(a.output ?? null) : null, a.done ? a.ts : null, a.target ?? null, a.jobId);
      project(this.db, a.kind, a.event, a.context, a.ts);
      return Number(info.lastInsertRowid);
    });
    try {
      return tx.immediate();
    } catch (err) {
      // The disk filled up under the job: what it does next (record its failure) must still be
      // on disk before it takes effect, so the reserve is given up for it.
      if (isDiskFull(err) && this.onDiskFull?.() === true) return tx.immediate();
      throw err;
    }
  };

  /**
   * The latest progress, for other processes' views; best effort (a full disk skips it). The
   * engine writes it without an fsync (progressDb): four a second, each queued behind the
   * download's own writes, took ~25 ms apiece of the main thread, ~120 ms of a 400 MiB install.
   */
  setProgress(jobId: string, progress: unknown): void {
    try {
      this.progressDb.prepare('UPDATE jobs SET progress = ? WHERE id = ?').run(JSON.stringify(progress), jobId);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
    }
  }

  bumpRestores(jobId: string): number {
    const row = this.db.prepare('UPDATE jobs SET restores = restores + 1 WHERE id = ? RETURNING restores').get(jobId) as { restores: number };
    return row.restores;
  }

  job(id: string): JobRow | undefined {
    return this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
  }

  activeJobs(): JobRow[] {
    return this.db.prepare('SELECT * FROM jobs WHERE active = 1 ORDER BY started_at').all() as JobRow[];
  }

  activeJobFor(subject: string): JobRow | undefined {
    return this.db.prepare('SELECT * FROM jobs WHERE active = 1 AND subject = ? ORDER BY started_at LIMIT 1').get(subject) as JobRow | undefined;
  }

  allJobs(): JobRow[] {
    return this.db.prepare('SELECT * FROM jobs ORDER BY started_at, id').all() as JobRow[];
  }

  events(jobId?: string): EventRow[] {
    return (
      jobId === undefined
        ? this.db.prepare('SELECT * FROM events ORDER BY seq').all()
        : this.db.prepare('SELECT * FROM events WHERE job_id = ? ORDER BY seq').all(jobId)
    ) as EventRow[];
  }
}
