// The hub's catalog: the interface and its row types live in catalog/store.ts, the SQLite and
// PostgreSQL stores beside it; this module re-exports them for existing importers.
export * from './catalog/store.js';
export { openCatalog, parseCatalogUrl, CatalogUrlError, sqliteFileOf, type CatalogSpec } from './catalog/open.js';
export { SqliteCatalogStore } from './catalog/sqlite-store.js';
