// A few MiB the engine holds on the disk of its home (`<home>/.disk-reserve`), so that when
// another program fills the disk in the middle of a job, the job can still record its own
// failure: engine.db's write-ahead log needs room to append the error event, and without it the
// job would be left mid-step instead of failed. Like a file system's reserved blocks, the space
// is given up exactly when it is needed (an append fails with SQLITE_FULL) and taken back at the
// next open when there is room again. Best effort throughout: a home where the reserve cannot be
// made works as before.
import { closeSync, openSync, rmSync, statfsSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

export const RESERVE_BYTES = 4 * 1024 * 1024;
const RESERVE_FILE = '.disk-reserve';

export function reservePath(home: string): string {
  return path.join(home, RESERVE_FILE);
}

/** Makes the reserve when it is missing and the disk has room for it beyond `marginBytes`. */
export function ensureReserve(home: string, marginBytes: number): void {
  const file = reservePath(home);
  try {
    if (statSync(file).size === RESERVE_BYTES) return;
  } catch {
    // not there yet
  }
  try {
    const s = statfsSync(home);
    if (s.bavail * s.bsize < RESERVE_BYTES + marginBytes) return;
    // Written, not sparse: the blocks must really be taken for giving them back to help.
    const fd = openSync(file, 'w', 0o600);
    try {
      const chunk = Buffer.alloc(1024 * 1024);
      for (let n = 0; n < RESERVE_BYTES; n += chunk.length) writeSync(fd, chunk);
    } finally {
      closeSync(fd);
    }
  } catch {
    rmSync(file, { force: true });
  }
}

/** Gives the reserve back to the disk; true when there was one to give. */
export function releaseReserve(home: string): boolean {
  const file = reservePath(home);
  try {
    statSync(file);
  } catch {
    return false;
  }
  rmSync(file, { force: true });
  return true;
}
