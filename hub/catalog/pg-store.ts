// The catalog on PostgreSQL (`hub serve --db postgres://USER@HOST:PORT/DB`): one catalog for
// several hubs. Migrations are the numbered SQL files in migrations/pg/, applied at start in
// one transaction under an advisory lock and recorded in modelhub_migrations, so hubs starting
// together apply each exactly once. A publish holds an advisory lock for its release from its
// insert to its commit; other hubs notice changes through catalog_changes (001_init.sql).
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { z } from 'zod';
import {
  checkRollout,
  keyStatementRowSchema,
  parseRows,
  releaseRowSchema,
  releaseValues,
  RELEASE_COLUMNS,
  sortReleases,
  storedDocumentSchema,
  totalSchema,
  usageRowSchema,
  type CatalogStore,
  type KeyStatementRow,
  type NewRelease,
  type ReleaseKind,
  type ReleaseRow,
  type StoredDocument,
  type UsageRow,
} from './store.js';

/** First key of the per-release advisory locks (the second is a hash of the release). */
const RELEASE_LOCK_SPACE = 0x6d680001;
const MIGRATIONS_TABLE = 'modelhub_migrations';

const INSERT_RELEASE = `INSERT INTO releases (${RELEASE_COLUMNS.join(', ')}) VALUES (${RELEASE_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT DO NOTHING`;
const SELECT_RELEASE = 'SELECT * FROM releases WHERE kind = $1 AND id = $2 AND version = $3 AND platform = $4';
const LOCK_RELEASE = 'SELECT pg_advisory_xact_lock($1::integer, hashtext($2))';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Where the SQL files are: beside this module when it runs from the sources (hub/catalog/), and
 * from dist/hub/catalog/ or the CLI's bundle (dist/cli/) the same folder of the package (in the
 * package's `files`).
 */
export function migrationsDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.join(here, 'migrations', 'pg'),
    path.resolve(here, '..', '..', '..', 'hub', 'catalog', 'migrations', 'pg'),
    path.resolve(here, '..', '..', 'hub', 'catalog', 'migrations', 'pg'),
  ];
  const found = candidates.find((dir) => existsSync(dir));
  if (found === undefined) throw new Error(`the PostgreSQL migrations are missing (looked in ${candidates.join(' and ')})`);
  return found;
}

/** The numbered migrations, in order: NNN_name.sql. */
export async function loadMigrations(dir: string = migrationsDir()): Promise<Migration[]> {
  const out: Migration[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const m = /^(\d+)_[A-Za-z0-9_-]+\.sql$/.exec(name);
    if (m === null) continue;
    out.push({ version: Number(m[1]), name, sql: await readFile(path.join(dir, name), 'utf8') });
  }
  out.sort((a, b) => a.version - b.version);
  out.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`PostgreSQL migrations must be numbered 1, 2, 3, … without gaps; ${m.name} is number ${i + 1}`);
  });
  return out;
}

/** The URL as it may be shown: without its password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}

const serialRowSchema = z.object({ serial: z.coerce.number().int().nonnegative(), content_sha256: z.string() });
const markRowSchema = z.object({ seq: z.union([z.string(), z.number()]) });
const versionRowSchema = z.object({ version: z.coerce.number().int() });
const presentRowSchema = z.object({ present: z.boolean() });

export interface PgOpenOptions {
  /** Connections per hub (default 10). */
  maxConnections?: number;
  /** Refuse a database the hub never initialised instead of creating the schema (admin commands). */
  mustExist?: boolean;
  /** Where idle-connection errors go (default stderr). */
  log?: (line: string) => void;
}

