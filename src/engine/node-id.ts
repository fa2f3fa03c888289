// The node's stable id (SPEC §10): a random UUID in <home>/node_id, created on first use and
// kept for the life of the home. Schedulers and the hub tell nodes apart by it (the
// model_unavailable report, `modelhub status --json`).
//
// Synchronous on purpose: engine.nodeId is a getter and getModelPath answers synchronously. The
// file is written like src/fs/durable.ts writes (temp name → fsync → into place → fsync the
// directory), and put into place with link(2), which fails when the name exists: two processes
// creating the id at the same moment agree on one id instead of the last rename winning.
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const NODE_ID_FILE = 'node_id';

/** A node id: a UUID as created here, or an id an operator wrote into the file. */
export const nodeIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit');

/** Errors that mean "this platform or file system cannot fsync a directory", not a failure. */
const FSYNC_UNSUPPORTED = new Set(['EISDIR', 'EPERM', 'EACCES', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EBADF']);
/** link(2) refused by the file system (FAT, some network shares): fall back to rename. */
const LINK_UNSUPPORTED = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK']);

export function nodeIdFile(home: string): string {
  return path.join(home, NODE_ID_FILE);
}

type Stored = { id: string } | { missing: true } | { damaged: true };

function readStored(file: string): Stored {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { missing: true };
    throw err;
  }
  const parsed = nodeIdSchema.safeParse(text.trim());
  return parsed.success ? { id: parsed.data } : { damaged: true };
}

/** The id, or null when the home has none yet (or only a damaged file). Never writes. */
export function readNodeId(home: string): string | null {
  const stored = readStored(nodeIdFile(home));
  return 'id' in stored ? stored.id : null;
}

function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    if (!FSYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function writeTemp(file: string, text: string): string {
  const tmp = `${file}.tmp-${process.pid}-${randomUUID().slice(0, 8)}`;
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

/**
 * The id, created when the home has none (the home directory too). A damaged file (not an id)
 * is replaced by a fresh id: an unreadable identity is no identity, and refusing would leave
 * the node without one for good.
 */
export function ensureNodeId(home: string): string {
  const file = nodeIdFile(home);
  const stored = readStored(file);
  if ('id' in stored) return stored.id;
  mkdirSync(home, { recursive: true });
  const tmp = writeTemp(file, `${randomUUID()}\n`);
  try {
    if ('damaged' in stored) {
      renameSync(tmp, file);
    } else {
      try {
        linkSync(tmp, file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        // EEXIST: another process created it first; its id is the node's id.
        if (code !== 'EEXIST') {
          if (!LINK_UNSUPPORTED.has(code)) throw err;
          if (!existsSync(file)) renameSync(tmp, file);
        }
      }
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  fsyncDirSync(home);
  const id = readNodeId(home);
  if (id === null) throw new Error(`${file}: could not create the node id`);
  return id;
}

/**
 * What read-only commands (`status`, `models path`) use. They must never create or change
 * anything in a home that does not exist yet (SPEC §5), so:
 * - the home directory exists: the id is created if missing. It is the node's identity, not
 *   its state — written once, atomically, beside engine.db without touching it — and a
 *   scheduler needs it on the very first report, which is often a `models path` on a node that
 *   has only ever run read-only commands since an upgrade;
 * - the home does not exist: nothing is created and the id is null (a report then says
 *   `"node_id": null`; the first command that sets up the home gives the node its id);
 * - the home cannot be written (read-only media, another user's home): null, and the command
 *   answers as it would have anyway.
 */
export function nodeIdForReadOnly(home: string): string | null {
  try {
    const existing = readNodeId(home);
    if (existing !== null) return existing;
    if (!statSync(home).isDirectory()) return null;
    return ensureNodeId(home);
  } catch {
    return null;
  }
}
