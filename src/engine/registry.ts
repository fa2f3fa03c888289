// Installed services and models, read from the projection tables of engine.db.
import semver from 'semver';
import type { InstalledState } from '../../machines/install.js';
import { recordedProcess } from '../runtime/manager.js';
import type { Db } from './db.js';

export interface ServiceListing {
  id: string;
  current: string | null;
  previous: string | null;
  versions: string[];
  running: boolean;
}

/** A service's recorded process (a row of the runtime table). */
export interface RuntimeRecord {
  version: string;
  pid: number;
  port: number;
  /** The supervisor's start time; null (or absent, in a database of an older version) when none was recorded. */
  start_time?: string | null;
}

export class Registry {
  /** @internal engine.db is not part of the public API. */
  constructor(private readonly db: Db) {}

  private versionsOf(id: string): string[] {
    const rows = this.db.prepare('SELECT version FROM service_versions WHERE id = ?').all(id) as { version: string }[];
    return rows.map((r) => r.version).sort(semver.compare);
  }

  /** `running`: the current version itself runs (another version running does not count). */
  installedState(id: string): InstalledState {
    const row = this.db.prepare('SELECT current FROM services WHERE id = ?').get(id) as { current: string | null } | undefined;
    const rt = this.liveRuntimeOf(id);
    const current = row?.current ?? null;
    return { current, versions: this.versionsOf(id), running: rt !== undefined && rt.version === current };
  }

  /** The recorded process of a service, alive or not. */
  runtimeOf(id: string): RuntimeRecord | undefined {
    // `*`: a database of an older version, opened read-only, has no start_time column.
    return this.db.prepare('SELECT * FROM runtime WHERE id = ?').get(id) as RuntimeRecord | undefined;
  }

  /**
   * The recorded process of a service if it still runs: its pid is alive and, when a start time
   * was recorded, started at that time. A row whose pid now names another process is stale: it
   * is deleted when this database is writable (a read-only view just ignores it).
   */
  liveRuntimeOf(id: string): RuntimeRecord | undefined {
    const rt = this.runtimeOf(id);
    if (rt === undefined) return undefined;
    const state = recordedProcess(rt.pid, rt.start_time);
    if (state === 'reused' && !this.db.readonly) {
      this.db.prepare('DELETE FROM runtime WHERE id = ? AND pid = ? AND start_time IS ?').run(id, rt.pid, rt.start_time ?? null);
    }
    return state === 'running' ? rt : undefined;
  }

  previousOf(id: string): string | null {
    const row = this.db.prepare('SELECT previous FROM services WHERE id = ?').get(id) as { previous: string | null } | undefined;
    return row?.previous ?? null;
  }

  /** Installed services, without asking whether they run (which costs a command per service off Linux). */
  installedServices(): Omit<ServiceListing, 'running'>[] {
    const ids = (this.db.prepare('SELECT id FROM services UNION SELECT id FROM service_versions ORDER BY id').all() as { id: string }[]).map((r) => r.id);
    return ids.map((id) => {
      const row = this.db.prepare('SELECT current, previous FROM services WHERE id = ?').get(id) as { current: string | null; previous: string | null } | undefined;
      return { id, current: row?.current ?? null, previous: row?.previous ?? null, versions: this.versionsOf(id) };
    });
  }

  services(): ServiceListing[] {
    return this.installedServices().map((s) => ({ ...s, running: this.liveRuntimeOf(s.id) !== undefined }));
  }

  models(): { id: string; versions: string[] }[] {
    const rows = this.db.prepare('SELECT id, version FROM models ORDER BY id').all() as { id: string; version: string }[];
    const by = new Map<string, string[]>();
    for (const r of rows) by.set(r.id, [...(by.get(r.id) ?? []), r.version]);
    return [...by.entries()].map(([id, versions]) => ({ id, versions: versions.sort(semver.compare) }));
  }

  /** The signed manifest an installed service version was verified with (delta updates reuse its files' hashes). */
  serviceManifest(id: string, version: string): string | undefined {
    const row = this.db.prepare('SELECT manifest FROM service_versions WHERE id = ? AND version = ?').get(id, version) as { manifest: string } | undefined;
    return row?.manifest;
  }

  modelManifest(id: string, version: string): string | undefined {
    const row = this.db.prepare('SELECT manifest FROM models WHERE id = ? AND version = ?').get(id, version) as { manifest: string } | undefined;
    return row?.manifest;
  }
}
