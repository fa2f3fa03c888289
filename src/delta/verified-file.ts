// Writes one file whose size and SHA-256 are signed, from a stream of its bytes: under a temp
// name beside it, capped at the signed size while streaming (an entry that inflates to more is
// cut off, not written out), hashed while written, fsynced, and renamed into place only when
// size and hash match. So `dest` is either absent or exactly the signed bytes, whatever happens
// in between (NOTES: temp → fsync → rename).
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { isErrno } from '../download/errors.js';
import { ModelhubError } from '../errors.js';

export interface VerifiedFileSpec {
  dest: string;
  sha256: string;
  size: number;
  /** File mode (exactly this, whatever the umask). Default 0644. */
  mode?: number;
  /** Called before each write and before the rename; throwing stops everything (e.g. a lost lease). */
  guard?: () => void;
  /** Names the file in errors (its path in the release). */
  label?: string;
}

/**
 * Writes `data` to `spec.dest`. Throws SIZE_EXCEEDED when the bytes run past the signed size,
 * CHECKSUM_MISMATCH when they end short of it or hash to something else; `dest` is then untouched.
 */
export async function writeVerifiedFile(data: AsyncIterable<Uint8Array>, spec: VerifiedFileSpec): Promise<void> {
  const label = spec.label ?? spec.dest;
  const mode = spec.mode ?? 0o644;
  const tmp = `${spec.dest}.tmp-${randomBytes(4).toString('hex')}`;
  let fh: FileHandle | undefined;
  try {
    spec.guard?.();
    fh = await open(tmp, 'wx', mode);
    await fh.chmod(mode); // the umask may have narrowed it
    const hash = createHash('sha256');
    let done = 0;
    for await (const chunk of data) {
      done += chunk.length;
      if (done > spec.size) {
        throw new ModelhubError('SIZE_EXCEEDED', `${label}: more than the ${spec.size} bytes signed`, { details: { entry: label, expected: spec.size } });
      }
      hash.update(chunk);
      spec.guard?.();
      await fh.write(chunk);
    }
    if (done !== spec.size) {
      throw new ModelhubError('CHECKSUM_MISMATCH', `${label}: ${done} bytes, ${spec.size} signed`, { details: { entry: label, expected: spec.size, actual: done } });
    }
    const digest = hash.digest('hex');
    if (digest !== spec.sha256) {
      throw new ModelhubError('CHECKSUM_MISMATCH', `${label}: sha256 ${digest} differs from the signed ${spec.sha256}`, { details: { entry: label, expected: spec.sha256, actual: digest } });
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    spec.guard?.();
    await rename(tmp, spec.dest);
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    if (isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT')) throw new ModelhubError('INSUFFICIENT_DISK', `${label}: the disk is full`, { cause: err });
    throw err;
  }
}
