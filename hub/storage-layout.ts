// Where each release lives under the storage root. Paths are built only from validated ids,
// versions, platforms and manifest-listed file paths, never from raw request text.
import { rm, readdir } from 'node:fs/promises';
import path from 'node:path';
import { isSafeRelativePath } from '../src/schemas/common.js';
import type { Catalog } from './catalog.js';

export class StorageLayout {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get dbFile(): string {
    return path.join(this.root, 'hub.db');
  }

  /** Uploads land here first; the directory is emptied at every start. */
  get incomingDir(): string {
    return path.join(this.root, '.incoming');
  }

  serviceDir(id: string, version: string, platform: string): string {
    return this.inside(path.join(this.root, 'services', id, version, platform));
  }

  modelDir(id: string, version: string): string {
    return this.inside(path.join(this.root, 'models', id, version));
  }

  /** A model's files sit under files/ so that no file name can collide with its manifest. */
  modelFile(id: string, version: string, filePath: string): string {
    if (!isSafeRelativePath(filePath)) throw new Error(`unsafe model file path: ${JSON.stringify(filePath)}`);
    return this.inside(path.join(this.modelDir(id, version), 'files', filePath));
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
 * Removes what an interrupted publish left behind: the incoming area, and release directories
 * that never got their catalog row. Returns the directories removed.
 */
export async function sweepOrphans(layout: StorageLayout, catalog: Catalog): Promise<string[]> {
  const removed: string[] = [];
  await rm(layout.incomingDir, { recursive: true, force: true });
  const servicesRoot = path.join(layout.root, 'services');
  for (const id of await subdirs(servicesRoot)) {
    for (const version of await subdirs(path.join(servicesRoot, id))) {
      for (const platform of await subdirs(path.join(servicesRoot, id, version))) {
        if (catalog.release('service', id, version, platform) === undefined) {
          const dir = path.join(servicesRoot, id, version, platform);
          await rm(dir, { recursive: true, force: true });
          removed.push(dir);
        }
      }
    }
  }
  const modelsRoot = path.join(layout.root, 'models');
  for (const id of await subdirs(modelsRoot)) {
    for (const version of await subdirs(path.join(modelsRoot, id))) {
      if (catalog.release('model', id, version, '') === undefined) {
        const dir = path.join(modelsRoot, id, version);
        await rm(dir, { recursive: true, force: true });
        removed.push(dir);
      }
    }
  }
  return removed;
}
