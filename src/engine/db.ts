// engine.db: the event log, the jobs, the registry and the leases (SPEC §7: "the truth").
import Database from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

export type Db = Database.Database;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  requested TEXT NOT NULL,
  target TEXT NOT NULL,
  state TEXT NOT NULL,
  active INTEGER NOT NULL,
  input TEXT NOT NULL,
  snapshot TEXT NOT NULL,
  restores INTEGER NOT NULL DEFAULT 0,
  progress TEXT,
  output TEXT,
  started_at INTEGER NOT NULL,
  ended_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (active, subject);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS leases (
  subject TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  ttl_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
  id TEXT PRIMARY KEY,
  current TEXT,
  previous TEXT,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_versions (
  id TEXT NOT NULL,
  version TEXT NOT NULL,
  manifest TEXT NOT NULL,
  key_id TEXT,
  installed_at INTEGER NOT NULL,
  PRIMARY KEY (id, version)
);
CREATE TABLE IF NOT EXISTS runtime (
  id TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  pid INTEGER NOT NULL,
  port INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  log TEXT NOT NULL,
  start_time TEXT
);
CREATE TABLE IF NOT EXISTS metadata_seen (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  serial INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  expires TEXT NOT NULL,
  verified_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS version_floor (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  version TEXT NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS job_controls (
  job_id TEXT PRIMARY KEY,
  action TEXT NOT NULL,
  requested_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
  id TEXT NOT NULL,
  version TEXT NOT NULL,
  manifest TEXT NOT NULL,
  installed_at INTEGER NOT NULL,
  PRIMARY KEY (id, version)
);
CREATE TABLE IF NOT EXISTS version_checks (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  version TEXT NOT NULL,
  checked_at INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  result TEXT NOT NULL,
  PRIMARY KEY (kind, id, version)
);
`;

/**
 * Columns added after a table was first shipped: CREATE TABLE IF NOT EXISTS leaves an existing
 * table as it is, so openDb adds these to a database made by an older version.
 */
const ADDED_COLUMNS: readonly { table: string; column: string; decl: string }[] = [
  // The supervisor's process start time, compared before signalling its pid (NULL: unknown).
  { table: 'runtime', column: 'start_time', decl: 'TEXT' },
  // The lease holder's process start time: on the same host a live pid with this start time is
  // alive whatever its heartbeat (a laptop that slept, a stopped process).
  { table: 'leases', column: 'pid_start', decl: 'TEXT' },
];

function hasColumn(db: Db, table: string, column: string): boolean {
  return (db.pragma(`table_info(${table})`) as { name: string }[]).some((c) => c.name === column);
}

/** ALTER TABLE … ADD COLUMN for each missing column, checked again under a write lock (another process may be migrating too). */
function migrate(db: Db): void {
  const missing = ADDED_COLUMNS.filter((c) => !hasColumn(db, c.table, c.column));
  if (missing.length === 0) return;
  db.transaction(() => {
    for (const c of missing) if (!hasColumn(db, c.table, c.column)) db.exec(`ALTER TABLE ${c.table} ADD COLUMN ${c.column} ${c.decl}`);
  }).immediate();
}

export function openDb(file: string): Db {
  mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 10000');
  db.exec(SCHEMA);
  migrate(db);
  return db;
}

/**
 * A second connection to an open engine.db for what may be lost in a power cut but must not
 * cost an fsync: synchronous = NORMAL, whose commits in WAL mode are not synced (the event
 * log's connection stays FULL, and its next commit syncs these too). Never a corrupt database,
 * at worst the last few of these writes gone. The same connection for an in-memory db.
 */
export function openUnsyncedConnection(db: Db): Db {
  if (db.memory) return db;
  const fast = new Database(db.name, { fileMustExist: true });
  try {
    fast.pragma('busy_timeout = 10000');
    fast.pragma('synchronous = NORMAL');
    return fast;
  } catch (err) {
    fast.close();
    throw err;
  }
}

/** For read-only commands: never creates or migrates anything; null when there is no db. */
export function openDbReadOnly(file: string): Db | null {
  if (!existsSync(file)) return null;
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 10000');
  return db;
}
