// Older hubs kept a model release as models/<id>/<version>/{manifest.json, manifest.json.minisig,
// files/<path>}; now its files sit at their URL paths and its records in .modelhub/ (see
// StorageLayout.modelDir). Every hub start converts such folders, with renames only, so that:
// - a hub killed at any point leaves a folder the next start completes (each step's state is
//   told apart by what exists in .modelhub/, never by the model's own file names, which may be
//   "files" or "manifest.json" too);
// - hubs sharing the storage folder (and so the catalog) that start at once convert each release
//   once: each runs under the release's catalog lock, the one publishes take; a rename whose
//   source is gone (done by another hub without that lock) is taken as done;
// - nothing is copied or deleted but the emptied files/ folder.
import { lstat, mkdir, readdir, rename, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir } from '../src/fs/durable.js';
import { foldPath, RECORDS_DIR } from '../src/schemas/safe-path.js';
import type { CatalogStore } from './catalog/store.js';
import { releaseFolders, type StorageLayout } from './storage-layout.js';

/** Inside .modelhub/ while a folder is converted: the old manifest, and the old files/ folder. */
export const PENDING = 'manifest.json.pending';
export const MOVING = 'files.moving';

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** A rename whose source is gone was done by another run: fine. */
async function move(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if (code(err) !== 'ENOENT') throw err;
  }
}

/** True when the folder is in the current layout (or is no model release folder at all). */
async function current(dir: string): Promise<boolean> {
  const records = path.join(dir, RECORDS_DIR);
  if (await exists(path.join(records, 'manifest.json'))) return !(await exists(path.join(records, MOVING)));
  return !(await exists(path.join(records, PENDING))) && !(await exists(path.join(dir, 'manifest.json')));
}

/**
 * One folder, in steps whose order is the crash-safety argument:
 * 1. the signature, then the manifest (as PENDING) into .modelhub/: the folder now holds only
 *    files/ (a model file named "manifest.json" waits inside it, so nothing is overwritten);
 * 2. files/ itself into .modelhub/MOVING, so that a model file or folder named "files" has
 *    somewhere to go;
 * 3. each entry of MOVING up into the folder;
 * 4. PENDING to manifest.json: from here the hub serves the release;
 * 5. the emptied MOVING removed.
 * A rerun finds PENDING without MOVING only between 1 and 2 (MOVING outlives PENDING), so the
 * files/ it then moves is always the old container, never a model's own "files".
 */
type Outcome = 'converted' | 'current' | { skipped: string };

async function convert(dir: string): Promise<Outcome> {
  const records = path.join(dir, RECORDS_DIR);
  const pending = path.join(records, PENDING);
  const moving = path.join(records, MOVING);
  const manifest = path.join(records, 'manifest.json');
  if (await current(dir)) return 'current';
  if (!(await exists(pending)) && !(await exists(manifest))) {
    // Not started: a model file that the new layout would put inside .modelhub/ has no place.
    const clash = (await readdir(path.join(dir, 'files')).catch(() => [] as string[])).find((n) => foldPath(n) === RECORDS_DIR);
    if (clash !== undefined) return { skipped: `it has a file "${clash}/…", a name now reserved for the release's records` };
    await mkdir(records, { recursive: true });
    await move(path.join(dir, 'manifest.json.minisig'), path.join(records, 'manifest.json.minisig'));
    await move(path.join(dir, 'manifest.json'), pending);
    await fsyncDir(records);
    await fsyncDir(dir);
  }
  if ((await exists(pending)) && !(await exists(moving))) {
    await move(path.join(dir, 'files'), moving);
    // A release without files had no files/ folder: an empty MOVING lets step 4 follow.
    await mkdir(moving, { recursive: true });
    await fsyncDir(records);
    await fsyncDir(dir);
  }
  if (await exists(moving)) {
    for (const name of await readdir(moving).catch(() => [] as string[])) await move(path.join(moving, name), path.join(dir, name));
    await fsyncDir(dir);
    await move(pending, manifest);
    await fsyncDir(records);
    try {
      await rmdir(moving);
    } catch (err) {
      if (code(err) !== 'ENOENT') throw err;
    }
    await fsyncDir(records);
  }
  return 'converted';
}

export interface MigrationResult {
  /** Release folders converted, relative to the storage root. */
  converted: string[];
  /** Release folders left as they were, and why. */
  skipped: { path: string; reason: string }[];
}

/** Converts every model release folder still in the old layout; run at each hub start. */
export async function migrateModelLayout(layout: StorageLayout, catalog: CatalogStore, log: (line: string) => void = () => undefined): Promise<MigrationResult> {
  const result: MigrationResult = { converted: [], skipped: [] };
  for (const f of await releaseFolders(layout)) {
    if (f.kind !== 'model' || (await current(f.dir))) continue;
    const shown = layout.urlPath(f.dir);
    let outcome: Outcome;
    try {
      outcome = await catalog.withReleaseLock('model', f.id, f.version, '', () => convert(f.dir));
    } catch (err) {
      // One folder the hub cannot change (permissions, a full disk) must not keep it from serving the others.
      outcome = { skipped: `converting it failed: ${(err as Error).message}` };
    }
    if (outcome === 'converted') {
      result.converted.push(shown);
      log(`hub: ${shown}: model files moved to their URL paths, manifest to ${RECORDS_DIR}/`);
    } else if (outcome !== 'current') {
      result.skipped.push({ path: shown, reason: outcome.skipped });
      log(`hub: ${shown} is left in the old layout and will not be served: ${outcome.skipped}`);
    }
  }
  return result;
}
