// The registry as a projection of the event log: each event that changes what is installed
// updates the registry tables inside the same transaction that appends it.
import type { InstallContext, RollbackOutput, SwitchOutput, CommitOutput } from '../../machines/install.js';
import type { RemoveOutput, UninstallContext } from '../../machines/uninstall.js';
import semver from 'semver';
import type { RestorePointersOutput, VersionVerdict } from '../../machines/rebuild.js';
import type { Db } from './db.js';
import type { JobKind } from './jobs-store.js';

interface ModelPullContextLike {
  request: { id: string };
  resolved: { version: string; manifestText: string } | null;
}

function dropServiceIfEmpty(db: Db, id: string): void {
  const left = db.prepare('SELECT COUNT(*) AS n FROM service_versions WHERE id = ?').get(id) as { n: number };
  const row = db.prepare('SELECT current FROM services WHERE id = ?').get(id) as { current: string | null } | undefined;
  if (left.n === 0 && (row === undefined || row.current === null)) db.prepare('DELETE FROM services WHERE id = ?').run(id);
}

/** Raises a rollback floor to `version` when it is higher (never lowers it), inside the caller's transaction. */
function raiseFloor(db: Db, kind: 'service' | 'model', id: string, version: string): void {
  const row = db.prepare('SELECT version FROM version_floor WHERE kind = ? AND id = ?').get(kind, id) as { version: string } | undefined;
  if (row !== undefined && semver.valid(row.version) !== null && semver.gte(row.version, version)) return;
  db.prepare('INSERT INTO version_floor (kind, id, version) VALUES (?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version').run(kind, id, version);
}

/**
 * The rebuilt registry: each intact version as it is judged, then each service's current and
 * previous version once the pointers are restored. The rollback floors come back from what is
 * installed (the highest installed version of each); what the hub offered beyond that is lost
 * with the database, and so is the highest snapshot serial seen (docs/library.md, "Records").
 */
function projectRebuild(db: Db, event: { type: string; [k: string]: unknown }, ts: number): void {
  if (event.type === 'xstate.done.actor.verifyVersion') {
    const v = event.output as VersionVerdict;
    if (v.status !== 'intact' || v.manifestText === null) return;
    if (v.kind === 'service') {
      db.prepare('INSERT INTO service_versions (id, version, manifest, key_id, installed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id, version) DO NOTHING').run(v.id, v.version, v.manifestText, v.keyId, ts);
    } else {
      db.prepare('INSERT INTO models (id, version, manifest, installed_at) VALUES (?, ?, ?, ?) ON CONFLICT (id, version) DO NOTHING').run(v.id, v.version, v.manifestText, ts);
    }
    raiseFloor(db, v.kind, v.id, v.version);
  } else if (event.type === 'xstate.done.actor.restorePointers') {
    for (const s of (event.output as RestorePointersOutput).services) {
      db.prepare(
        `INSERT INTO services (id, current, previous, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET current = excluded.current, previous = excluded.previous, updated_at = excluded.updated_at`,
      ).run(s.id, s.current, s.previous, ts);
      dropServiceIfEmpty(db, s.id);
    }
  }
}

export function project(db: Db, kind: JobKind, event: { type: string; [k: string]: unknown }, context: unknown, ts: number): void {
  if (kind === 'install') {
    const ctx = context as InstallContext;
    const id = ctx.request.id;
    switch (event.type) {
      case 'xstate.done.actor.switchVersion': {
        const out = event.output as SwitchOutput;
        db.prepare(
          `INSERT INTO services (id, current, previous, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET current = excluded.current, previous = excluded.previous, updated_at = excluded.updated_at`,
        ).run(id, out.current, out.previous, ts);
        db.prepare(
          `INSERT INTO service_versions (id, version, manifest, key_id, installed_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (id, version) DO NOTHING`,
        ).run(id, out.current, ctx.release?.manifestText ?? '{}', ctx.verified?.keyId ?? null, ts);
        break;
      }
      case 'xstate.done.actor.commitRelease': {
        const out = event.output as CommitOutput;
        for (const v of out.removed) db.prepare('DELETE FROM service_versions WHERE id = ? AND version = ?').run(id, v);
        break;
      }
      case 'xstate.done.actor.rollBack': {
        const out = event.output as RollbackOutput;
        const version = ctx.release?.version;
        const keep = ctx.release?.installed.versions.includes(version ?? '') ?? false;
        if (version !== undefined && !keep) db.prepare('DELETE FROM service_versions WHERE id = ? AND version = ?').run(id, version);
        db.prepare(
          `INSERT INTO services (id, current, previous, updated_at) VALUES (?, ?, NULL, ?)
           ON CONFLICT (id) DO UPDATE SET current = excluded.current, updated_at = excluded.updated_at,
             previous = CASE WHEN services.previous = excluded.current THEN NULL ELSE services.previous END`,
        ).run(id, out.current, ts);
        dropServiceIfEmpty(db, id);
        break;
      }
    }
    return;
  }
  if (kind === 'uninstall') {
    const ctx = context as UninstallContext;
    if (event.type === 'xstate.done.actor.removeVersions') {
      const out = event.output as RemoveOutput;
      const id = ctx.request.id;
      if (ctx.request.kind === 'model') {
        for (const v of out.removed) db.prepare('DELETE FROM models WHERE id = ? AND version = ?').run(id, v);
        return;
      }
      for (const v of out.removed) db.prepare('DELETE FROM service_versions WHERE id = ? AND version = ?').run(id, v);
      db.prepare('UPDATE services SET current = ?, updated_at = ? WHERE id = ?').run(out.current, ts, id);
      dropServiceIfEmpty(db, id);
    }
    return;
  }
  if (kind === 'rebuild') {
    projectRebuild(db, event, ts);
    return;
  }
  if (kind === 'model_pull') {
    const ctx = context as ModelPullContextLike;
    if (event.type === 'xstate.done.actor.installModel' && ctx.resolved !== null) {
      db.prepare(
        `INSERT INTO models (id, version, manifest, installed_at) VALUES (?, ?, ?, ?) ON CONFLICT (id, version) DO NOTHING`,
      ).run(ctx.request.id, ctx.resolved.version, ctx.resolved.manifestText, ts);
    }
  }
}
