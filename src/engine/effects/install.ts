// The install machine's effects, supplied through installMachine.provide(). Each one is
// idempotent and safe to run again after a crash (NOTES: restored invoked actors restart).
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import type {
  CleanUpInput,
  CommitInput,
  CommitOutput,
  DownloadInput,
  DownloadOutput,
  HealthInput,
  HealthOutput,
  ResolvedRelease,
  ResolveInput,
  RollbackInput,
  RollbackOutput,
  StageInput,
  StageOutput,
  StartInput,
  StartOutput,
  StopOldInput,
  SwitchInput,
  SwitchOutput,
  VerifiedRelease,
  VerifyArchiveInput,
  VerifyManifestInput,
} from '../../../machines/install.js';
import { latestForNode } from '../../metadata/rollout.js';
import { BlobSources, downloadFromSources, servicePackagePath, type BlobSource } from '../../download/sources.js';
import { healthBudgetMs } from '../../schemas/service.js';
import { ModelhubError, toModelhubError } from '../../errors.js';
import { waitHealthy } from '../../runtime/manager.js';
import { serviceManifestSchema } from '../../schemas/manifest.js';
import { parseJsonOrThrow } from '../../schemas/parse.js';
import { stageArchive } from '../../stage/stage.js';
import { Prestager, prestageMarker, verifyPrestaged } from '../../stage/prestage.js';
import { guardedEffect } from '../effect.js';
import { tryDelta } from './install-delta.js';
import { deltaDirOf } from '../../delta/service-delta.js';
import { stageFromContent } from '../../delta/stage-delta.js';
import { writeProof } from '../version-proof.js';
import { exists, fsyncDir, removeDirAtomically } from '../fs-util.js';
import type { JobHandle } from '../runner.js';
import { SpeedMeter } from '../progress.js';
import { engineDownloadOptions, type EngineContext } from './context.js';

/** Log a download checkpoint at most this often (bytes AND time), never per chunk. */
export const CHECKPOINT_BYTES = 8 * 1024 * 1024;
export const CHECKPOINT_MS = 1000;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** A signature by a key this node has revoked is KEY_REVOKED, not merely an unknown key. */
export async function revokedAsKeyRevoked<T>(ctx: EngineContext, verify: () => Promise<T> | T): Promise<T> {
  try {
    return await verify();
  } catch (err) {
    const keyId = err instanceof ModelhubError && err.code === 'UNTRUSTED_KEY' ? err.details['keyId'] : undefined;
    if (typeof keyId === 'string' && (await ctx.trust.revokedIds()).has(keyId)) {
      throw new ModelhubError('KEY_REVOKED', `the release is signed by key ${keyId}, which was revoked`, { details: { keyId }, cause: err });
    }
    throw err;
  }
}

/** Refreshes the revocations from the hub (best effort) and refuses a revoked signer. */
export async function assertNotRevoked(ctx: EngineContext, keyId: string, signal: AbortSignal): Promise<void> {
  try {
    await ctx.trust.applyStatements(await ctx.requireHub().keyStatements(signal));
  } catch {
    // The hub is unreachable or has no statements: what the node already knows still applies.
  }
  if ((await ctx.trust.revokedIds()).has(keyId)) throw new ModelhubError('KEY_REVOKED', `the release is signed by key ${keyId}, which was revoked after it was verified`, { details: { keyId } });
}

/** The downloaded package with its partial and sidecar files. */
async function removeArchive(archivePath: string): Promise<void> {
  for (const f of [archivePath, `${archivePath}.part`, `${archivePath}.part.json`]) await rm(f, { force: true });
  // A delta update's content folder (its files are hard links: the version keeps its own).
  await rm(deltaDirOf(archivePath), { recursive: true, force: true });
}

