// The content-addressed store of model files: `<home>/blobs/sha256/<hex>`, one file per SHA-256,
// hard-linked into every model version folder that has those bytes (`models/<id>/<version>/…`),
// so versions that share a file neither download nor store it twice.
//
// - Only verified bytes enter the store: a file the downloader has checked against its signed
//   hash is linked (or copied) in under its hash. Placing a blob into a new version is checked
//   again by the downloader (it hashes an existing destination before trusting it) — a damaged
//   blob costs a download, never a wrong file.
// - A blob is in use while anything else links to it (its link count is above 1: a version
//   folder, a pull's partial folder) or while an installed model version lists its hash (the
//   registry): the second rule keeps blobs that had to be copied (no hard links between the
//   store and the models folder: another volume, a file system without them). Freeing is one
//   unlink of an unused name, so a crash at any point leaves either the blob or nothing; a blob
//   left unused by a crash is freed by the next uninstall or gc.
// - Links work within one file system only; where they fail the bytes are copied (temp name,
//   fsync, rename) and the caller is told, so it can say that the file takes disk twice.
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from '../download/errors.js';
import { fsyncDir } from '../fs/durable.js';
import { cannotLink, copyDurably, linkOrCopy, type Placement } from '../fs/link.js';

const HEX64 = /^[0-9a-f]{64}$/;

export interface FreedBlob {
  path: string;
  bytes: number;
}

export class BlobStore {
  /** `dir` is `<home>/blobs/sha256`. */
  constructor(readonly dir: string) {}

  pathOf(sha256: string): string {
    if (!HEX64.test(sha256)) throw new Error(`not a SHA-256: ${JSON.stringify(sha256)}`);
    return path.join(this.dir, sha256);
  }

  /** The blob's size when the store has it, else null. */
  private async sizeOf(sha256: string): Promise<number | null> {
    const st = await lstat(this.pathOf(sha256)).catch(() => null);
    return st !== null && st.isFile() ? st.size : null;
  }

  /**
   * Puts the stored bytes of `sha256` at `dest` (which must not exist): a hard link, or a copy
   * when linking is not possible. Null when the store does not have a blob of `size` bytes. The
   * caller verifies `dest` before it relies on it.
   */
  async place(sha256: string, size: number, dest: string): Promise<Placement | null> {
    if ((await this.sizeOf(sha256)) !== size) return null;
    try {
      return await linkOrCopy(this.pathOf(sha256), dest);
    } catch (err) {
      // Freed meanwhile (an uninstall in another process): as if it had never been there.
      if (isErrno(err, 'ENOENT')) return null;
      throw err;
    }
  }

  /**
   * Keeps the verified file `file` (its bytes hash to `sha256`) in the store: a hard link, or a
   * copy when linking is not possible; 'present' when the store has those bytes already. With
   * `replace`, a blob the store has is replaced (it was found damaged).
   */
  async adopt(file: string, sha256: string, size: number, o: { replace?: boolean } = {}): Promise<Placement | 'present'> {
    const blob = this.pathOf(sha256);
    const have = await this.sizeOf(sha256);
    if (have === size && o.replace !== true) return 'present';
    await mkdir(this.dir, { recursive: true });
    if (have === null) {
      const how = await this.create(file, blob);
      if (how !== null) {
        await fsyncDir(this.dir);
        return how;
      }
      return 'present'; // another pull stored it first
    }
    // A damaged blob (wrong size, or found wrong by the caller): replaced in one rename.
    const tmp = `${blob}.tmp-${randomBytes(4).toString('hex')}`;
    const how = await linkOrCopy(file, tmp);
    await rename(tmp, blob);
    await fsyncDir(this.dir);
    return how;
  }

  /** Creates the blob's name for `file`'s bytes; null when someone else created it first. */
  private async create(file: string, blob: string): Promise<Placement | null> {
    try {
      await link(file, blob);
      return 'linked';
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return null;
      if (!cannotLink(err)) throw err;
    }
    await copyDurably(file, blob);
    return 'copied';
  }

  /**
   * Frees the blobs nothing uses: link count 1 (only the store's name) and not listed by any
   * installed model version (`referenced`). Looks at `only` when given (the hashes of what was
   * just removed), else at every blob; skips blobs changed less than `graceMs` ago (a pull in
   * another process may have just stored one), and removes temp names of interrupted writes.
   */
  async free(o: { referenced: ReadonlySet<string>; only?: Iterable<string>; now: number; graceMs: number }): Promise<FreedBlob[]> {
    const names = o.only === undefined ? await readdir(this.dir).catch(() => [] as string[]) : [...new Set(o.only)];
    const freed: FreedBlob[] = [];
    for (const name of names) {
      const p = path.join(this.dir, name);
      const st = await lstat(p).catch(() => null);
      if (st === null) continue;
      if (o.now - st.ctimeMs < o.graceMs) continue;
      if (!HEX64.test(name)) {
        if (name.includes('.tmp-')) {
          await rm(p, { force: true });
          freed.push({ path: p, bytes: st.size });
        }
        continue;
      }
      if (!st.isFile() || st.nlink > 1 || o.referenced.has(name)) continue;
      await rm(p, { force: true });
      freed.push({ path: p, bytes: st.size });
    }
    if (freed.length > 0) await fsyncDir(this.dir);
    return freed;
  }
}
