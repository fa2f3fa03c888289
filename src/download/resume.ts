// What of an existing `.part` a download keeps. A part is kept only when its sidecar (if any)
// names this signed file (its SHA-256 and size; an older sidecar without a SHA-256: this URL
// and size); with pieces (a download in segments), only when they are consistent, the part is
// the same file (inode) and long enough for what they claim. Anything else starts over from
// zero, and whoever followed the old bytes is told (onRestart).
//
// Bytes another source served (a mirror, then the hub) are kept, but that source's ETag is not
// sent as If-Range to this one: ETags are per server (nginx's differ from the hub's), and a
// foreign one would make a correct server answer 200 and throw the part away. The signed
// SHA-256, checked at the end, is what guards a part made of several sources' bytes.
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
    const sameFile = sidecar !== null && sidecar.size === cfg.expectedSize && (sidecar.sha256 === undefined ? sidecar.url === cfg.url : sidecar.sha256 === cfg.expectedSha256);
    const sameSource = sameFile && sidecar.url === cfg.url;
    let plan: Plan | null = null;
    if (!fromZero && onDisk <= cfg.expectedSize && (sidecar === null || sameFile)) {
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
    return { part, plan, etag: sameSource && plan.written() > 0 ? sidecar.etag : null };
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
