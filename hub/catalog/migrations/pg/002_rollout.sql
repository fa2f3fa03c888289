-- Staged rollout (SPEC §12): the share of nodes a release is offered to; 100 % unless set.
-- (SQLite: migration 3 in sqlite-store.ts.)
ALTER TABLE releases ADD COLUMN rollout SMALLINT NOT NULL DEFAULT 100 CHECK (rollout BETWEEN 0 AND 100);
