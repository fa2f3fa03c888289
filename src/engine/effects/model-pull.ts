// The model pull machine's effects. Files download into <models>/<id>/.partial-<version>/,
// three at a time, each resumable and checked against the signed manifest; a failed or
// interrupted pull leaves that directory for the next pull to resume (seed 002).
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import type {
  CleanUpModelInput,
  DownloadModelInput,
  DownloadModelOutput,
  InstallModelInput,
  ResolvedModel,
  ResolveModelInput,
  VerifiedModel,
  VerifyModelInput,
} from '../../../machines/model-pull.js';
import { BlobSources, downloadFromSources, modelFilePath } from '../../download/sources.js';
import { ModelhubError } from '../../errors.js';
import { modelManifestSchema } from '../../schemas/manifest.js';
import { assertManifestConsistent } from '../../schemas/manifest-rules.js';
import { parseJsonOrThrow } from '../../schemas/parse.js';
import { verifyOrThrow } from '../../sign/verify.js';
import { guardedEffect } from '../effect.js';
import { BlobStore } from '../../store/blobs.js';
import { keepInStore, reuseStored, type StoreUse } from '../../store/model-files.js';
import { writeProof } from '../version-proof.js';
import { exists, fsyncDir } from '../fs-util.js';
import { SpeedMeter } from '../progress.js';
import type { JobHandle } from '../runner.js';
import { CHECKPOINT_BYTES, CHECKPOINT_MS, revokedAsKeyRevoked } from './install.js';
import { engineDownloadOptions, type EngineContext } from './context.js';

/** Seed 003 §1.5: at most three files at once. */
export const PARALLEL_FILES = 3;

export function partialDir(ctx: EngineContext, id: string, version: string): string {
  return path.join(ctx.home.models, id, `.partial-${version}`);
}

