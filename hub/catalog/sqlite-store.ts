// The catalog in SQLite (better-sqlite3) at <storage>/hub.db: the embedded default. Migrations
// are counted by PRAGMA user_version. Reads and single writes run synchronously inside the async
// methods (so a caller that does not await still finds its write done); a publish, whose
// transaction spans the rename of its files, holds the database's write lock on a second
// connection, and this process's other writes wait for it on an in-process gate rather than in
// SQLite's busy handler (which would block the event loop the publish needs to finish). Hubs in
// other processes sharing the file wait in the busy handler (up to 5 s) for the few
// milliseconds a publish holds the lock.
import Database from 'better-sqlite3';
import path from 'node:path';
import {
  keyStatementRowSchema,
  parseRows,
  releaseRowSchema,
  releaseValues,
  RELEASE_COLUMNS,
  sortReleases,
  storedDocumentSchema,
  totalSchema,
  checkRollout,
  usageRowSchema,
  type CatalogStore,
  type KeyStatementRow,
  type NewRelease,
  type ReleaseKind,
  type ReleaseRow,
  type StoredDocument,
  type UsageRow,
} from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS releases (
  kind TEXT NOT NULL CHECK (kind IN ('service', 'model')),
  id TEXT NOT NULL,
  version TEXT NOT NULL,
  platform TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  manifest TEXT NOT NULL,
  key_id TEXT NOT NULL,
  stable INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  published_at TEXT NOT NULL,
  PRIMARY KEY (kind, id, version, platform)
);
CREATE TABLE IF NOT EXISTS model_usage (
  model_id TEXT PRIMARY KEY,
  request_count INTEGER NOT NULL
);
`;

/**
 * Migrations after the base schema, in order; PRAGMA user_version counts the ones applied. Each
 * runs once, in the same IMMEDIATE transaction as the version bump, so a hub.db written by an
 * older hub gains the new tables with its rows untouched, and hubs sharing one catalog that
 * start together apply each step exactly once.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  // 1: unmet demand — MODEL_NOT_AVAILABLE answers reported by nodes, counted per model.
  `CREATE TABLE IF NOT EXISTS model_unavailable (
     model_id TEXT PRIMARY KEY,
     unavailable_count INTEGER NOT NULL,
     last_reported_at TEXT NOT NULL
   );`,
  // 2: signed metadata (SPEC §11) — the snapshot serial, the publisher's delegation of the
  // hub's metadata key, and the key rotation and revocation statements the hub serves.
  `CREATE TABLE IF NOT EXISTS metadata_state (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     serial INTEGER NOT NULL,
     content_sha256 TEXT NOT NULL
   );
   CREATE TABLE IF NOT EXISTS metadata_docs (
     name TEXT PRIMARY KEY,
     text TEXT NOT NULL,
     signature TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE IF NOT EXISTS key_statements (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     kind TEXT NOT NULL CHECK (kind IN ('rotation', 'revocation')),
     text TEXT NOT NULL UNIQUE,
     signature TEXT NOT NULL,
     created_at TEXT NOT NULL
   );`,
  // 3: staged rollout (SPEC §12) — the share of nodes a release is offered to; 100 % unless set.
  `ALTER TABLE releases ADD COLUMN rollout INTEGER NOT NULL DEFAULT 100 CHECK (rollout BETWEEN 0 AND 100);`,
];

const INSERT_RELEASE = `INSERT OR IGNORE INTO releases (${RELEASE_COLUMNS.join(', ')}) VALUES (${RELEASE_COLUMNS.map(() => '?').join(', ')})`;
const SELECT_RELEASE = 'SELECT * FROM releases WHERE kind = ? AND id = ? AND version = ? AND platform = ?';

/** One holder at a time within this process; synchronous work runs at once when it is free. */
class Gate {
  private held = false;
  private readonly waiting: (() => void)[] = [];

  sync<T>(fn: () => T): Promise<T> {
    if (!this.held) {
      try {
        return Promise.resolve(fn());
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return this.exclusive(async () => fn());
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.held) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.held = true;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.held = false;
    }
  }
}

/**
 * One gate per catalog file in this process: two stores on one file (two hubs in one process)
 * then wait for each other here, never in SQLite's busy handler, which blocks the event loop
 * the holder needs to finish.
 */
const gates = new Map<string, Gate>();

function gateFor(file: string): Gate {
  const key = path.resolve(file);
  let gate = gates.get(key);
  if (gate === undefined) {
    gate = new Gate();
    gates.set(key, gate);
  }
  return gate;
}

function connect(file: string, mustExist: boolean): Database.Database {
  const db = new Database(file, { fileMustExist: mustExist });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  return db;
}

export interface SqliteOpenOptions {
  /** Refuse a file that does not exist instead of creating an empty catalog (admin commands). */
  mustExist?: boolean;
}

export class SqliteCatalogStore implements CatalogStore {
  readonly dialect = 'sqlite' as const;
  readonly location: string;
  private readonly db: Database.Database;
  /** The second connection: transactions that span async work (publish, withReleaseLock). */
  private writer: Database.Database | undefined;
  /** Bumped by this connection's own writes; PRAGMA data_version counts other connections'. */
  private localWrites = 0;
  private closed = false;
  private readonly gate: Gate;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string, options: SqliteOpenOptions = {}) {
    this.location = file;
    this.gate = gateFor(file);
    this.db = connect(file, options.mustExist === true);
    this.db.exec(SCHEMA);
    this.migrate();
  }

  private migrate(): void {
    const version = (): number => this.db.pragma('user_version', { simple: true }) as number;
    if (version() >= SQLITE_MIGRATIONS.length) return;
    this.db
      .transaction(() => {
        for (let v = version(); v < SQLITE_MIGRATIONS.length; v++) {
          this.db.exec(SQLITE_MIGRATIONS[v]!);
          this.db.pragma(`user_version = ${v + 1}`);
        }
      })
      .immediate();
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private writerDb(): Database.Database {
    if (this.closed) throw new Error('the catalog is closed');
    this.writer ??= connect(this.location, true);
    return this.writer;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.statements.clear();
    this.db.close();
    this.writer?.close();
  }

  async releases(kind: ReleaseKind, id?: string): Promise<ReleaseRow[]> {
    const rows = id === undefined ? this.stmt('SELECT * FROM releases WHERE kind = ?').all(kind) : this.stmt('SELECT * FROM releases WHERE kind = ? AND id = ?').all(kind, id);
    return sortReleases(parseRows(releaseRowSchema, rows, 'release'));
  }

  async release(kind: ReleaseKind, id: string, version: string, platform: string): Promise<ReleaseRow | undefined> {
    const row = this.stmt(SELECT_RELEASE).get(kind, id, version, platform);
    return row === undefined ? undefined : parseRows(releaseRowSchema, [row], 'release')[0];
  }

  insert(row: NewRelease): Promise<boolean> {
    return this.gate.sync(() => {
      const values = releaseValues(row);
      const changed = this.stmt(INSERT_RELEASE).run(...values).changes === 1;
      this.localWrites++;
      return changed;
    });
  }

  publish(row: NewRelease, place: () => Promise<void>): Promise<boolean> {
    return this.gate.exclusive(async () => {
      const values = releaseValues(row);
      const w = this.writerDb();
      w.exec('BEGIN IMMEDIATE');
      let committed = false;
      try {
        if (w.prepare(INSERT_RELEASE).run(...values).changes !== 1) return false;
        await place();
        w.exec('COMMIT');
        committed = true;
        return true;
      } finally {
        if (!committed && w.inTransaction) w.exec('ROLLBACK');
      }
    });
  }

  withReleaseLock<T>(kind: ReleaseKind, id: string, version: string, platform: string, fn: (row: ReleaseRow | undefined) => Promise<T>): Promise<T> {
    return this.gate.exclusive(async () => {
      const w = this.writerDb();
      // The database's write lock: no publish (here or in another process) is between its insert and its commit.
      w.exec('BEGIN IMMEDIATE');
      try {
        const row = w.prepare(SELECT_RELEASE).get(kind, id, version, platform);
        return await fn(row === undefined ? undefined : parseRows(releaseRowSchema, [row], 'release')[0]);
      } finally {
        if (w.inTransaction) w.exec('ROLLBACK');
      }
    });
  }

  markStable(kind: ReleaseKind, id: string, version: string): Promise<number> {
    return this.gate.sync(() => {
      this.localWrites++;
      return this.stmt('UPDATE releases SET stable = 1 WHERE kind = ? AND id = ? AND version = ?').run(kind, id, version).changes;
    });
  }

  setRollout(kind: ReleaseKind, id: string, version: string, percent: number): Promise<number> {
    return this.gate.sync(() => {
      checkRollout(percent);
      this.localWrites++;
      return this.stmt('UPDATE releases SET rollout = ? WHERE kind = ? AND id = ? AND version = ?').run(percent, kind, id, version).changes;
    });
  }

  async changeMark(): Promise<string> {
    return `${String(this.db.pragma('data_version', { simple: true }))}:${this.localWrites}`;
  }

  metadataSerial(contentSha256: string, nowMs: number = Date.now()): Promise<number> {
    return this.gate.sync(() =>
      this.db
        .transaction((): number => {
          const row = this.stmt('SELECT serial, content_sha256 FROM metadata_state WHERE id = 1').get() as { serial: number; content_sha256: string } | undefined;
          if (row !== undefined && row.content_sha256 === contentSha256) return row.serial;
          const serial = Math.max((row?.serial ?? 0) + 1, Math.floor(nowMs / 1000));
          this.stmt('INSERT INTO metadata_state (id, serial, content_sha256) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, content_sha256 = excluded.content_sha256').run(serial, contentSha256);
          return serial;
        })
        .immediate(),
    );
  }

  async metadataDoc(name: string): Promise<StoredDocument | undefined> {
    const row = this.stmt('SELECT text, signature FROM metadata_docs WHERE name = ?').get(name);
    return row === undefined ? undefined : parseRows(storedDocumentSchema, [row], 'metadata document')[0];
  }

  setMetadataDoc(name: string, doc: StoredDocument): Promise<void> {
    return this.gate.sync(() => {
      this.stmt('INSERT INTO metadata_docs (name, text, signature, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET text = excluded.text, signature = excluded.signature, updated_at = excluded.updated_at').run(
        name,
        doc.text,
        doc.signature,
        new Date().toISOString(),
      );
      this.localWrites++;
    });
  }

  async keyStatements(): Promise<KeyStatementRow[]> {
    return parseRows(keyStatementRowSchema, this.stmt('SELECT kind, text, signature FROM key_statements ORDER BY seq').all(), 'key statement');
  }

  addKeyStatement(row: KeyStatementRow): Promise<boolean> {
    return this.gate.sync(() => {
      const info = this.stmt('INSERT OR IGNORE INTO key_statements (kind, text, signature, created_at) VALUES (?, ?, ?, ?)').run(row.kind, row.text, row.signature, new Date().toISOString());
      this.localWrites++;
      return info.changes === 1;
    });
  }

  addUsage(modelId: string, count: number): Promise<number> {
    return this.gate.sync(() => {
      const row = this.stmt(
        `INSERT INTO model_usage (model_id, request_count) VALUES (?, ?)
         ON CONFLICT (model_id) DO UPDATE SET request_count = request_count + excluded.request_count
         RETURNING request_count AS total`,
      ).get(modelId, count);
      return parseRows(totalSchema, [row], 'usage')[0]!.total;
    });
  }

  addUnavailable(modelId: string, reportedAt: string): Promise<number> {
    return this.gate.sync(() => {
      const row = this.stmt(
        `INSERT INTO model_unavailable (model_id, unavailable_count, last_reported_at) VALUES (?, 1, ?)
         ON CONFLICT (model_id) DO UPDATE SET unavailable_count = unavailable_count + 1, last_reported_at = excluded.last_reported_at
         RETURNING unavailable_count AS total`,
      ).get(modelId, reportedAt);
      return parseRows(totalSchema, [row], 'unmet demand')[0]!.total;
    });
  }

  async ranking(limit: number): Promise<UsageRow[]> {
    const rows = this.stmt(
      `SELECT model_id, SUM(requests) AS request_count, SUM(unavailable) AS unavailable_count FROM (
         SELECT model_id, request_count AS requests, 0 AS unavailable FROM model_usage
         UNION ALL
         SELECT model_id, 0, unavailable_count FROM model_unavailable
       )
       GROUP BY model_id
       ORDER BY request_count + unavailable_count DESC, model_id ASC
       LIMIT ?`,
    ).all(limit);
    return parseRows(usageRowSchema, rows, 'demand');
  }
}
