// The repair machine's effects (machines/repair.ts). What is fetched is proven the way an
// install proves it: a service's single zip entries by their signed SHA-256 as they are written
// (src/delta), or the whole package by its signed SHA-256 before any entry is read from it; a
// model's files one by one by theirs. Only the damaged files are written into the version
// folder, each by temp name → fsync → rename, so a reader sees the old or the signed bytes.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { CheckVersionOutput, DamagedFile, FetchDamagedInput, FetchDamagedOutput, RepairInput, ReplaceFilesInput, ReplaceFilesOutput } from '../../../machines/repair.js';
import { DeltaUnavailable, type DeltaFallbackReason } from '../../delta/errors.js';
import { fetchDelta, type LocalFile } from '../../delta/service-delta.js';
import { writeVerifiedFile } from '../../delta/verified-file.js';
import { hashFile } from '../../download/resume.js';
import { BlobSources, downloadFromSources, modelFilePath, servicePackagePath } from '../../download/sources.js';
import { ModelhubError } from '../../errors.js';
import { copyDurably, linkOrCopy } from '../../fs/link.js';
import { BlobStore } from '../../store/blobs.js';
import { serviceManifestSchema, type ManifestFile } from '../../schemas/manifest.js';
import { parseJsonOrThrow } from '../../schemas/parse.js';
import { stagedMode } from '../../stage/staged-mode.js';
import { forEachEntry, openEntryStream, openZip } from '../../zip/open-zip.js';
import { guardedEffect } from '../effect.js';
import { exists, fsyncDir, removeDirAtomically } from '../fs-util.js';
import type { JobHandle } from '../runner.js';
import { checkVersionFiles } from '../version-check.js';
import { readProof, verifyProof, writeProof, type ProvenManifest, type VersionProof } from '../version-proof.js';
import { engineDownloadOptions, type EngineContext } from './context.js';

/** Ranged reads that failed for one source only: the next source may serve them (as install-delta.ts). */
const SOURCE_FAULTS = new Set<DeltaFallbackReason>(['range_ignored', 'archive_differs', 'bad_archive', 'manifest_mismatch', 'entry_mismatch', 'network']);

/** The job's own names in downloads/: the fetched files (by SHA-256), and a package when one is needed. */
export function repairContentDir(ctx: EngineContext, jobId: string): string {
  return path.join(ctx.home.downloads, `repair-${jobId}`);
}
function repairPackage(ctx: EngineContext, jobId: string): string {
  return path.join(ctx.home.downloads, `repair-${jobId}.zip`);
}

function versionDirOf(ctx: EngineContext, subject: 'service' | 'model', id: string, version: string): string {
  return subject === 'service' ? ctx.home.versionDir(id, version) : ctx.home.modelDir(id, version);
}

/** Is `file` a regular file with these signed bytes? */
async function matches(file: string, f: { sha256: string; size: number }, signal?: AbortSignal): Promise<boolean> {
  const s = await lstat(file).catch(() => null);
  return s !== null && s.isFile() && s.size === f.size && (await hashFile(file, signal)) === f.sha256;
}

