// Staging of a delta update: the version folder is built from the content folder that
// service-delta.ts filled (every file of the release under its SHA-256), not from a package.
// The result is the folder a full install stages (src/stage/stage.ts): exactly the manifest's
// files, directories 0755, file modes from the signed manifest only (staged-mode.ts), the
// extracted service.json equal to the manifest's service, everything fsynced.
//
// Files are hard links to the content folder's (whose bytes were verified against their signed
// hash when they got there), so unchanged files take no second copy on disk. A link shares its
// inode's mode, so a file whose mode differs from the one wanted is copied instead (and so is
// every file on a file system without hard links). Like the stager, this wipes the staging
// folder first and removes it on failure: recovery simply redoes it (restart table: `redo`).
import { chmod, lstat, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { fsyncDir } from '../fs/durable.js';
import { copyDurably, linkOrCopy } from '../fs/link.js';
import type { ServiceManifest } from '../schemas/manifest.js';
import { pathListViolation } from '../schemas/safe-path.js';
import { assertServiceJsonMatches, DIR_MODE, SERVICE_JSON, unsafeNameReason, type StageProgress, type StageResult } from '../stage/stage.js';
import { stagedMode } from '../stage/staged-mode.js';

export interface DeltaStageRequest {
  manifest: ServiceManifest;
  /** The content folder: every file of the release, named by its SHA-256. */
  contentDir: string;
  /** Removed if present, then created. */
  stagingDir: string;
  signal?: AbortSignal;
  onProgress?: (p: StageProgress) => void;
}

export interface DeltaStageResult extends StageResult {
  linked: number;
  copied: number;
}

function unsafe(message: string, entry: string): ModelhubError {
  return new ModelhubError('UNSAFE_ARCHIVE', message, { details: { entry } });
}

export async function stageFromContent(req: DeltaStageRequest): Promise<DeltaStageResult> {
  const staging = path.resolve(req.stagingDir);
  if (path.parse(staging).root === staging) throw new ModelhubError('INVALID_REQUEST', `stagingDir: ${JSON.stringify(req.stagingDir)} is a file-system root`);
  const files = [...req.manifest.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  // The one path rule set, over the whole list, and what this host cannot create.
  const violation = pathListViolation(files.map((f) => f.path));
  if (violation !== undefined) throw new ModelhubError('MANIFEST_INVALID', `manifest: files: ${violation.message}`, { details: { entry: violation.path } });
  for (const f of files) {
    const why = unsafeNameReason(f.path);
    if (why !== undefined) throw unsafe(`file ${JSON.stringify(f.path)}: ${why}`, f.path);
  }
  const serviceJson = files.find((f) => f.path === SERVICE_JSON);
  if (serviceJson === undefined) throw new ModelhubError('MANIFEST_INVALID', `manifest: files: ${SERVICE_JSON} is missing`);

  await rm(staging, { recursive: true, force: true });
  try {
    await mkdir(path.dirname(staging), { recursive: true });
    await mkdir(staging, { mode: DIR_MODE });
    await chmod(staging, DIR_MODE);
    const bytesTotal = files.reduce((n, f) => n + f.size, 0);
    let bytesDone = 0;
    let linked = 0;
    let copied = 0;
    const dirs = new Set<string>();
    const created: string[] = [];
    for (const f of files) {
      req.signal?.throwIfAborted();
      const segments = f.path.split('/');
      let rel = '';
      for (const seg of segments.slice(0, -1)) {
        rel = rel === '' ? seg : `${rel}/${seg}`;
        if (dirs.has(rel)) continue;
        const abs = path.join(staging, ...rel.split('/'));
        await mkdir(abs, { mode: DIR_MODE });
        await chmod(abs, DIR_MODE); // the umask may have narrowed it
        dirs.add(rel);
        created.push(abs);
      }
      const dest = path.join(staging, ...segments);
      if (!dest.startsWith(staging + path.sep)) throw unsafe(`file ${JSON.stringify(f.path)} resolves outside the staging directory`, f.path);
      const src = path.join(req.contentDir, f.sha256);
      const st = await lstat(src).catch(() => null);
      if (st === null || !st.isFile() || st.size !== f.size) {
        // The content folder lost a file since it was gathered: its bytes are gone, fetch again.
        throw new ModelhubError('CHECKSUM_MISMATCH', `${f.path}: its verified bytes (${f.sha256}) are missing from ${req.contentDir}`, { details: { entry: f.path } });
      }
      const mode = stagedMode(f.mode);
      if ((st.mode & 0o7777) === mode) {
        if ((await linkOrCopy(src, dest, mode)) === 'linked') linked += 1;
        else copied += 1;
      } else {
        await copyDurably(src, dest, mode);
        copied += 1;
      }
      bytesDone += f.size;
      req.onProgress?.({ bytesDone, bytesTotal, file: f.path });
    }
    assertServiceJsonMatches(await readFile(path.join(req.contentDir, serviceJson.sha256)), req.manifest);
    for (const dir of created.reverse()) await fsyncDir(dir);
    await fsyncDir(staging);
    return { files: files.length, bytes: bytesDone, linked, copied };
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err instanceof ModelhubError || req.signal?.aborted === true ? err : new ModelhubError(isNoSpace(err) ? 'INSUFFICIENT_DISK' : 'INTERNAL', `staging ${staging}: ${(err as Error).message}`, { cause: err });
  }
}

function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
