// Which catalog a hub uses (`--db`): SQLite at <storage>/hub.db unless a PostgreSQL URL is given.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { CatalogStore } from './store.js';

export type CatalogSpec = { dialect: 'sqlite'; file: string } | { dialect: 'postgres'; url: string };

/** A `--db` value this hub would not honour; the message says what it accepts. */
export class CatalogUrlError extends Error {}

export function sqliteFileOf(storage: string): string {
  return path.join(path.resolve(storage), 'hub.db');
}

/**
 * `postgres://USER@HOST:PORT/DB` (or postgresql://) selects PostgreSQL; `sqlite:PATH` is
 * accepted only when PATH is the storage folder's hub.db (the default, also without --db);
 * anything else is refused rather than silently ignored.
 */
export function parseCatalogUrl(db: string | undefined, storage: string): CatalogSpec {
  const file = sqliteFileOf(storage);
  const accepted = `postgres://USER@HOST:PORT/DB for PostgreSQL, or sqlite:${file} (the default)`;
  if (db === undefined) return { dialect: 'sqlite', file };
  if (/^postgres(ql)?:\/\//i.test(db)) {
    let u: URL;
    try {
      u = new URL(db);
    } catch {
      throw new CatalogUrlError(`--db: not a valid PostgreSQL URL; expected ${accepted}`);
    }
    if (u.pathname.replace(/^\//, '') === '') throw new CatalogUrlError(`--db: the PostgreSQL URL names no database; expected ${accepted}`);
    return { dialect: 'postgres', url: db };
  }
  if (!db.startsWith('sqlite:')) {
    throw new CatalogUrlError(`--db ${db.split(':')[0] ?? ''}: not a catalog this hub supports; expected ${accepted}`);
  }
  const named = db.slice('sqlite:'.length);
  if (named === '' || named.includes('?') || named.includes('#') || path.resolve(named) !== file) {
    throw new CatalogUrlError(`--db ${db}: the SQLite catalog is always the file ${file} (sqlite:${file}); another location is not supported — omit --db, or give ${accepted}`);
  }
  return { dialect: 'sqlite', file };
}

export interface OpenCatalogOptions {
  /** Refuse a catalog that does not exist yet instead of creating it (admin commands). */
  mustExist?: boolean;
}

/** Opens the catalog and applies the migrations it lacks. Drivers load on use. */
export async function openCatalog(spec: CatalogSpec, options: OpenCatalogOptions = {}): Promise<CatalogStore> {
  if (spec.dialect === 'postgres') {
    const { PgCatalogStore } = await import('./pg-store.js');
    return PgCatalogStore.open(spec.url, { mustExist: options.mustExist });
  }
  if (options.mustExist === true && !existsSync(spec.file)) {
    throw new CatalogUrlError(`there is no catalog at ${spec.file}: is --storage the hub's storage folder, or do its hubs use --db postgres://…?`);
  }
  const { SqliteCatalogStore } = await import('./sqlite-store.js');
  return new SqliteCatalogStore(spec.file, { mustExist: options.mustExist });
}