export function modelPullEffects(ctx: EngineContext, job: JobHandle & { target: () => string; jobId: string }) {
  const effect = guardedEffect(job);
  return {
    resolveModel: effect<ResolveModelInput, ResolvedModel>(async ({ request }, signal) => {
      const hub = ctx.requireHub();
      const meta = await ctx.metadata.load(hub, signal);
      let version: string | null;
      let listedSha256: string | null = null;
      if (meta.snapshot !== null) {
        // The default version and the versions that exist, only from the signed snapshot.
        const entry = meta.snapshot.models[request.id];
        if (entry === undefined) throw new ModelhubError('NOT_FOUND', `model ${request.id} is not in the hub's signed catalog`);
        if (request.version === null && entry.default_version !== null) {
          // Versions of a model live side by side, so an explicit older one is fine; but the
          // default the hub offers never goes below what this node had or was offered.
          ctx.metadata.assertAboveFloor('model', request.id, entry.default_version, false);
          ctx.metadata.raiseFloor('model', request.id, entry.default_version);
        }
        version = request.version ?? entry.default_version;
        const listed = version === null ? undefined : entry.versions[version];
        if (version === null || listed === undefined) {
          throw new ModelhubError('VERSION_NOT_FOUND', `model ${request.id} has no version ${version ?? '(none published)'} in the hub's signed catalog`, { details: { versions: Object.keys(entry.versions) } });
        }
        listedSha256 = listed.manifest_sha256;
      } else {
        if (request.version === null) throw new ModelhubError('UNTRUSTED_KEY', `cannot resolve the default version of ${request.id}: ${meta.why}`);
        version = request.version;
        const detail = await hub.model(request.id, signal);
        if (!detail.versions.some((v) => v.version === version)) {
          throw new ModelhubError('VERSION_NOT_FOUND', `model ${request.id} has no version ${version}`, { details: { versions: detail.versions.map((v) => v.version) } });
        }
      }
      const { manifestText, signatureText } = await hub.modelManifest(request.id, version, signal);
      if (listedSha256 !== null && createHash('sha256').update(manifestText, 'utf8').digest('hex') !== listedSha256) {
        throw new ModelhubError('MANIFEST_MISMATCH', `the manifest served for model ${request.id} ${version} is not the one the hub's signed snapshot lists`);
      }
      const installed = ctx.registry.models().find((m) => m.id === request.id)?.versions ?? [];
      return { version, manifestText, signatureText, installedVersions: installed };
    }),

    verifyModelManifest: effect<VerifyModelInput, VerifiedModel>(async ({ id, resolved }) => {
      const keys = await ctx.trust.keys();
      if (keys.length === 0) throw new ModelhubError('UNTRUSTED_KEY', 'the trust store is empty: add the publisher key with `modelhub trust add KEY.pub`');
      const { keyId } = await revokedAsKeyRevoked(ctx, () => verifyOrThrow({ message: Buffer.from(resolved.manifestText, 'utf8'), signature: resolved.signatureText, trustedKeys: keys }));
      const m = parseJsonOrThrow(modelManifestSchema, resolved.manifestText, 'MANIFEST_INVALID', 'manifest');
      assertManifestConsistent(m);
      if (m.id !== id || m.version !== resolved.version) {
        throw new ModelhubError('MANIFEST_MISMATCH', `the signed manifest is for ${m.id} ${m.version}, but ${id} ${resolved.version} was asked for`);
      }
      const totalBytes = m.files.reduce((n, f) => n + f.size, 0);
      await mkdir(ctx.home.root, { recursive: true });
      const s = await statfs(ctx.home.root);
      if (s.bavail * s.bsize < totalBytes + ctx.diskMarginBytes) {
        throw new ModelhubError('INSUFFICIENT_DISK', `${totalBytes} bytes are needed in ${ctx.home.root}, ${s.bavail * s.bsize} are free`);
      }
      const hub = ctx.requireHub();
      return { keyId, totalBytes, files: m.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, url: hub.modelFileUrl(id, m.version, f.path) })) };
    }),

    downloadModelFiles: effect<DownloadModelInput, DownloadModelOutput>(async ({ id, version, files }, signal) => {
      const dir = partialDir(ctx, id, version);
      await mkdir(dir, { recursive: true });
      // Files this node has (in any version of any model) come from the blob store, not the network.
      const store = new BlobStore(ctx.home.blobs);
      const storeUse: StoreUse = { reused: 0, bytesReused: 0, linked: 0, copied: 0, stored: 0 };
      const storeOptions = { signal, guard: () => job.assertLease(), warn: (m: string) => ctx.warn(m) };
      const stored = await reuseStored(store, files, dir, storeUse, storeOptions);
      const toFetch = files.filter((f) => !stored.placed.has(f.path));
      const total = toFetch.reduce((n, f) => n + f.size, 0);
      const done = new Map<string, number>();
      const meter = new SpeedMeter();
      let checkpoint = { bytes: 0, t: ctx.now() };
      let lastRow = 0;
      // Files whose download waits for the network: the job says `waiting_for_network` meanwhile (SPEC §10).
      const waiting = new Set<string>();
      // One set of sources for the whole pull: a mirror that failed one file is asked after the hub for the others (SPEC §12).
      const sources = new BlobSources(ctx.mirrors ?? []);
      const report = (force = false): void => {
        const bytes = [...done.values()].reduce((a, b) => a + b, 0);
        const t = ctx.now();
        const s = meter.sample(bytes, t);
        const flowing = waiting.size === 0;
        const phase = flowing ? 'downloading' : 'waiting_for_network';
        const ev = { jobId: job.jobId, kind: 'model_pull' as const, target: job.target(), phase, bytesDone: bytes, bytesTotal: total, speedBps: flowing ? s.speedBps : 0, etaSeconds: flowing ? s.etaSeconds(total) : null, ts: t };
        ctx.progress.emit(ev);
        if (force || t - lastRow >= 250) {
          lastRow = t;
          ctx.jobs.setProgress(job.jobId, ev);
        }
        if (bytes - checkpoint.bytes >= CHECKPOINT_BYTES && t - checkpoint.t >= CHECKPOINT_MS) {
          checkpoint = { bytes, t };
          job.send({ type: 'DOWNLOAD_PROGRESS', bytesDone: bytes, bytesTotal: total });
        }
      };
      const queue = [...toFetch];
      const worker = async (): Promise<void> => {
        for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
          const file = f;
          const dest = path.join(dir, ...file.path.split('/'));
          await mkdir(path.dirname(dest), { recursive: true });
          await downloadFromSources({
            url: file.url,
            dest,
            expectedSize: file.size,
            expectedSha256: file.sha256,
            ...engineDownloadOptions(ctx, job, signal),
            onNetworkWait: (w) => {
              if (w) waiting.add(file.path);
              else waiting.delete(file.path);
              report(true);
            },
            onProgress: (p) => {
              done.set(file.path, p.bytesDone);
              report();
            },
          }, sources, modelFilePath(id, version, file.path), {
            onSource: (s) => ctx.progress.hooks.emit('downloadSource', { jobId: job.jobId, target: job.target(), kind: s.kind, url: s.base }),
          }).finally(() => waiting.delete(file.path));
          done.set(file.path, file.size);
          report();
        }
      };
      await Promise.all(Array.from({ length: Math.min(PARALLEL_FILES, toFetch.length) }, worker));
      await keepInStore(store, files, dir, storeUse, stored.damaged, storeOptions);
      report(true);
      return { stagingDir: dir, sources: sources.report(), store: storeUse };
    }),

    installModel: effect<InstallModelInput, { path: string }>(async ({ id, version, stagingDir, manifestText, signatureText }) => {
      const target = ctx.home.modelDir(id, version);
      ctx.metadata.raiseFloor('model', id, version);
      if (await exists(stagingDir)) {
        // The signed manifest and signature stay with the version (SPEC §13), on disk before the rename.
        await writeProof(stagingDir, { manifestText, signatureText });
        if (await exists(target)) await rm(target, { recursive: true, force: true });
        await rename(stagingDir, target);
        await fsyncDir(path.dirname(target));
      } else if (!(await exists(target))) {
        throw new ModelhubError('INTERNAL', `neither ${stagingDir} nor ${target} exists`);
      }
      return { path: target };
    }),

    cleanUpModel: effect<CleanUpModelInput, { removed: string[] }>(async ({ id, version, discard }) => {
      // Only bad bytes are thrown away; an interrupted pull keeps its partial files to resume.
      if (!discard || version === null) return { removed: [] };
      const dir = partialDir(ctx, id, version);
      await rm(dir, { recursive: true, force: true });
      return { removed: [dir] };
    }),
  };
}
