// What of an existing `.part` a download keeps. A part is kept only when its sidecar (if any)
// names this URL and signed size; with pieces (a download in segments), only when they are
// consistent, the part is the same file (inode) and long enough for what they claim. Anything
// else starts over from zero, and whoever followed the old bytes is told (onRestart).
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { throwIfAborted } from './abort.js';
import type { Config, Stats } from './config.js';
import { PartFile } from './part-file.js';
import { Plan } from './segments.js';
import { readSidecar } from './sidecar.js';

const READ_BUFFER_BYTES = 1024 * 1024;

export async function resumePoint(cfg: Config, stats: Stats, fromZero: boolean): Promise<{ part: PartFile; plan: Plan; etag: string | null }> {
  const sidecar = fromZero ? null : await readSidecar(cfg.meta);
  const part = await PartFile.open(cfg.part, cfg.onFlushed);
  try {
    const onDisk = await part.size();
    const matches = sidecar !== null && sidecar.url === cfg.url && sidecar.size === cfg.expectedSize;
    let plan: Plan | null = null;
    if (!fromZero && onDisk <= cfg.expectedSize && (sidecar === null || matches)) {
      if (sidecar?.pieces === undefined) {
        plan = Plan.whole(cfg.expectedSize, onDisk); // the part is a prefix of the file
      } else {
        const saved = Plan.fromSaved(cfg.expectedSize, sidecar.pieces);
        const sameFile = sidecar.ino === undefined || sidecar.ino === part.ino.toString();
        if (saved !== null && sameFile && saved.highestWritten() <= onDisk) plan = saved;
      }
    }
    if (plan === null) {
      if (fromZero || onDisk > 0) {
        cfg.guard?.();
        cfg.onRestart?.();
        await part.truncate();
        stats.restartedFromZero = true;
      }
      plan = Plan.whole(cfg.expectedSize, 0);
    }
    throwIfAborted(cfg.signal);
    await part.adopt(plan.writtenRanges()); // hashes the contiguous prefix now, the rest when the frontier gets there
    stats.resumedFrom = plan.written();
    return { part, plan, etag: matches && plan.written() > 0 ? sidecar.etag : null };
  } catch (err) {
    await part.close().catch(() => undefined);
    throw err;
  }
}

/** SHA-256 of a whole file, 1 MiB at a time. */
export async function hashFile(file: string, signal: AbortSignal | undefined): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    for (;;) {
      throwIfAborted(signal);
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
    return hash.digest('hex');
  } finally {
    await fh.close();
  }
}
