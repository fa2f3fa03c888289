// File-system steps shared by the effects, each idempotent.
import { randomBytes } from 'node:crypto';
import { access, readdir, rename, rm } from 'node:fs/promises';
import { fsyncDir } from '../fs/durable.js';
import path from 'node:path';

export async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

export { fsyncDir };

/**
 * Removes a directory so that no half-removed tree is ever left at its name: it is first
 * renamed to a `.trash-*` sibling (atomic), then deleted. Leftover trash is swept later.
 */
export async function removeDirAtomically(dir: string): Promise<boolean> {
  if (!(await exists(dir))) return false;
  const trash = path.join(path.dirname(dir), `.trash-${path.basename(dir)}-${randomBytes(4).toString('hex')}`);
  await rename(dir, trash);
  await fsyncDir(path.dirname(dir));
  await rm(trash, { recursive: true, force: true });
  return true;
}

/** Deletes `.trash-*` leftovers and staging directories of jobs that are no longer active. */
export async function sweepServiceDir(serviceDir: string, activeJobIds: ReadonlySet<string>): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(serviceDir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const stagingJob = name.startsWith('.staging-') ? name.slice('.staging-'.length) : undefined;
    if (name.startsWith('.trash-') || (stagingJob !== undefined && !activeJobIds.has(stagingJob))) {
      await rm(path.join(serviceDir, name), { recursive: true, force: true });
      removed.push(name);
    }
  }
  return removed;
}
