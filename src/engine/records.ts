// When engine.db is lost (SPEC §13): deciding that the registry must be rebuilt, and saying
// afterwards that it was. The rebuild itself is a job (machines/rebuild.ts), created here and
// run by the next recover(); the notice is read from that job, never invented from the disk.
import Database from 'better-sqlite3';
import { lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import type { RebuildInput, RebuildOutput } from '../../machines/rebuild.js';
import type { RecordsNotice } from '../client/types.js';
import type { Db } from './db.js';
import { inspectDbFile, type DbLoss } from './db-open.js';
import type { Home } from './home.js';
import type { JobsStore } from './jobs-store.js';

/** The lease subject of the rebuild: one at a time, whatever it covers. */
export const RECORDS_SUBJECT = 'records';
export const REBUILD_TARGET = 'engine.db';

/** Whether the home holds a version folder: only then is a lost database worth a rebuild. */
export function hasVersionFoldersSync(home: Home): boolean {
  for (const parent of [home.services, home.models]) {
    let ids: string[];
    try {
      ids = readdirSync(parent);
    } catch {
      continue;
    }
    for (const id of ids) {
      let names: string[];
      try {
        names = readdirSync(path.join(parent, id));
      } catch {
        continue;
      }
      for (const name of names) {
        if (semver.valid(name) !== name) continue;
        try {
          if (lstatSync(path.join(parent, id, name)).isDirectory()) return true;
        } catch {
          // gone meanwhile
        }
      }
    }
  }
  return false;
}

/**
 * @internal engine.db is not part of the public API.
 * Creates the rebuild job for a lost database — once: only in a database with no job yet (a
 * second process that also saw the loss finds the first one's job and leaves it be). Answers
 * the job id, or null when nothing is to be rebuilt.
 */
export function planRebuild(db: Db, jobs: JobsStore, home: Home, loss: DbLoss | null, now: number, newId: () => string): string | null {
  if (loss === null) return null;
  // A home without engine.db and without versions is simply new; an unreadable database always
  // lost something (its job history at least), so its rebuild is recorded even with no versions.
  if (loss.reason === 'missing' && !hasVersionFoldersSync(home)) return null;
  return db
    .transaction((): string | null => {
      const any = db.prepare('SELECT 1 FROM jobs LIMIT 1').get();
      if (any !== undefined) return null;
      const jobId = newId();
      const input: RebuildInput = { jobId, reason: loss.reason, keptAs: loss.keptAs, detectedAt: now };
      jobs.createJob({ id: jobId, kind: 'rebuild', subject: RECORDS_SUBJECT, requested: 'rebuild', target: REBUILD_TARGET, input, startedAt: now });
      return jobId;
    })
    .immediate();
}

/**
 * Read-only: whether the records must be rebuilt before a command can answer from them —
 * engine.db is missing beside version folders, or unreadable, or a rebuild was interrupted.
 */
export function recordsNeedRebuild(home: Home): boolean {
  const state = inspectDbFile(home.db);
  if (state === 'missing') return hasVersionFoldersSync(home);
  if (state !== 'ok') return true;
  const db = new Database(home.db, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 10000');
    return db.prepare("SELECT 1 FROM jobs WHERE kind = 'rebuild' AND active = 1 LIMIT 1").get() !== undefined;
  } catch {
    // A database of an older version without the table cannot hold a rebuild.
    return false;
  } finally {
    db.close();
  }
}

// Declared with the other public views, so the package's types never reach better-sqlite3's.
export type { RecordsNotice } from '../client/types.js';

/** The latest rebuild of this database's records, or null when they were never rebuilt. */
export function recordsNotice(jobs: JobsStore): RecordsNotice | null {
  const row = jobs.allJobs().filter((j) => j.kind === 'rebuild').pop();
  if (row === undefined) return null;
  const input = JSON.parse(row.input) as RebuildInput;
  const out = row.output === null ? null : (JSON.parse(row.output) as RebuildOutput | null);
  return {
    job_id: row.id,
    rebuilt_at: new Date(input.detectedAt).toISOString(),
    reason: input.reason,
    kept_as: input.keptAs,
    state: row.state,
    intact: out?.intact.length ?? null,
    quarantined: out?.quarantined.length ?? null,
    unproven: out?.unproven.length ?? null,
  };
}
