// The install job's delta update (src/delta): tried first by the download step whenever a
// version of the service is installed. It asks the job's blob sources in order (mirrors, then
// the hub: SPEC §12); a source whose ranged reads fail or disagree is left for the next, and
// when none does it — or ranges do not pay off — the step downloads the whole package as before
// and says why in its output (`deltaFallback`), which the job's events record.
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import type { DownloadInput, DownloadOutput } from '../../../machines/install.js';
import { servicePackagePath, type BlobSource, type BlobSources } from '../../download/sources.js';
import { DeltaUnavailable, type DeltaFallbackReason } from '../../delta/errors.js';
import { deltaDirOf, fetchDelta, type DeltaPlan, type LocalFile } from '../../delta/service-delta.js';
import { serviceManifestSchema, type ServiceManifest } from '../../schemas/manifest.js';
import type { JobHandle } from '../runner.js';
import type { EngineContext } from './context.js';

/** Reasons that concern one source only: the next source may do better. */
const SOURCE_FAULTS = new Set<DeltaFallbackReason>(['range_ignored', 'archive_differs', 'bad_archive', 'manifest_mismatch', 'entry_mismatch', 'network']);
/** Of those, the ones where the source served wrong bytes: it goes after the hub for the rest of the job. */
const BAD_BYTES = new Set<DeltaFallbackReason>(['archive_differs', 'bad_archive', 'manifest_mismatch', 'entry_mismatch']);

export interface DeltaAttempt {
  /** The download step's output when the delta update succeeded. */
  output: DownloadOutput | null;
  /** Why it did not (recorded with the full download's output). */
  fallback: { reason: DeltaFallbackReason; message: string } | null;
}

/** The files of the installed versions of `id`, with the hashes of their signed manifests. */
export function installedFiles(ctx: EngineContext, id: string): LocalFile[] {
  const out: LocalFile[] = [];
  const state = ctx.registry.installedState(id);
  // The current version first: it is the likeliest to share files with the next one.
  const versions = [...new Set([...(state.current === null ? [] : [state.current]), ...state.versions.slice().reverse()])];
  for (const v of versions) {
    const text = ctx.registry.serviceManifest(id, v);
    if (text === undefined) continue;
    let m: ServiceManifest;
    try {
      const r = serviceManifestSchema.safeParse(JSON.parse(text));
      if (!r.success) continue;
      m = r.data;
    } catch {
      continue;
    }
    const dir = ctx.home.versionDir(id, v);
    for (const f of m.files) out.push({ path: path.join(dir, ...f.path.split('/')), sha256: f.sha256, size: f.size });
  }
  return out;
}

async function exists(p: string): Promise<boolean> {
  return (await lstat(p).catch(() => null)) !== null;
}

export async function tryDelta(
  ctx: EngineContext,
  job: JobHandle & { jobId: string; target: () => string },
  o: {
    input: DownloadInput;
    manifest: ServiceManifest;
    /** The package's path in downloads/ (the content folder is `<dest>.delta`). */
    dest: string;
    sources: BlobSources;
    signal: AbortSignal;
    onProgress: (bytesDone: number, bytesTotal: number) => void;
    onSource: (s: BlobSource) => void;
  },
): Promise<DeltaAttempt> {
  const fallback = (reason: DeltaFallbackReason, message: string): DeltaAttempt => ({ output: null, fallback: { reason, message } });
  if (ctx.delta === false) return fallback('disabled', 'delta updates are turned off');
  // A resumed job that was downloading the whole package goes on with it.
  if ((await exists(o.dest)) || (await exists(`${o.dest}.part`))) return fallback('full_download_started', 'the whole package is being downloaded already');
  const dir = deltaDirOf(o.dest);
  const local = installedFiles(ctx, o.input.id);
  if (local.length === 0 && !(await exists(dir))) return fallback('nothing_to_reuse', `no version of ${o.input.id} is installed`);

  let last: DeltaUnavailable | null = null;
  for (const s of o.sources.for(o.input.archive.url, servicePackagePath(o.input.id, o.input.version, o.input.platform))) {
    o.onSource(s);
    const use = o.sources.use(s);
    let planned: DeltaPlan | null = null;
    try {
      const r = await fetchDelta({
        manifest: o.manifest,
        url: s.url,
        fetch: ctx.fetch,
        signal: o.signal,
        ...(ctx.stallTimeoutMs === undefined ? {} : { stallTimeoutMs: ctx.stallTimeoutMs }),
        ...(ctx.bandwidth === undefined ? {} : { bandwidth: ctx.bandwidth }),
        ...(ctx.maxConnectionsPerDownload === undefined ? {} : { concurrency: Math.max(1, Math.min(4, ctx.maxConnectionsPerDownload)) }),
        dir,
        local,
        // A holder that lost its lease (taken over) writes no further byte.
        guard: () => job.assertLease(),
        onBytes: (n) => {
          use.bytes += n;
        },
        onPlan: (plan) => {
          planned = plan;
          ctx.progress.hooks.emit('downloadStart', { jobId: job.jobId, target: job.target(), url: s.url, bytesTotal: plan.bytesTotal, resumedFrom: plan.bytesDone });
        },
        onProgress: o.onProgress,
      });
      if (r.bytesFetched > 0) use.served += 1;
      if (r.copied > 0) ctx.warn(`${o.input.id} ${o.input.version}: ${r.copied} unchanged file(s) were copied, not hard-linked, from the installed version (another volume, or a file system without hard links): they take disk twice`);
      if (planned !== null) ctx.progress.hooks.emit('downloadComplete', { jobId: job.jobId, target: job.target(), bytes: r.bytesFetched, sha256: '' });
      return {
        output: {
          path: o.dest,
          size: 0,
          sha256: '',
          bytesFetched: r.bytesFetched,
          resumedFrom: 0,
          prestaged: false,
          source: r.requests === 0 ? { kind: 'local', url: null } : { kind: s.kind, url: s.base },
          sources: o.sources.report(),
          delta: { ...r, source: r.requests === 0 ? null : s.base },
        },
        fallback: null,
      };
    } catch (err) {
      if (!(err instanceof DeltaUnavailable) || o.signal.aborted) throw err;
      last = err;
      if (SOURCE_FAULTS.has(err.reason)) {
        if (BAD_BYTES.has(err.reason)) o.sources.demote(s);
        continue;
      }
      break;
    }
  }
  return fallback(last?.reason ?? 'network', last?.message ?? 'no source to read ranges from');
}
