// The hub's catalog: every published release and the model demand counters (requests and
// unmet demand), in SQLite inside the storage directory. A release exists for the outside world
// exactly when its row exists; files on disk without a row are leftovers of an interrupted
// publish and are swept at start.
import Database from 'better-sqlite3';
import semver from 'semver';

export type ReleaseKind = 'service' | 'model';

export interface ReleaseRow {
  kind: ReleaseKind;
  id: string;
  version: string;
  /** '' for models. */
  platform: string;
  size_bytes: number;
  sha256: string;
  manifest: string;
  key_id: string;
  stable: number;
  created_at: string;
  published_at: string;
}

export interface UsageRow {
  model_id: string;
  /** Demand the scheduler reported (POST /api/model-usage). */
  request_count: number;
  /** Unmet demand nodes reported (POST /api/model-unavailable): MODEL_NOT_AVAILABLE answers. */
  unavailable_count: number;
}

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
const MIGRATIONS: readonly string[] = [
  // 1: unmet demand — MODEL_NOT_AVAILABLE answers reported by nodes, counted per model.
  `CREATE TABLE IF NOT EXISTS model_unavailable (
     model_id TEXT PRIMARY KEY,
     unavailable_count INTEGER NOT NULL,
     last_reported_at TEXT NOT NULL
   );`,
];

/** Newest first by SemVer precedence. */
export function byVersionDesc(a: { version: string }, b: { version: string }): number {
  return semver.rcompare(a.version, b.version);
}

export class Catalog {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.migrate();
  }

  private migrate(): void {
    const version = (): number => this.db.pragma('user_version', { simple: true }) as number;
    if (version() >= MIGRATIONS.length) return;
    this.db
      .transaction(() => {
        for (let v = version(); v < MIGRATIONS.length; v++) {
          this.db.exec(MIGRATIONS[v]!);
          this.db.pragma(`user_version = ${v + 1}`);
        }
      })
      .immediate();
  }

  close(): void {
    this.db.close();
  }

  releases(kind: ReleaseKind, id?: string): ReleaseRow[] {
    const rows =
      id === undefined
        ? this.db.prepare('SELECT * FROM releases WHERE kind = ?').all(kind)
        : this.db.prepare('SELECT * FROM releases WHERE kind = ? AND id = ?').all(kind, id);
    return (rows as ReleaseRow[]).sort((a, b) => a.id.localeCompare(b.id) || byVersionDesc(a, b) || a.platform.localeCompare(b.platform));
  }

  release(kind: ReleaseKind, id: string, version: string, platform: string): ReleaseRow | undefined {
    return this.db
      .prepare('SELECT * FROM releases WHERE kind = ? AND id = ? AND version = ? AND platform = ?')
      .get(kind, id, version, platform) as ReleaseRow | undefined;
  }

  /** Inserts a release; false when it already exists (releases are immutable). */
  insert(row: ReleaseRow): boolean {
    const info = this.db
      .prepare(
        `INSERT OR IGNORE INTO releases (kind, id, version, platform, size_bytes, sha256, manifest, key_id, stable, created_at, published_at)
         VALUES (@kind, @id, @version, @platform, @size_bytes, @sha256, @manifest, @key_id, @stable, @created_at, @published_at)`,
      )
      .run(row);
    return info.changes === 1;
  }

  /** Marks every platform of a version stable; the number of rows touched. */
  markStable(kind: ReleaseKind, id: string, version: string): number {
    return this.db.prepare('UPDATE releases SET stable = 1 WHERE kind = ? AND id = ? AND version = ?').run(kind, id, version).changes;
  }

  addUsage(modelId: string, count: number): number {
    const row = this.db
      .prepare(
        `INSERT INTO model_usage (model_id, request_count) VALUES (?, ?)
         ON CONFLICT (model_id) DO UPDATE SET request_count = request_count + excluded.request_count
         RETURNING request_count`,
      )
      .get(modelId, count) as { request_count: number };
    return row.request_count;
  }

  /** Counts one MODEL_NOT_AVAILABLE report; the model's total of them. */
  addUnavailable(modelId: string, reportedAt: string): number {
    const row = this.db
      .prepare(
        `INSERT INTO model_unavailable (model_id, unavailable_count, last_reported_at) VALUES (?, 1, ?)
         ON CONFLICT (model_id) DO UPDATE SET unavailable_count = unavailable_count + 1, last_reported_at = excluded.last_reported_at
         RETURNING unavailable_count`,
      )
      .get(modelId, reportedAt) as { unavailable_count: number };
    return row.unavailable_count;
  }

  /**
   * Demand, most first: requests the scheduler reported plus MODEL_NOT_AVAILABLE answers nodes
   * reported (unmet demand is demand too, seed 002 §7.6); ties by model id.
   */
  ranking(limit: number): UsageRow[] {
    return this.db
      .prepare(
        `SELECT model_id, SUM(requests) AS request_count, SUM(unavailable) AS unavailable_count FROM (
           SELECT model_id, request_count AS requests, 0 AS unavailable FROM model_usage
           UNION ALL
           SELECT model_id, 0, unavailable_count FROM model_unavailable
         )
         GROUP BY model_id
         ORDER BY request_count + unavailable_count DESC, model_id ASC
         LIMIT ?`,
      )
      .all(limit) as UsageRow[];
  }
}
