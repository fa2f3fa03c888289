// Opening engine.db so that losing it is survivable (SPEC §13). Before use the file is checked
// cheaply: opened, its schema read and `PRAGMA quick_check` run (linear in the file's pages,
// which for this database means milliseconds; it reads no index against its table, unlike
// integrity_check). A file that is not a database, or fails the check, is renamed
// `engine.db.corrupt-<timestamp>` with its -wal and -shm beside it — kept for inspection, never
// deleted — and a new database is created. A missing one is created. Either way the caller
// then rebuilds the registry from the version folders on disk (the rebuild job).
import Database from 'better-sqlite3';
import { existsSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import type { RebuildReason } from '../../machines/rebuild.js';
import { openDb, type Db } from './db.js';

export interface DbLoss {
  reason: RebuildReason;
  /** Where the unreadable file was moved; null when it was missing. */
  keptAs: string | null;
  /** What the check said. */
  problem: string;
}

/** SQLite's answers for "this file is not (or no longer) a database". */
const CORRUPTION_CODES = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT', 'SQLITE_CORRUPT_VTAB', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_INDEX']);

function isCorruption(err: unknown): boolean {
  return typeof err === 'object' && err !== null && CORRUPTION_CODES.has(String((err as { code?: unknown }).code));
}

/** null when the open database passes the check, else what is wrong with it. */
export function checkDb(db: Db): string | null {
  try {
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    const rows = db.pragma('quick_check') as { quick_check: string }[];
    const problems = rows.map((r) => r.quick_check).filter((r) => r !== 'ok');
    return problems.length === 0 ? null : problems.slice(0, 5).join('; ');
  } catch (err) {
    if (isCorruption(err)) return (err as Error).message;
    throw err;
  }
}

/**
 * Reads the file without changing it: 'missing', 'ok', or what is wrong. For commands that must
 * not write (list, jobs…) to decide whether the records must be rebuilt first.
 */
export function inspectDbFile(file: string): 'missing' | 'ok' | { problem: string } {
  if (!existsSync(file)) return 'missing';
  let db: Db | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const problem = checkDb(db);
    return problem === null ? 'ok' : { problem };
  } catch (err) {
    if (isCorruption(err)) return { problem: (err as Error).message };
    throw err;
  } finally {
    db?.close();
  }
}

function stamp(now: number): string {
  // 2025-01-31T12-00-00-000Z: sortable, and no ':' (not allowed in Windows file names).
  return new Date(now).toISOString().replace(/[:.]/g, '-');
}

/** Moves `file` and its -wal/-shm aside under `<file>.<tag>-<timestamp>`; answers the new name of `file`. */
function moveAside(file: string, tag: string, now: number, only?: { ino: number; dev: number }): string | null {
  const base = `${file}.${tag}-${stamp(now)}`;
  let kept: string | null = null;
  try {
    // Another process may have replaced the bad file with a new database since it was checked:
    // only the very file that failed is moved.
    if (only !== undefined) {
      const s = statSync(file);
      if (s.ino !== only.ino || s.dev !== only.dev) return null;
    }
    renameSync(file, base);
    kept = base;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  for (const suffix of ['-wal', '-shm']) {
    try {
      renameSync(`${file}${suffix}`, `${base}${suffix}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return kept;
}

/**
 * Opens engine.db for the engine, checked. `loss` says whether it was missing or unreadable
 * (and where an unreadable one was kept); the caller decides whether a rebuild is due.
 */
export function openCheckedDb(file: string, now: number): { db: Db; loss: DbLoss | null } {
  if (!existsSync(file)) {
    // A -wal without its database holds the lost file's last writes: kept aside for inspection
    // like a corrupt file, so nothing of it can mix with the new database.
    if (existsSync(`${file}-wal`) || existsSync(`${file}-shm`)) moveAside(file, 'orphan', now);
    return { db: openDb(file), loss: { reason: 'missing', keptAs: null, problem: `${path.basename(file)} does not exist` } };
  }
  const before = statSync(file);
  // Checked on a plain connection first, closed before anything is moved: an open handle would
  // keep Windows from renaming the file.
  const probe = new Database(file, { fileMustExist: true });
  let problem: string | null;
  try {
    probe.pragma('busy_timeout = 10000');
    problem = checkDb(probe);
  } finally {
    probe.close();
  }
  if (problem === null) return { db: openDb(file), loss: null };
  const keptAs = moveAside(file, 'corrupt', now, { ino: before.ino, dev: before.dev });
  return { db: openDb(file), loss: { reason: 'corrupt', keptAs, problem } };
}