export class PgCatalogStore implements CatalogStore {
  readonly dialect = 'postgres' as const;
  readonly location: string;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    url: string,
  ) {
    this.location = redactUrl(url);
  }

  /** Connects and applies the migrations this database lacks. */
  static async open(url: string, options: PgOpenOptions = {}): Promise<PgCatalogStore> {
    const pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 10 });
    const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    // An idle connection the server dropped must not take the hub down; the next query reconnects.
    pool.on('error', (err) => log(`hub: catalog connection lost (${redactUrl(url)}): ${err.message}`));
    const store = new PgCatalogStore(pool, url);
    try {
      await store.migrate(await loadMigrations(), options.mustExist === true);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return store;
  }

  /** The migration numbers recorded in this database, in order. */
  async appliedMigrations(): Promise<number[]> {
    const r = await this.pool.query(`SELECT version FROM ${MIGRATIONS_TABLE} ORDER BY version`);
    return parseRows(versionRowSchema, r.rows, 'migration').map((m) => m.version);
  }

  private async migrate(migrations: readonly Migration[], mustExist: boolean): Promise<void> {
    await this.tx(async (c) => {
      // One hub at a time: the others wait here, then find the steps applied.
      await c.query("SELECT pg_advisory_xact_lock(hashtext('modelhub catalog migrations')::bigint)");
      const exists = await c.query('SELECT to_regclass($1) IS NOT NULL AS present', [MIGRATIONS_TABLE]);
      if (parseRows(presentRowSchema, exists.rows, 'catalog check')[0]?.present !== true) {
        if (mustExist) throw new Error(`${this.location} holds no modelhub catalog (no ${MIGRATIONS_TABLE} table): is --db the hubs' catalog?`);
        await c.query(`CREATE TABLE ${MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
      }
      const applied = new Set(parseRows(versionRowSchema, (await c.query(`SELECT version FROM ${MIGRATIONS_TABLE}`)).rows, 'migration').map((m) => m.version));
      const newest = Math.max(0, ...applied);
      if (newest > migrations.length) {
        throw new Error(`the catalog at ${this.location} has migration ${newest}, newer than this hub knows (${migrations.length}): run the newer modelhub`);
      }
      for (const m of migrations) {
        if (applied.has(m.version)) continue;
        await c.query(m.sql);
        await c.query(`INSERT INTO ${MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      }
    });
  }

  /** BEGIN … COMMIT on one connection; ROLLBACK when `fn` throws. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await c.query('BEGIN');
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (err) {
      await c.query('ROLLBACK').catch((e: unknown) => {
        broken = e instanceof Error ? e : new Error(String(e));
      });
      throw err;
    } finally {
      c.release(broken);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  async releases(kind: ReleaseKind, id?: string): Promise<ReleaseRow[]> {
    const r = id === undefined ? await this.pool.query('SELECT * FROM releases WHERE kind = $1', [kind]) : await this.pool.query('SELECT * FROM releases WHERE kind = $1 AND id = $2', [kind, id]);
    return sortReleases(parseRows(releaseRowSchema, r.rows, 'release'));
  }

  async release(kind: ReleaseKind, id: string, version: string, platform: string): Promise<ReleaseRow | undefined> {
    const r = await this.pool.query(SELECT_RELEASE, [kind, id, version, platform]);
    return parseRows(releaseRowSchema, r.rows, 'release')[0];
  }

  async insert(row: NewRelease): Promise<boolean> {
    const r = await this.pool.query(INSERT_RELEASE, releaseValues(row));
    return r.rowCount === 1;
  }

  async publish(row: NewRelease, place: () => Promise<void>): Promise<boolean> {
    const values = releaseValues(row);
    return this.tx(async (c) => {
      await c.query(LOCK_RELEASE, [RELEASE_LOCK_SPACE, lockName(row.kind, row.id, row.version, row.platform)]);
      // The insert decides. A concurrent publish of the same release waits on the lock above and
      // then finds the row; an uncommitted row is seen by no reader.
      if ((await c.query(INSERT_RELEASE, values)).rowCount !== 1) return false;
      await place();
      return true;
    });
  }

  async withReleaseLock<T>(kind: ReleaseKind, id: string, version: string, platform: string, fn: (row: ReleaseRow | undefined) => Promise<T>): Promise<T> {
    return this.tx(async (c) => {
      await c.query(LOCK_RELEASE, [RELEASE_LOCK_SPACE, lockName(kind, id, version, platform)]);
      const r = await c.query(SELECT_RELEASE, [kind, id, version, platform]);
      return fn(parseRows(releaseRowSchema, r.rows, 'release')[0]);
    });
  }

  async markStable(kind: ReleaseKind, id: string, version: string): Promise<number> {
    const r = await this.pool.query('UPDATE releases SET stable = 1 WHERE kind = $1 AND id = $2 AND version = $3', [kind, id, version]);
    return r.rowCount ?? 0;
  }

  async setRollout(kind: ReleaseKind, id: string, version: string, percent: number): Promise<number> {
    checkRollout(percent);
    const r = await this.pool.query('UPDATE releases SET rollout = $1 WHERE kind = $2 AND id = $3 AND version = $4', [percent, kind, id, version]);
    return r.rowCount ?? 0;
  }

  async changeMark(): Promise<string> {
    const r = await this.pool.query('SELECT seq FROM catalog_changes WHERE id = 1');
    const row = parseRows(markRowSchema, r.rows, 'change counter')[0];
    if (row === undefined) throw new Error('the catalog has no change counter row');
    return String(row.seq);
  }

  async metadataSerial(contentSha256: string, nowMs: number = Date.now()): Promise<number> {
    return this.tx(async (c) => {
      const r = await c.query('SELECT serial, content_sha256 FROM metadata_state WHERE id = 1 FOR UPDATE');
      const row = parseRows(serialRowSchema, r.rows, 'metadata state')[0];
      if (row === undefined) throw new Error('the catalog has no metadata_state row');
      if (row.content_sha256 === contentSha256) return row.serial;
      const serial = Math.max(row.serial + 1, Math.floor(nowMs / 1000));
      await c.query('UPDATE metadata_state SET serial = $1, content_sha256 = $2 WHERE id = 1', [serial, contentSha256]);
      return serial;
    });
  }

  async metadataDoc(name: string): Promise<StoredDocument | undefined> {
    const r = await this.pool.query('SELECT text, signature FROM metadata_docs WHERE name = $1', [name]);
    return parseRows(storedDocumentSchema, r.rows, 'metadata document')[0];
  }

  async setMetadataDoc(name: string, doc: StoredDocument): Promise<void> {
    await this.pool.query(
      `INSERT INTO metadata_docs (name, text, signature, updated_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (name) DO UPDATE SET text = excluded.text, signature = excluded.signature, updated_at = excluded.updated_at`,
      [name, doc.text, doc.signature, new Date().toISOString()],
    );
  }

  async keyStatements(): Promise<KeyStatementRow[]> {
    const r = await this.pool.query('SELECT kind, text, signature FROM key_statements ORDER BY seq');
    return parseRows(keyStatementRowSchema, r.rows, 'key statement');
  }

  async addKeyStatement(row: KeyStatementRow): Promise<boolean> {
    const r = await this.pool.query('INSERT INTO key_statements (kind, text, signature, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (text) DO NOTHING', [
      row.kind,
      row.text,
      row.signature,
      new Date().toISOString(),
    ]);
    return r.rowCount === 1;
  }

  async addUsage(modelId: string, count: number): Promise<number> {
    const r = await this.pool.query(
      `INSERT INTO model_usage (model_id, request_count) VALUES ($1, $2)
       ON CONFLICT (model_id) DO UPDATE SET request_count = model_usage.request_count + excluded.request_count
       RETURNING request_count AS total`,
      [modelId, count],
    );
    return parseRows(totalSchema, r.rows, 'usage')[0]!.total;
  }

  async addUnavailable(modelId: string, reportedAt: string): Promise<number> {
    const r = await this.pool.query(
      `INSERT INTO model_unavailable (model_id, unavailable_count, last_reported_at) VALUES ($1, 1, $2)
       ON CONFLICT (model_id) DO UPDATE SET unavailable_count = model_unavailable.unavailable_count + 1, last_reported_at = excluded.last_reported_at
       RETURNING unavailable_count AS total`,
      [modelId, reportedAt],
    );
    return parseRows(totalSchema, r.rows, 'unmet demand')[0]!.total;
  }

  async ranking(limit: number): Promise<UsageRow[]> {
    // Ties by model id in byte order, as SQLite orders them, whatever the database's collation.
    const r = await this.pool.query(
      `SELECT model_id, SUM(requests) AS request_count, SUM(unavailable) AS unavailable_count FROM (
         SELECT model_id, request_count AS requests, 0::bigint AS unavailable FROM model_usage
         UNION ALL
         SELECT model_id, 0::bigint, unavailable_count FROM model_unavailable
       ) AS demand
       GROUP BY model_id
       ORDER BY SUM(requests) + SUM(unavailable) DESC, model_id COLLATE "C" ASC
       LIMIT $1`,
      [limit],
    );
    return parseRows(usageRowSchema, r.rows, 'demand');
  }
}

function lockName(kind: ReleaseKind, id: string, version: string, platform: string): string {
  return `${kind}/${id}/${version}/${platform}`;
}
