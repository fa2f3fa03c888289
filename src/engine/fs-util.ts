// File-system steps shared by the effects, each idempotent.
import { randomBytes } from 'node:crypto';
import { access, rename, rm } from 'node:fs/promises';
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
