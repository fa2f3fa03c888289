// One job per subject (a service or a model id) across threads and processes. A lease names
// its holder (pid, host, a random owner token) and carries a heartbeat; a lease whose process
// is dead or whose heartbeat is older than its ttl is taken over, so nothing waits forever on
// a process that crashed (huggingface_hub's top complaint).
import os from 'node:os';
import type { Db } from './db.js';

export interface LeaseRow {
  subject: string;
  job_id: string;
  owner: string;
  pid: number;
  host: string;
  started_at: number;
  heartbeat_at: number;
  ttl_ms: number;
}

export const DEFAULT_LEASE_TTL_MS = 15_000;

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A holder is alive if its heartbeat is fresh and, on this host, its process exists. */
export function leaseIsLive(lease: LeaseRow, now: number, host = os.hostname(), alive: (pid: number) => boolean = pidAlive): boolean {
  if (now - lease.heartbeat_at > lease.ttl_ms) return false;
  if (lease.host === host && !alive(lease.pid)) return false;
  return true;
}

export class Leases {
  readonly host = os.hostname();

  /** @internal engine.db is not part of the public API. */
  constructor(
    private readonly db: Db,
    readonly owner: string,
    private readonly alive: (pid: number) => boolean = pidAlive,
  ) {}

  get(subject: string): LeaseRow | undefined {
    return this.db.prepare('SELECT * FROM leases WHERE subject = ?').get(subject) as LeaseRow | undefined;
  }

  isLive(lease: LeaseRow, now: number): boolean {
    return leaseIsLive(lease, now, this.host, this.alive);
  }

  /** Inside a caller's transaction: take the subject for jobId if free or stale. */
  tryTake(subject: string, jobId: string, now: number, ttlMs = DEFAULT_LEASE_TTL_MS): boolean {
    const current = this.get(subject);
    if (current !== undefined && current.owner !== this.owner && this.isLive(current, now)) return false;
    this.db
      .prepare(
        `INSERT INTO leases (subject, job_id, owner, pid, host, started_at, heartbeat_at, ttl_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (subject) DO UPDATE SET job_id = excluded.job_id, owner = excluded.owner, pid = excluded.pid, host = excluded.host,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, ttl_ms = excluded.ttl_ms`,
      )
      .run(subject, jobId, this.owner, process.pid, this.host, now, now, ttlMs);
    return true;
  }

  /** False when the lease was taken over: the holder must stop. */
  heartbeat(subject: string, now: number): boolean {
    return this.db.prepare('UPDATE leases SET heartbeat_at = ? WHERE subject = ? AND owner = ?').run(now, subject, this.owner).changes === 1;
  }

  release(subject: string): void {
    this.db.prepare('DELETE FROM leases WHERE subject = ? AND owner = ?').run(subject, this.owner);
  }
}
