// One job per subject (a service or a model id) across threads and processes. A lease names
// its holder (pid and its start time, host, a random owner token) and carries a heartbeat.
// Whether the holder lives:
// - on this host, its process decides: a live pid with the recorded start time is alive, even
//   when its heartbeat is old (a laptop that slept, a stopped process), and a dead pid or a pid
//   reused by another process is not — so nothing waits forever on a crash (huggingface_hub's
//   top complaint) and nothing takes a job from a holder that is merely slow;
// - on another host (a home on a shared disk), only the heartbeat can tell: older than the ttl
//   is dead. A holder that comes back after such a takeover finds it no longer holds the lease
//   and stops before its next step (JobRun.assertLease).
import os from 'node:os';
import { isAliveWithStartTime, processStartTime } from '../platform/adapter.js';
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
  /** NULL in leases written before start times were recorded. */
  pid_start: string | null;
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

/** This machine's name in leases; MODELHUB_HOST_ID names it when several share one home. */
export function hostId(env: NodeJS.ProcessEnv = process.env): string {
  const id = env.MODELHUB_HOST_ID;
  return id !== undefined && id !== '' ? id : os.hostname();
}

export function leaseIsLive(
  lease: LeaseRow,
  now: number,
  host = hostId(),
  alive: (pid: number, startTime: string | null) => boolean = (pid, start) => (start === null ? pidAlive(pid) : isAliveWithStartTime(pid, start)),
): boolean {
  if (lease.host === host) {
    if (!alive(lease.pid, lease.pid_start)) return false;
    // Our own process, identified by its start time: alive however old its heartbeat.
    if (lease.pid_start !== null) return true;
  }
  return now - lease.heartbeat_at <= lease.ttl_ms;
}

export class Leases {
  readonly host = hostId();
  private readonly pidStart = processStartTime(process.pid);
  private holdsQuery: ReturnType<Db['prepare']> | undefined;

  /** @internal engine.db is not part of the public API. */
  constructor(
    private readonly db: Db,
    readonly owner: string,
    private readonly alive?: (pid: number, startTime: string | null) => boolean,
  ) {}

  get(subject: string): LeaseRow | undefined {
    return this.db.prepare('SELECT * FROM leases WHERE subject = ?').get(subject) as LeaseRow | undefined;
  }

  isLive(lease: LeaseRow, now: number): boolean {
    return leaseIsLive(lease, now, this.host, this.alive);
  }

  /** Whether this owner still holds the subject's lease for the job. */
  holds(subject: string, jobId: string): boolean {
    // Asked before every write of a download (each MiB): prepared once.
    this.holdsQuery ??= this.db.prepare('SELECT owner, job_id FROM leases WHERE subject = ?');
    const row = this.holdsQuery.get(subject) as { owner: string; job_id: string } | undefined;
    return row !== undefined && row.owner === this.owner && row.job_id === jobId;
  }

  /** Inside a caller's transaction: take the subject for jobId if free or stale. */
  tryTake(subject: string, jobId: string, now: number, ttlMs = DEFAULT_LEASE_TTL_MS): boolean {
    const current = this.get(subject);
    if (current !== undefined && current.owner !== this.owner && this.isLive(current, now)) return false;
    this.db
      .prepare(
        `INSERT INTO leases (subject, job_id, owner, pid, host, started_at, heartbeat_at, ttl_ms, pid_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (subject) DO UPDATE SET job_id = excluded.job_id, owner = excluded.owner, pid = excluded.pid, host = excluded.host,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, ttl_ms = excluded.ttl_ms, pid_start = excluded.pid_start`,
      )
      .run(subject, jobId, this.owner, process.pid, this.host, now, now, ttlMs, this.pidStart);
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