export function installEffects(ctx: EngineContext, job: JobHandle & { target: () => string; jobId: string }) {
  const { home, adapter, runtime, progress, jobs } = ctx;
  const effect = guardedEffect(job);

  return {
    resolveRelease: effect<ResolveInput, ResolvedRelease>(async ({ request }, signal) => {
      const hub = ctx.requireHub();
      const meta = await ctx.metadata.load(hub, signal);
      let version: string;
      let listedSha256: string | null = null;
      if (meta.snapshot !== null) {
        // Which versions exist, and which is latest, only from the signed snapshot (SPEC §11).
        const byPlatform = meta.snapshot.services[request.id];
        if (byPlatform === undefined) throw new ModelhubError('NOT_FOUND', `service ${request.id} is not in the hub's signed catalog`);
        const entry = byPlatform[request.platform as keyof typeof byPlatform];
        if (entry === undefined) {
          throw new ModelhubError('PLATFORM_NOT_SUPPORTED', `service ${request.id} has no release for ${request.platform}`, { details: { platforms: Object.keys(byPlatform) } });
        }
        // Latest for this node: staged rollouts offer a release to a share of nodes only.
        const latest = latestForNode(entry.versions, ctx.nodeId(), request.id);
        if (request.version === null) {
          if (latest === null) throw new ModelhubError('VERSION_NOT_FOUND', `service ${request.id} has no released version for ${request.platform}`);
          // Offered as latest: this node never goes below it again without --allow-downgrade.
          ctx.metadata.raiseFloor('service', request.id, latest);
        }
        // A node already ahead of what it is offered now (a rollout it was in was halted) keeps
        // what it has: "latest" never asks it to go back.
        const current = ctx.registry.installedState(request.id).current;
        const ahead = request.version === null && current !== null && entry.versions[current] !== undefined && semver.gt(current, latest!);
        version = request.version ?? (ahead ? current : latest!);
        const listed = entry.versions[version];
        if (listed === undefined) throw new ModelhubError('VERSION_NOT_FOUND', `service ${request.id} has no version ${version} in the hub's signed catalog`, { details: { versions: Object.keys(entry.versions) } });
        listedSha256 = listed.manifest_sha256;
      } else {
        // No certified metadata: an explicit version only (its manifest is signed); never "latest".
        if (request.version === null) throw new ModelhubError('UNTRUSTED_KEY', `cannot resolve the latest version of ${request.id}: ${meta.why}`);
        version = request.version;
        const detail = await hub.service(request.id, signal);
        const entry = detail.versions.find((v) => v.version === version);
        if (entry === undefined) {
          throw new ModelhubError('VERSION_NOT_FOUND', `service ${request.id} has no version ${version}`, { details: { versions: detail.versions.map((v) => v.version) } });
        }
        if (entry.platforms[request.platform] === undefined) {
          throw new ModelhubError('PLATFORM_NOT_SUPPORTED', `service ${request.id} ${version} has no release for ${request.platform}`, {
            details: { platforms: Object.keys(entry.platforms) },
          });
        }
      }
      const { manifestText, signatureText } = await hub.serviceManifest(request.id, version, request.platform, signal);
      if (listedSha256 !== null && sha256Hex(manifestText) !== listedSha256) {
        throw new ModelhubError('MANIFEST_MISMATCH', `the manifest served for ${request.id} ${version} is not the one the hub's signed snapshot lists`);
      }
      return {
        version,
        manifestText,
        signatureText,
        archiveUrl: hub.archiveUrl(request.id, version, request.platform),
        installed: ctx.registry.installedState(request.id),
      };
    }),

    verifyManifest: effect<VerifyManifestInput, VerifiedRelease>(async ({ request, release }) => {
      const { manifest, keyId } = await revokedAsKeyRevoked(ctx, async () =>
        ctx.verifyRelease({
          id: request.id,
          version: release.version,
          platform: request.platform,
          allowDowngrade: request.allowDowngrade,
          installedCurrent: release.installed.current,
          manifestText: release.manifestText,
          signatureText: release.signatureText,
          trustedKeys: await ctx.trust.keys(),
        }),
      );
      ctx.metadata.assertAboveFloor('service', request.id, release.version, request.allowDowngrade);
      // Room for the download and the unpacked files, checked before anything is fetched.
      const unpacked = manifest.files.reduce((n, f) => n + f.size, 0);
      await mkdir(home.root, { recursive: true });
      const fsStat = await statfs(home.root);
      const free = fsStat.bavail * fsStat.bsize;
      const need = manifest.archive.size + unpacked + ctx.diskMarginBytes;
      if (free < need) {
        throw new ModelhubError('INSUFFICIENT_DISK', `${need} bytes are needed in ${home.root}, ${free} are free`, { details: { need, free } });
      }
      const hc = manifest.service.health_check;
      return {
        keyId,
        archive: { url: release.archiveUrl, sha256: manifest.archive.sha256, size: manifest.archive.size },
        healthBudgetMs: healthBudgetMs(hc),
      };
    }),

    downloadArchive: effect<DownloadInput, DownloadOutput>(async (input, signal) => {
      await mkdir(home.downloads, { recursive: true });
      const dest = home.archive(input.id, input.version, input.platform, input.archive.sha256);
      const manifest = parseJsonOrThrow(serviceManifestSchema, input.manifestText, 'MANIFEST_INVALID', 'manifest');
      await mkdir(home.serviceDir(input.id), { recursive: true });
      const meter = new SpeedMeter();
      let checkpoint = { bytes: 0, t: ctx.now() };
      let lastRow = 0;
      let started = false;
      // While the network is away the job says so (SPEC §10), and `downloading` again once it answers.
      let phase: 'downloading' | 'waiting_for_network' = 'downloading';
      let p = { bytesDone: 0, bytesTotal: input.archive.size };
      // Mirrors first, then the hub (SPEC §12); the downloadSource hook names each source asked.
      const sources = new BlobSources(ctx.mirrors ?? []);
      let source: BlobSource | null = null;
      const asking = (s: BlobSource): void => {
        source = s;
        progress.hooks.emit('downloadSource', { jobId: job.jobId, target: job.target(), kind: s.kind, url: s.base });
      };
      const report = (force: boolean): void => {
        const t = ctx.now();
        const s = meter.sample(p.bytesDone, t);
        const flowing = phase === 'downloading';
        const ev = {
          jobId: job.jobId,
          kind: 'install' as const,
          target: job.target(),
          phase,
          bytesDone: p.bytesDone,
          bytesTotal: p.bytesTotal,
          speedBps: flowing ? s.speedBps : 0,
          etaSeconds: flowing ? s.etaSeconds(p.bytesTotal) : null,
          ts: t,
        };
        progress.emit(ev);
        if (force || t - lastRow >= 250) {
          lastRow = t;
          jobs.setProgress(job.jobId, ev);
        }
        if (p.bytesDone - checkpoint.bytes >= CHECKPOINT_BYTES && t - checkpoint.t >= CHECKPOINT_MS) {
          checkpoint = { bytes: p.bytesDone, t };
          job.send({ type: 'DOWNLOAD_PROGRESS', bytesDone: p.bytesDone, bytesTotal: p.bytesTotal });
        }
      };
      // An update fetches only the files this node lacks (src/delta); otherwise the whole package.
      const delta = await tryDelta(ctx, job, {
        input,
        manifest,
        dest,
        sources,
        signal,
        onProgress: (bytesDone, bytesTotal) => {
          p = { bytesDone, bytesTotal };
          report(false);
        },
        onSource: asking,
      });
      if (delta.output !== null) {
        report(true);
        return delta.output;
      }
      p = { bytesDone: 0, bytesTotal: input.archive.size };
      // Stage while downloading; the stage step checks the result or does the work itself.
      const prestager = ctx.prestage === false ? null : new Prestager({ dest, manifest, stagingDir: home.stagingDir(input.id, input.jobId), signal });
      try {
        const r = await downloadFromSources({
          url: input.archive.url,
          dest,
          expectedSize: input.archive.size,
          expectedSha256: input.archive.sha256,
          ...engineDownloadOptions(ctx, job, signal),
          // The archive is a cache whose hash is checked again before any reuse; the staged
          // files are what must survive a power cut, and they are fsynced.
          durable: false,
          // The prestager follows the contiguous prefix on disk; bytes it read that become void
          // (a restart from zero, a refetch after a wrong hash, a mirror's bad bytes, a deleted
          // part) stop it for good: the stage step then stages the verified archive itself.
          onFlushed: (n) => prestager?.flushedTo(n),
          onRestart: () => prestager?.abandon('the bytes it followed became void'),
          onNetworkWait: (waiting) => {
            phase = waiting ? 'waiting_for_network' : 'downloading';
            report(true);
          },
          onProgress: (e) => {
            if (!started) {
              started = true;
              progress.hooks.emit('downloadStart', { jobId: job.jobId, target: job.target(), url: source?.url ?? input.archive.url, bytesTotal: e.bytesTotal, resumedFrom: e.resumedFrom });
            }
            p = { bytesDone: e.bytesDone, bytesTotal: e.bytesTotal };
            report(false);
          },
        }, sources, servicePackagePath(input.id, input.version, input.platform), { onSource: asking });
        progress.hooks.emit('downloadComplete', { jobId: job.jobId, target: job.target(), bytes: r.size, sha256: r.sha256 });
        const prestaged = prestager === null ? false : await prestager.finish(r.size);
        return { path: r.path, size: r.size, sha256: r.sha256, bytesFetched: r.bytesFetched, resumedFrom: r.resumedFrom, prestaged, source: r.source, sources: sources.report(), ...(delta.fallback === null ? {} : { deltaFallback: delta.fallback }) };
      } catch (err) {
        prestager?.abandon('the download failed');
        await prestager?.settle();
        const e = toModelhubError(err);
        if (!signal.aborted) progress.hooks.emit('downloadError', { jobId: job.jobId, target: job.target(), error: { code: e.code, message: e.message } });
        throw err;
      }
    }),

    verifyArchive: effect<VerifyArchiveInput, DownloadOutput>(async ({ download, archive }) => {
      // A delta update has no package to check: each file was verified against its signed
      // SHA-256 and size as it was gathered (src/delta/service-delta.ts); staging checks again
      // that every one is there.
      if (download.delta !== undefined) return download;
      // The hash was computed while streaming; here the file on disk must still be that file.
      const s = await stat(download.path).catch((err: unknown) => {
        throw new ModelhubError('CHECKSUM_MISMATCH', `the downloaded archive is gone: ${(err as Error).message}`, { cause: err });
      });
      if (s.size !== archive.size) throw new ModelhubError('CHECKSUM_MISMATCH', `archive is ${s.size} bytes, the manifest says ${archive.size}`);
      if (download.sha256 !== archive.sha256) throw new ModelhubError('CHECKSUM_MISMATCH', `archive sha256 ${download.sha256} differs from the signed ${archive.sha256}`);
      return download;
    }),

    stageRelease: effect<StageInput, StageOutput>(async (input, signal) => {
      // A key revoked since the manifest was verified: nothing it signed is switched in.
      await assertNotRevoked(ctx, input.keyId, signal);
      const manifest = parseJsonOrThrow(serviceManifestSchema, input.manifestText, 'MANIFEST_INVALID', 'manifest');
      const stagingDir = home.stagingDir(input.id, input.jobId);
      await mkdir(home.serviceDir(input.id), { recursive: true });
      // The signed manifest and signature stay with the version (SPEC §13), on disk before the switch.
      const proof = { manifestText: input.manifestText, signatureText: input.signatureText };
      const onProgress = (p: { bytesDone: number; bytesTotal: number }): void =>
        progress.emit({ jobId: job.jobId, kind: 'install', target: job.target(), phase: 'staging', bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, speedBps: 0, etaSeconds: null, ts: ctx.now() });
      if (input.contentDir !== undefined && input.contentDir !== null) {
        // A delta update: the version folder is made of the verified files gathered by hash.
        const r = await stageFromContent({ manifest, contentDir: input.contentDir, stagingDir, signal, onProgress });
        await writeProof(stagingDir, proof);
        return { stagingDir, files: r.files, bytes: r.bytes };
      }
      if (input.prestaged && (await verifyPrestaged(input.archivePath, manifest, stagingDir))) {
        await writeProof(stagingDir, proof);
        await fsyncDir(stagingDir);
        return { stagingDir, files: manifest.files.length, bytes: manifest.files.reduce((n, f) => n + f.size, 0) };
      }
      await rm(prestageMarker(stagingDir), { force: true });
      const r = await stageArchive({ archive: input.archivePath, manifest, stagingDir, signal, onProgress });
      await writeProof(stagingDir, proof);
      return { stagingDir, files: r.files, bytes: r.bytes };
    }),

    switchVersion: effect<SwitchInput, SwitchOutput>(async ({ id, version, stagingDir, previous }) => {
      const serviceDir = home.serviceDir(id);
      const versionDir = home.versionDir(id, version);
      const registered = ctx.registry.installedState(id).versions.includes(version);
      if (await exists(stagingDir)) {
        // A committed version directory is never modified; an unregistered one is debris.
        if (await exists(versionDir)) {
          if (registered) await rm(stagingDir, { recursive: true, force: true });
          else {
            await removeDirAtomically(versionDir);
            await adapter.renameWithRetry(stagingDir, versionDir);
          }
        } else {
          await adapter.renameWithRetry(stagingDir, versionDir);
        }
        await fsyncDir(serviceDir);
      } else if (!(await exists(versionDir))) {
        throw new ModelhubError('INTERNAL', `neither ${stagingDir} nor ${versionDir} exists`);
      }
      await adapter.writeCurrent(serviceDir, version);
      return { current: version, previous: previous === version ? ctx.registry.previousOf(id) : previous };
    }),

    stopOldVersion: effect<StopOldInput, { stopped: boolean }>(async ({ id }) => ({ stopped: await runtime.stop(id) })),

    startService: effect<StartInput, StartOutput>(async ({ id, version }) => {
      const s = await runtime.start(id, version);
      return { pid: s.pid, port: s.port, startedAt: s.startedAt };
    }),

    checkHealth: effect<HealthInput, HealthOutput>(async ({ id, version, pid, port, deadline }, signal) => {
      const service = await runtime.serviceJson(id, version);
      return waitHealthy({ port, health: service.health_check, pid, deadline, signal });
    }),

    commitRelease: effect<CommitInput, CommitOutput>(async ({ id, version, previous, archivePath }) => {
      ctx.metadata.raiseFloor('service', id, version);
      // Keep current + previous, and whatever version still runs (after --no-start updates).
      const keep = new Set([version, previous, runtime.running(id)?.version ?? null].filter((v): v is string => v !== null));
      const serviceDir = home.serviceDir(id);
      const removed: string[] = [];
      // Housekeeping only: the new version is healthy and current whatever happens here, so a
      // directory that cannot be removed now (a file held open) is left for a later commit.
      for (const name of await readdir(serviceDir)) {
        if (semver.valid(name) !== name || keep.has(name)) continue;
        try {
          await removeDirAtomically(path.join(serviceDir, name));
          removed.push(name);
        } catch (err) {
          ctx.warn(`could not remove ${id} ${name}: ${(err as Error).message}`);
        }
      }
      for (const v of ctx.registry.installedState(id).versions) {
        if (!keep.has(v) && !removed.includes(v) && !(await exists(path.join(serviceDir, v)))) removed.push(v);
      }
      if (archivePath !== null) await removeArchive(archivePath);
      return { removed: removed.sort(semver.compare) };
    }),

    cleanUp: effect<CleanUpInput, { removed: string[] }>(async ({ jobId, id, stagingDir, archivePath, archive, discardDownload }) => {
      const removed: string[] = [];
      await rm(prestageMarker(home.stagingDir(id, jobId)), { force: true });
      for (const dir of [stagingDir, home.stagingDir(id, jobId)]) {
        if (dir !== null && (await exists(dir))) {
          await rm(dir, { recursive: true, force: true });
          removed.push(dir);
        }
      }
      const archiveFile = archivePath ?? (archive === null ? null : home.archive(id, archive.version, archive.platform, archive.sha256));
      if (discardDownload && archiveFile !== null) {
        await removeArchive(archiveFile);
        removed.push(archiveFile);
      }
      return { removed };
    }),

    rollBack: effect<RollbackInput, RollbackOutput>(async ({ jobId, id, version, previous, restartPrevious, keepNewVersionDir, archivePath }, signal) => {
      const serviceDir = home.serviceDir(id);
      await runtime.stop(id, version);
      await rm(home.stagingDir(id, jobId), { recursive: true, force: true });
      await mkdir(serviceDir, { recursive: true });
      if (previous !== null && (await exists(home.versionDir(id, previous)))) await adapter.writeCurrent(serviceDir, previous);
      else await adapter.removeCurrent(serviceDir);
      if (!keepNewVersionDir && version !== previous) await removeDirAtomically(home.versionDir(id, version));
      const current = previous !== null && (await exists(home.versionDir(id, previous))) ? previous : null;
      // The package of a release that failed is of no further use.
      if (archivePath !== null) await removeArchive(archivePath);
      let restarted = false;
      if (restartPrevious && current !== null) {
        try {
          const running = runtime.running(id);
          const s = running !== undefined && running.version === current ? { pid: running.pid, port: running.port, service: await runtime.serviceJson(id, current) } : await runtime.start(id, current);
          const hc = s.service.health_check;
          await waitHealthy({ port: s.port, health: hc, pid: s.pid, deadline: ctx.now() + healthBudgetMs(hc), signal });
          restarted = true;
        } catch (err) {
          ctx.warn(`rollback of ${id}: the previous version ${current} did not come back healthy: ${toModelhubError(err).message}`);
        }
      }
      return { current, restarted };
    }),
  };
}
