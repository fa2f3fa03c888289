// A half-written `current` (a dangling symlink, a torn current.json on Windows, a deleted one)
// repaired from the registry, which is the truth (SPEC §7): recover() runs this after the jobs,
// for every service no job is working on. Only the pointer is rewritten — it is derived state;
// when the registry's own current version folder is gone, that is damage to the version, left
// to `modelhub verify --repair` (a job) and said in a warning.
import { stat } from 'node:fs/promises';
import type { PlatformAdapter } from '../platform/adapter.js';
import type { Home } from './home.js';
import type { Registry } from './registry.js';

export interface PointerRepair {
  id: string;
  /** What the pointer said (null: absent or unreadable). */
  from: string | null;
  to: string;
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null))?.isDirectory() === true;
}

export async function repairPointers(o: { registry: Registry; home: Home; adapter: PlatformAdapter; busy: (id: string) => boolean; warn: (m: string) => void }): Promise<PointerRepair[]> {
  const repaired: PointerRepair[] = [];
  for (const s of o.registry.installedServices()) {
    if (s.current === null || o.busy(s.id)) continue;
    const serviceDir = o.home.serviceDir(s.id);
    let pointer: string | null;
    let why: string;
    try {
      pointer = await o.adapter.readCurrent(serviceDir);
      why = pointer === null ? 'the pointer is missing' : `the pointer names ${pointer}`;
    } catch (err) {
      pointer = null;
      why = `the pointer is unreadable (${(err as Error).message})`;
    }
    if (pointer === s.current && (await isDir(o.home.versionDir(s.id, pointer)))) continue;
    if (!(await isDir(o.home.versionDir(s.id, s.current)))) {
      o.warn(`${s.id}: its current version ${s.current} is gone from disk; run modelhub verify --repair ${s.id}@${s.current}`);
      continue;
    }
    await o.adapter.writeCurrent(serviceDir, s.current);
    o.warn(`${s.id}: ${why}, but the registry says ${s.current}; current repaired`);
    repaired.push({ id: s.id, from: pointer, to: s.current });
  }
  return repaired;
}
