-- The catalog on PostgreSQL (SPEC §12): what the SQLite catalog holds after its migrations 1 and
-- 2, plus a change counter every hub sharing the catalog reads to notice another hub's writes.
-- Applied once, at a hub's start, inside a transaction under an advisory lock (pg-store.ts).

CREATE TABLE releases (
  kind TEXT NOT NULL CHECK (kind IN ('service', 'model')),
  id TEXT NOT NULL,
  version TEXT NOT NULL,
  platform TEXT NOT NULL,
  size_bytes BIGINT NOT NULL CHECK (size_bytes >= 0),
  sha256 TEXT NOT NULL,
  manifest TEXT NOT NULL,
  key_id TEXT NOT NULL,
  stable SMALLINT NOT NULL DEFAULT 0 CHECK (stable IN (0, 1)),
  created_at TEXT NOT NULL,
  published_at TEXT NOT NULL,
  PRIMARY KEY (kind, id, version, platform)
);

CREATE TABLE model_usage (
  model_id TEXT PRIMARY KEY,
  request_count BIGINT NOT NULL
);

CREATE TABLE model_unavailable (
  model_id TEXT PRIMARY KEY,
  unavailable_count BIGINT NOT NULL,
  last_reported_at TEXT NOT NULL
);

-- Signed metadata (SPEC §11): the snapshot serial, the publisher's delegation of the hub's
-- metadata key, and the key rotation and revocation statements the hub serves. The one
-- metadata_state row exists from the start, so that hubs agreeing on a serial lock it
-- (SELECT … FOR UPDATE) instead of racing to create it.
CREATE TABLE metadata_state (
  id SMALLINT PRIMARY KEY CHECK (id = 1),
  serial BIGINT NOT NULL,
  content_sha256 TEXT NOT NULL
);
INSERT INTO metadata_state (id, serial, content_sha256) VALUES (1, 0, '');

CREATE TABLE metadata_docs (
  name TEXT PRIMARY KEY,
  text TEXT NOT NULL,
  signature TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE key_statements (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('rotation', 'revocation')),
  text TEXT NOT NULL UNIQUE,
  signature TEXT NOT NULL,
  created_at TEXT NOT NULL
);

-- Bumped in the writing transaction by every row written to releases, metadata_docs or
-- key_statements, so it becomes visible together with the change: a hub that reads an
-- unchanged counter has seen every committed change (CatalogStore.changeMark). Usage counters
-- do not bump it: they are not part of any signed document.
CREATE TABLE catalog_changes (
  id SMALLINT PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL
);
INSERT INTO catalog_changes (id, seq) VALUES (1, 0);

CREATE FUNCTION modelhub_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE catalog_changes SET seq = seq + 1 WHERE id = 1;
  RETURN NULL;
END
$$;

CREATE TRIGGER releases_changed AFTER INSERT OR UPDATE OR DELETE ON releases
  FOR EACH ROW EXECUTE FUNCTION modelhub_catalog_changed();
CREATE TRIGGER metadata_docs_changed AFTER INSERT OR UPDATE OR DELETE ON metadata_docs
  FOR EACH ROW EXECUTE FUNCTION modelhub_catalog_changed();
CREATE TRIGGER key_statements_changed AFTER INSERT OR UPDATE OR DELETE ON key_statements
  FOR EACH ROW EXECUTE FUNCTION modelhub_catalog_changed();
