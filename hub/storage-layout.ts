// Where each release lives under the storage root. Paths are built only from validated ids,
// versions, platforms and manifest-listed file paths, never from raw request text.
import { readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fsyncDir } from '../src/fs/durable.js';
import { RECORDS_DIR, unsafePathReason } from '../src/schemas/safe-path.js';
import type { CatalogStore, ReleaseKind } from './catalog/store.js';

export type RecordName = 'manifest.json' | 'manifest.json.minisig';

/**
 * Where a release's signed manifest and signature sit inside its folder. A service's folder
 * holds one served file with a fixed name (service.zip), so they sit beside it; a model's files
 * have any names its publisher chose, so its records go to the reserved RECORDS_DIR.
 */
export function recordsSubdir(kind: ReleaseKind): string {
  return kind === 'model' ? RECORDS_DIR : '';
}

export class StorageLayout {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get dbFile(): string {
    return path.join(this.root, 'hub.db');
  }

  /** Uploads land here first, each in a folder named for its hub process (sweepIncoming). */
  get incomingDir(): string {
    return path.join(this.root, '.incoming');
  }

  /** Release folders without a catalog row are moved here, never deleted (`modelhub hub orphans --quarantine`). */
  get orphansDir(): string {
    return path.join(this.root, '.orphans');
  }

  serviceDir(id: string, version: string, platform: string): string {
    return this.inside(path.join(this.root, 'services', id, version, platform));
  }

  /**
   * The folder served at /storage/models/<id>/<version>/: the model's files at their manifest
   * paths (the URL layout, so a static copy of the storage folder is a mirror), beside
   * .modelhub/ with the signed manifest (modelRecord). Older hubs kept the files below files/;
   * migrateModelLayout converts such folders at start.
   */
  modelDir(id: string, version: string): string {
    return this.inside(path.join(this.root, 'models', id, version));
  }

  modelFile(id: string, version: string, filePath: string): string {
    const why = unsafePathReason(filePath);
    if (why !== undefined) throw new Error(`unsafe model file path ${JSON.stringify(filePath)}: ${why}`);
    return this.inside(path.join(this.modelDir(id, version), filePath));
  }

  /** The signed manifest or its signature of a model release: models/<id>/<version>/.modelhub/<name>. */
  modelRecord(id: string, version: string, name: RecordName): string {
    return this.inside(path.join(this.modelDir(id, version), recordsSubdir('model'), name));
  }

  serviceRecord(id: string, version: string, platform: string, name: RecordName): string {
    return this.inside(path.join(this.serviceDir(id, version, platform), recordsSubdir('service'), name));
  }

  /** A path under the root as it appears in URLs below /storage/: relative, '/'-separated. */
  urlPath(file: string): string {
    return path.relative(this.root, this.inside(file)).split(path.sep).join('/');
  }

  /** Defence in depth: whatever the caller validated, nothing resolves outside the root. */
  private inside(p: string): string {
    const resolved = path.resolve(p);
    if (resolved !== this.root && !resolved.startsWith(this.root + path.sep)) {
      throw new Error(`path escapes the storage root: ${p}`);
    }
    return resolved;
  }
}

async function subdirs(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

/**
 * Where a pid names one process: this host, this boot and this pid namespace — so hubs in two
 * containers on one host, or on two machines with one host name, never take each other's
 * uploads for a dead process's. The host name comes first, as older hubs wrote it alone.
 */
let scope: string | undefined;

export function incomingScope(): string {
  scope ??= readScope();
  return scope;
}

function readScope(): string {
  const host = encodeURIComponent(os.hostname());
  let boot = '';
  let pidNamespace = '';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().slice(0, 8);
    pidNamespace = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '';
  } catch {
    // Not Linux: the host name alone, as before.
  }
  return boot === '' ? host : `${host}@${boot}-${pidNamespace}`;
}

/**
 * The name prefix of this process's uploads in `.incoming`: scope and pid, so that a hub
 * starting beside others on one storage folder can tell its dead predecessors' leftovers from
 * uploads still in flight.
 */
export function incomingOwnerPrefix(): string {
  return `${incomingScope()}~${process.pid}~`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temp uploads in `.incoming` whose hub is gone: those named for this scope (or, as
 * older hubs named them, this host) and a pid that no longer runs, and unnamed ones (an older
 * hub's). Uploads of a live hub here, and every upload named for another scope, are left alone.
 * These are never releases: an upload becomes one only by commit.ts's rename out of `.incoming`.
 * Run at a hub's start; it touches no release folder.
 */
export async function sweepIncoming(layout: StorageLayout): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(layout.incomingDir);
  } catch {
    return removed;
  }
  const ours = incomingScope();
  const host = encodeURIComponent(os.hostname());
  for (const name of names) {
    const m = /^([^~]*)~(\d+)~/.exec(name);
    if (m !== null) {
      if (m[1] !== ours && m[1] !== host) continue;
      const pid = Number(m[2]);
      if (pid === process.pid || processAlive(pid)) continue;
    }
    await rm(path.join(layout.incomingDir, name), { recursive: true, force: true });
    removed.push(name);
  }
  await rmdir(layout.incomingDir).catch(() => undefined); // only when empty
  return removed;
}

