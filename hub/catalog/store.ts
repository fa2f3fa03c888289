// The hub's catalog behind one interface: every published release, the model demand counters,
// the signed-metadata serial and documents, and the key statements. Two stores implement it:
// SQLite in the storage folder (the embedded default, sqlite-store.ts) and PostgreSQL for hubs
// past one machine (pg-store.ts). A release exists for the outside world exactly when its row is
// committed; every hub reads the catalog on each request, so what one hub publishes the others
// serve at once.
import semver from 'semver';
import { z } from 'zod';
import { ModelhubError } from '../../src/errors.js';

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
  /** The share of nodes (0–100 %) a staged rollout offers this release to; 100 unless set. */
  rollout: number;
  created_at: string;
  published_at: string;
}

/** A release to insert: its rollout defaults to 100 %. */
export type NewRelease = Omit<ReleaseRow, 'rollout'> & { rollout?: number };

export interface UsageRow {
  model_id: string;
  /** Demand the scheduler reported (POST /api/model-usage). */
  request_count: number;
  /** Unmet demand nodes reported (POST /api/model-unavailable): MODEL_NOT_AVAILABLE answers. */
  unavailable_count: number;
}

export interface KeyStatementRow {
  kind: 'rotation' | 'revocation';
  text: string;
  signature: string;
}

export interface StoredDocument {
  text: string;
  signature: string;
}

export interface CatalogStore {
  /** 'sqlite' or 'postgres'. */
  readonly dialect: 'sqlite' | 'postgres';
  /** Where the catalog is, for messages: the SQLite file, or the PostgreSQL URL without its password. */
  readonly location: string;

  /** Releases of a kind (of one id), by id, then newest version first, then platform. */
  releases(kind: ReleaseKind, id?: string): Promise<ReleaseRow[]>;
  release(kind: ReleaseKind, id: string, version: string, platform: string): Promise<ReleaseRow | undefined>;
  /** Inserts a release; false when it already exists (releases are immutable). */
  insert(row: NewRelease): Promise<boolean>;
  /**
   * Publishes a release: inserts its row and runs `place` (which moves its files into place)
   * in one transaction, under the release's lock that every hub sharing the catalog honours
   * (see withReleaseLock). The insert decides: false, with `place` never run, when the release
   * exists; otherwise the row is committed only after `place` resolved, so no hub ever lists a
   * release whose files are not in place. When `place` throws, nothing is inserted. A process
   * killed before the commit leaves no row (files `place` moved stay, without a row: orphans).
   */
  publish(row: NewRelease, place: () => Promise<void>): Promise<boolean>;
  /**
   * Runs `fn` with the release's committed row (or undefined) while no publish of that release
   * can be in flight on any hub sharing the catalog: what the orphans command uses to tell a
   * release folder whose row is missing from one whose publish has not committed yet.
   */
  withReleaseLock<T>(kind: ReleaseKind, id: string, version: string, platform: string, fn: (row: ReleaseRow | undefined) => Promise<T>): Promise<T>;
  /** Marks every platform of a version stable; the number of rows touched. */
  markStable(kind: ReleaseKind, id: string, version: string): Promise<number>;
  /** Sets the rollout share (0–100) of every platform of a version; the number of rows touched. */
  setRollout(kind: ReleaseKind, id: string, version: string, percent: number): Promise<number>;

  /**
   * Changes whenever releases, metadata documents or key statements may have changed, by this
   * hub or another one sharing the catalog. Cheap: caches are keyed on it.
   */
  changeMark(): Promise<string>;
  /**
   * The snapshot serial for this content: unchanged while the content is, higher when it
   * changed (atomically, so hubs sharing the catalog agree). A new serial is at least the
   * current Unix time in seconds, so a catalog restored from a backup never hands nodes a serial
   * lower than one they already saw.
   */
  metadataSerial(contentSha256: string, nowMs?: number): Promise<number>;
  metadataDoc(name: string): Promise<StoredDocument | undefined>;
  setMetadataDoc(name: string, doc: StoredDocument): Promise<void>;
  /** In the order they were added. */
  keyStatements(): Promise<KeyStatementRow[]>;
  /** False when the same statement is already there. */
  addKeyStatement(row: KeyStatementRow): Promise<boolean>;

  /** Adds reported demand; the model's total. */
  addUsage(modelId: string, count: number): Promise<number>;
  /** Counts one MODEL_NOT_AVAILABLE report; the model's total of them. */
  addUnavailable(modelId: string, reportedAt: string): Promise<number>;
  /**
   * Demand, most first: requests the scheduler reported plus MODEL_NOT_AVAILABLE answers nodes
   * reported (unmet demand is demand too, seed 002 §7.6); ties by model id.
   */
  ranking(limit: number): Promise<UsageRow[]>;

  /** Idempotent. */
  close(): Promise<void>;
}

/** Newest first by SemVer precedence. */
export function byVersionDesc(a: { version: string }, b: { version: string }): number {
  return semver.rcompare(a.version, b.version);
}

/** The order releases() answers in. */
export function sortReleases(rows: ReleaseRow[]): ReleaseRow[] {
  return rows.sort((a, b) => a.id.localeCompare(b.id) || byVersionDesc(a, b) || a.platform.localeCompare(b.platform));
}

// Rows as the databases hand them over (PostgreSQL's BIGINT arrives as a string), checked.
const count = z.coerce.number().int().nonnegative();

export const releaseRowSchema = z.object({
  kind: z.enum(['service', 'model']),
  id: z.string(),
  version: z.string(),
  platform: z.string(),
  size_bytes: count,
  sha256: z.string(),
  manifest: z.string(),
  key_id: z.string(),
  stable: count,
  rollout: count,
  created_at: z.string(),
  published_at: z.string(),
});

export const usageRowSchema = z.object({ model_id: z.string(), request_count: count, unavailable_count: count });
export const keyStatementRowSchema = z.object({ kind: z.enum(['rotation', 'revocation']), text: z.string(), signature: z.string() });
export const storedDocumentSchema = z.object({ text: z.string(), signature: z.string() });
export const totalSchema = z.object({ total: count });

export function parseRows<T>(schema: z.ZodType<T>, rows: readonly unknown[], what: string): T[] {
  return rows.map((row) => {
    const r = schema.safeParse(row);
    if (!r.success) throw new Error(`the catalog holds a malformed ${what} row: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return r.data;
  });
}

export function checkRollout(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 100) {
    throw new ModelhubError('INVALID_REQUEST', `a rollout is an integer percentage from 0 to 100, not ${percent}`);
  }
}

/** The values of a release row for an insert, in column order. */
export const RELEASE_COLUMNS = ['kind', 'id', 'version', 'platform', 'size_bytes', 'sha256', 'manifest', 'key_id', 'stable', 'rollout', 'created_at', 'published_at'] as const;

export function releaseValues(row: NewRelease): (string | number)[] {
  const rollout = row.rollout ?? 100;
  checkRollout(rollout);
  const full: ReleaseRow = { ...row, rollout };
  return RELEASE_COLUMNS.map((c) => full[c]);
}
