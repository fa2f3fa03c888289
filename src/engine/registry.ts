// Installed services and models, read from the projection tables of engine.db.
import semver from 'semver';
import type { InstalledState } from '../../machines/install.js';
import { isAlive } from '../runtime/manager.js';
import type { Db } from './db.js';

export interface ServiceListing {
  id: string;
  current: string | null;
  previous: string | null;
  versions: string[];
  running: boolean;
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
    const rt = this.db.prepare('SELECT pid, version FROM runtime WHERE id = ?').get(id) as { pid: number; version: string } | undefined;
    const current = row?.current ?? null;
    return { current, versions: this.versionsOf(id), running: rt !== undefined && rt.version === current && isAlive(rt.pid) };
  }

  /** The recorded process of a service, alive or not. */
  runtimeOf(id: string): { version: string; pid: number; port: number } | undefined {
    return this.db.prepare('SELECT version, pid, port FROM runtime WHERE id = ?').get(id) as { version: string; pid: number; port: number } | undefined;
  }

  previousOf(id: string): string | null {
    const row = this.db.prepare('SELECT previous FROM services WHERE id = ?').get(id) as { previous: string | null } | undefined;
    return row?.previous ?? null;
  }

  services(): ServiceListing[] {
    const ids = (this.db.prepare('SELECT id FROM services UNION SELECT id FROM service_versions ORDER BY id').all() as { id: string }[]).map((r) => r.id);
    return ids.map((id) => {
      const row = this.db.prepare('SELECT current, previous FROM services WHERE id = ?').get(id) as { current: string | null; previous: string | null } | undefined;
      const rt = this.db.prepare('SELECT pid FROM runtime WHERE id = ?').get(id) as { pid: number } | undefined;
      return { id, current: row?.current ?? null, previous: row?.previous ?? null, versions: this.versionsOf(id), running: rt !== undefined && isAlive(rt.pid) };
    });
  }

  models(): { id: string; versions: string[] }[] {
    const rows = this.db.prepare('SELECT id, version FROM models ORDER BY id').all() as { id: string; version: string }[];
    const by = new Map<string, string[]>();
    for (const r of rows) by.set(r.id, [...(by.get(r.id) ?? []), r.version]);
    return [...by.entries()].map(([id, versions]) => ({ id, versions: versions.sort(semver.compare) }));
  }

  modelManifest(id: string, version: string): string | undefined {
    const row = this.db.prepare('SELECT manifest FROM models WHERE id = ? AND version = ?').get(id, version) as { manifest: string } | undefined;
    return row?.manifest;
  }
}