/** A release folder under the storage root. */
export interface ReleaseFolder {
  kind: ReleaseKind;
  id: string;
  version: string;
  /** '' for models. */
  platform: string;
  /** Absolute. */
  dir: string;
}

/** Every folder where a release's files live: services/<id>/<version>/<platform>, models/<id>/<version>. */
export async function releaseFolders(layout: StorageLayout): Promise<ReleaseFolder[]> {
  const out: ReleaseFolder[] = [];
  const servicesRoot = path.join(layout.root, 'services');
  for (const id of await subdirs(servicesRoot)) {
    for (const version of await subdirs(path.join(servicesRoot, id))) {
      for (const platform of await subdirs(path.join(servicesRoot, id, version))) {
        out.push({ kind: 'service', id, version, platform, dir: path.join(servicesRoot, id, version, platform) });
      }
    }
  }
  const modelsRoot = path.join(layout.root, 'models');
  for (const id of await subdirs(modelsRoot)) {
    for (const version of await subdirs(path.join(modelsRoot, id))) {
      out.push({ kind: 'model', id, version, platform: '', dir: path.join(modelsRoot, id, version) });
    }
  }
  return out;
}

export interface Orphan {
  /** The release folder, relative to the storage root, '/'-separated. */
  path: string;
  /** Where it was moved (relative, '/'-separated), when quarantined. */
  moved_to?: string;
  /** Why it stayed where it is, when it could not be moved. */
  error?: string;
}

/** A time stamp usable as a folder name on every platform (no ":"). */
function stamp(now: Date): string {
  return now.toISOString().replace(/:/g, '-');
}

/**
 * Release folders without a catalog row: left by a publish killed between moving its files
 * into place and its commit, or older than a catalog restored from a backup. No hub lists or
 * serves them (every read goes through the catalog). Each folder is judged under its release's
 * lock (CatalogStore.withReleaseLock), so a publish still in flight on any hub is never taken
 * for an orphan. With `quarantine`, each is moved — never deleted — to
 * `<storage>/.orphans/<timestamp>/<path below the storage root>`, with a log line, so an
 * operator can put it back. Only `modelhub hub orphans` runs this: a hub's start moves no
 * release folder (it only converts old-layout model folders in place, under the same lock), so
 * hubs sharing a storage folder can start while another publishes.
 */
export async function findOrphans(
  layout: StorageLayout,
  catalog: CatalogStore,
  options: { quarantine?: boolean; log?: (line: string) => void; now?: Date } = {},
): Promise<Orphan[]> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = options.now ?? new Date();
  const found: Orphan[] = [];
  let base: string | undefined;
  for (const f of await releaseFolders(layout)) {
    const orphan = await catalog.withReleaseLock(f.kind, f.id, f.version, f.platform, async (row): Promise<Orphan | undefined> => {
      if (row !== undefined) return undefined;
      const from = layout.urlPath(f.dir);
      if (options.quarantine !== true) return { path: from };
      base ??= await freshDir(layout.orphansDir, stamp(now));
      const to = path.join(base, path.relative(layout.root, f.dir));
      try {
        await mkdir(path.dirname(to), { recursive: true });
        await rename(f.dir, to);
        await fsyncDir(path.dirname(to));
        await fsyncDir(path.dirname(f.dir));
      } catch (err) {
        // Left where it is: no reader reaches it without a row.
        const error = (err as Error).message;
        log(`hub: ${from} has no catalog row and could not be moved to ${layout.urlPath(to)}: ${error}; left in place`);
        return { path: from, error };
      }
      log(`hub: ${from} has no catalog row (an interrupted publish, or a catalog older than the storage folder); moved to ${layout.urlPath(to)}, nothing deleted`);
      return { path: from, moved_to: layout.urlPath(to) };
    });
    if (orphan !== undefined) found.push(orphan);
  }
  return found;
}

/** Creates <parent>/<name>, or <name>-2, -3, … when taken; returns it. */
async function freshDir(parent: string, name: string): Promise<string> {
  await mkdir(parent, { recursive: true });
  for (let n = 1; ; n++) {
    const dir = path.join(parent, n === 1 ? name : `${name}-${n}`);
    try {
      await mkdir(dir);
      return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}