export function repairEffects(ctx: EngineContext, job: JobHandle & { jobId: string; target: () => string }, o: { platform: string }) {
  const effect = guardedEffect(job);

  /** The platform a service version was installed for: its registered manifest says; else this node's. */
  function platformOf(id: string, version: string): string {
    const text = ctx.registry.serviceManifest(id, version);
    if (text === undefined) return o.platform;
    try {
      return serviceManifestSchema.parse(JSON.parse(text)).platform;
    } catch {
      return o.platform;
    }
  }

  const progress = (phase: string, bytesDone: number, bytesTotal: number): void =>
    ctx.progress.emit({ jobId: job.jobId, kind: 'repair', target: job.target(), phase, bytesDone, bytesTotal, speedBps: 0, etaSeconds: null, ts: ctx.now() });

  return {
    checkVersion: effect<RepairInput, CheckVersionOutput>(async ({ subject, id, version }, signal) => {
      const dir = versionDirOf(ctx, subject, id, version);
      const keys = await ctx.trust.keys();
      const want = { kind: subject, id, version };
      let proof: VersionProof | null = await readProof(dir);
      let proven: ProvenManifest | null = null;
      if (proof !== null) {
        try {
          proven = verifyProof(proof, want, keys);
        } catch {
          // A proof that does not verify is damage too: the hub's signed manifest replaces it.
          proof = null;
        }
      }
      const writeProofAgain = proven === null;
      if (proof === null || proven === null) {
        const hub = ctx.requireHub();
        proof = subject === 'service' ? await hub.serviceManifest(id, version, platformOf(id, version), signal) : await hub.modelManifest(id, version, signal);
        proven = verifyProof(proof, want, keys);
        const registered = subject === 'service' ? ctx.registry.serviceManifest(id, version) : ctx.registry.modelManifest(id, version);
        if (registered !== undefined && registered !== '{}' && registered !== proof.manifestText) {
          throw new ModelhubError('MANIFEST_MISMATCH', `the hub's signed manifest of ${id} ${version} is not the one this version was installed with`);
        }
      }
      const files = await checkVersionFiles(dir, proven.manifest.files, signal);
      const bad = new Set([...files.modified, ...files.missing]);
      const damaged: DamagedFile[] = proven.manifest.files
        .filter((f: ManifestFile) => bad.has(f.path))
        .map((f) => ({ path: f.path, sha256: f.sha256, size: f.size, ...(f.mode === undefined ? {} : { mode: f.mode }) }));
      let pointerBroken = false;
      if (subject === 'service' && ctx.registry.installedState(id).current === version) {
        const pointer = await ctx.adapter.readCurrent(ctx.home.serviceDir(id)).catch(() => null);
        pointerBroken = pointer !== version;
      }
      return { damaged, manifestText: proof.manifestText, signatureText: proof.signatureText, writeProof: writeProofAgain, pointerBroken };
    }),

    fetchDamaged: effect<FetchDamagedInput, FetchDamagedOutput>(async ({ jobId, subject, id, version, manifestText, damaged }, signal) => {
      const contentDir = repairContentDir(ctx, jobId);
      await mkdir(contentDir, { recursive: true });
      const blobs = new BlobStore(ctx.home.blobs);
      const sources = new BlobSources(ctx.mirrors ?? []);
      const hub = ctx.requireHub();
      const total = damaged.reduce((n, f) => n + f.size, 0);
      let bytesFetched = 0;
      const common = engineDownloadOptions(ctx, job, signal);

      if (subject === 'model') {
        let done = 0;
        for (const f of damaged) {
          const dest = path.join(contentDir, f.sha256);
          // Fetched by an interrupted run of this job already, or whole in the model store (a
          // version's file removed, its shared bytes intact): nothing to fetch.
          if (!(await matches(dest, f, signal)) && !(await matches(blobs.pathOf(f.sha256), f, signal))) {
            const r = await downloadFromSources({ ...common, url: hub.modelFileUrl(id, version, f.path), dest, expectedSize: f.size, expectedSha256: f.sha256, onProgress: (p) => progress('downloading', done + p.bytesDone, total) }, sources, modelFilePath(id, version, f.path));
            bytesFetched += r.bytesFetched;
          }
          done += f.size;
        }
        return { contentDir, bytesFetched, method: 'files', fallback: null };
      }

      const manifest = parseJsonOrThrow(serviceManifestSchema, manifestText, 'MANIFEST_INVALID', 'manifest');
      const storagePath = servicePackagePath(id, version, manifest.platform);
      const url = hub.archiveUrl(id, version, manifest.platform);
      const bad = new Set(damaged.map((f) => f.path));
      // The intact files of this version: what single entries are not fetched for (each is hashed again before use).
      const dir = ctx.home.versionDir(id, version);
      const local: LocalFile[] = manifest.files.filter((f) => !bad.has(f.path)).map((f) => ({ path: path.join(dir, ...f.path.split('/')), sha256: f.sha256, size: f.size }));
      let fallback = ctx.delta === false ? 'delta updates are turned off' : null;
      if (ctx.delta !== false) {
        for (const s of sources.for(url, storagePath)) {
          const use = sources.use(s);
          try {
            await fetchDelta({
              manifest,
              url: s.url,
              fetch: ctx.fetch,
              signal,
              ...(ctx.stallTimeoutMs === undefined ? {} : { stallTimeoutMs: ctx.stallTimeoutMs }),
              ...(ctx.bandwidth === undefined ? {} : { bandwidth: ctx.bandwidth }),
              dir: contentDir,
              local,
              // A repair fetches only damaged entries: ranges pay off whatever their share.
              maxShare: 1,
              guard: () => job.assertLease(),
              onBytes: (n) => {
                use.bytes += n;
                bytesFetched += n;
              },
              onProgress: (d, t) => progress('downloading', d, t),
            });
            return { contentDir, bytesFetched, method: 'range', fallback: null };
          } catch (err) {
            if (!(err instanceof DeltaUnavailable) || signal.aborted) throw err;
            fallback = `${err.reason}: ${err.message}`;
            if (SOURCE_FAULTS.has(err.reason)) continue;
            break;
          }
        }
      }
      // The whole package, proven by its signed SHA-256, then only the damaged entries out of it.
      const pkg = repairPackage(ctx, jobId);
      const r = await downloadFromSources(
        { ...common, url, dest: pkg, expectedSize: manifest.archive.size, expectedSha256: manifest.archive.sha256, onProgress: (p) => progress('downloading', p.bytesDone, p.bytesTotal) },
        sources,
        storagePath,
      );
      bytesFetched += r.bytesFetched;
      const byPath = new Map(damaged.map((f) => [f.path, f]));
      const zip = await openZip(pkg);
      try {
        await forEachEntry(zip, async (entry) => {
          const f = byPath.get(entry.fileName);
          if (f === undefined || (await matches(path.join(contentDir, f.sha256), f, signal))) return;
          await writeVerifiedFile((await openEntryStream(zip, entry)) as AsyncIterable<Uint8Array>, { dest: path.join(contentDir, f.sha256), sha256: f.sha256, size: f.size, mode: stagedMode(f.mode), guard: () => job.assertLease(), label: f.path });
        });
      } finally {
        zip.close();
      }
      for (const f of damaged) {
        if (!(await exists(path.join(contentDir, f.sha256)))) throw new ModelhubError('UNSAFE_ARCHIVE', `${f.path} is not in the package`, { details: { entry: f.path } });
      }
      await fsyncDir(contentDir);
      return { contentDir, bytesFetched, method: 'package', fallback };
    }),

    replaceFiles: effect<ReplaceFilesInput, ReplaceFilesOutput>(async ({ subject, id, version, contentDir, damaged, proof, pointerBroken }, signal) => {
      const dir = versionDirOf(ctx, subject, id, version);
      await mkdir(dir, { recursive: true });
      const blobs = new BlobStore(ctx.home.blobs);
      const repaired: string[] = [];
      const dirs = new Set<string>();
      for (const f of damaged) {
        job.assertLease();
        const dest = path.join(dir, ...f.path.split('/'));
        // Replaced by an interrupted run of this job already.
        if (!(await matches(dest, f, signal))) {
          const fetched = contentDir === null ? null : path.join(contentDir, f.sha256);
          const from = fetched !== null && (await matches(fetched, f, signal)) ? fetched : subject === 'model' && (await matches(blobs.pathOf(f.sha256), f, signal)) ? blobs.pathOf(f.sha256) : null;
          if (from === null) throw new ModelhubError('CHECKSUM_MISMATCH', `no verified copy of ${f.path} to put back`, { details: { entry: f.path } });
          // A directory where the file belongs (a kind of damage too) goes first.
          if ((await lstat(dest).catch(() => null))?.isDirectory() === true) await removeDirAtomically(dest);
          await mkdir(path.dirname(dest), { recursive: true });
          if (subject === 'service') {
            await copyDurably(from, dest, stagedMode(f.mode));
          } else {
            // A model's files are the store's blobs hard-linked into the version (src/store): the
            // fetched bytes replace a damaged blob, then the version links the blob again.
            if (from === fetched) await blobs.adopt(fetched, f.sha256, f.size, { replace: !(await matches(blobs.pathOf(f.sha256), f, signal)) });
            const tmp = `${dest}.repair-${randomBytes(4).toString('hex')}`;
            await linkOrCopy(blobs.pathOf(f.sha256), tmp, 0o644);
            await rename(tmp, dest);
          }
          dirs.add(path.dirname(dest));
        }
        repaired.push(f.path);
      }
      for (const d of dirs) await fsyncDir(d);
      if (proof !== null) await writeProof(dir, proof);
      let pointerRepaired = false;
      if (pointerBroken) {
        // Only a pointer that was already broken: a working `current` is never switched by a repair.
        await ctx.adapter.writeCurrent(ctx.home.serviceDir(id), version);
        pointerRepaired = true;
      }
      return { repaired, proofWritten: proof !== null, pointerRepaired };
    }),

    cleanUpRepair: effect<{ jobId: string }, { removed: string[] }>(async ({ jobId }) => {
      const removed: string[] = [];
      const pkg = repairPackage(ctx, jobId);
      for (const p of [repairContentDir(ctx, jobId), pkg, `${pkg}.part`, `${pkg}.part.json`]) {
        if (await exists(p)) {
          await rm(p, { recursive: true, force: true });
          removed.push(p);
        }
      }
      // Partial-download sidecars with other suffixes (segments) share the package's name.
      for (const name of await readdir(ctx.home.downloads).catch(() => [] as string[])) {
        if (name.startsWith(`repair-${jobId}.zip.`)) await rm(path.join(ctx.home.downloads, name), { recursive: true, force: true });
      }
      return { removed };
    }),
  };
}
