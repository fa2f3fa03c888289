// A small disk for the tests that need one to fill up: a tmpfs of a given size, mounted in a
// temp folder (we are root in CI). Where mounting is refused the disk says so, with the reason,
// and the test prints it instead of passing silently.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';

const run = promisify(execFile);

export interface SmallDisk {
  /** The mount point (an empty temp folder when the mount was refused). */
  dir: string;
  mounted: boolean;
  /** Why the mount was refused; '' when mounted. */
  error: string;
  /** Unmounts (when mounted) and removes the folder. */
  release(): Promise<void>;
}

export async function mountSmallDisk(prefix: string, sizeMiB: number): Promise<SmallDisk> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  let mounted = false;
  let error = '';
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
    mounted = true;
  } catch (err) {
    error = (err as Error).message || 'mount failed';
  }
  return {
    dir,
    mounted,
    error,
    async release() {
      if (mounted) await run('umount', [dir]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * True when the disk was not mounted: says so (the test then checks nothing else and returns),
 * with the reason, which must be there — a refusal never passes silently.
 */
export function mountRefused(disk: SmallDisk | undefined, what: string): boolean {
  if (disk?.mounted === true) return false;
  console.warn(`${what} not run: mounting a tmpfs was refused (${disk?.error ?? '?'})`);
  expect(disk?.error).not.toBe('');
  return true;
}
