// Sweeps what no job owns any more: partial and finished downloads in downloads/, model
// `.partial-*` folders, service `.staging-*` folders, `.trash-*` leftovers and the temp files of
// pointer switches that a crash left behind. What an active job owns (running, interrupted or
// paused) is kept: its id, release and files are read from its persisted snapshot.
//
// Files younger than a short grace period are kept too: another process may be starting a job
// whose first event is not yet visible to the list of jobs this sweep read.
import { lstat, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Home } from './home.js';
import type { JobRow } from './jobs-store.js';

export const SWEEP_GRACE_MS = 10_000;

export interface SweptEntry {
  path: string;
  bytes: number;
}

interface Owned {
  /** Base names in downloads/ (the archive; its .part and sidecars share the prefix). */
  archives: Set<string>;
  /** `<id>/.partial-<version>` of model pulls. */
  modelPartials: Set<string>;
  jobIds: Set<string>;
}

interface SnapshotContext {
  request?: { id?: string; version?: string | null; platform?: string };
  release?: { version?: string } | null;
  verified?: { archive?: { sha256?: string } } | null;
  resolved?: { version?: string } | null;
}

function owned(home: Home, jobs: readonly JobRow[]): Owned {
  const o: Owned = { archives: new Set(), modelPartials: new Set(), jobIds: new Set() };
  for (const job of jobs) {
    o.jobIds.add(job.id);
    // A repair's fetched files and package (effects/repair.ts), from its first moment.
    if (job.kind === 'repair') o.archives.add(`repair-${job.id}`).add(`repair-${job.id}.zip`);
    if (job.snapshot === '') continue;
    const ctx = (JSON.parse(job.snapshot) as { context?: SnapshotContext }).context ?? {};
    const id = ctx.request?.id;
    if (id === undefined) continue;
    if (job.kind === 'install') {
      const version = ctx.release?.version;
      const sha = ctx.verified?.archive?.sha256;
      const platform = ctx.request?.platform;
      if (version !== undefined && sha !== undefined && platform !== undefined) o.archives.add(path.basename(home.archive(id, version, platform, sha)));
    } else if (job.kind === 'model_pull') {
      const version = ctx.resolved?.version ?? ctx.request?.version ?? undefined;
      if (version !== undefined && version !== null) o.modelPartials.add(`${id}/.partial-${version}`);
    }
  }
  return o;
}

async function sizeOf(p: string): Promise<number> {
  const s = await lstat(p).catch(() => null);
  if (s === null) return 0;
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const name of await readdir(p).catch(() => [] as string[])) total += await sizeOf(path.join(p, name));
  return total;
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

/** Removes what no active job owns; answers what it removed and how many bytes that freed. */
export async function sweepUnowned(home: Home, activeJobs: readonly JobRow[], now: number, graceMs = SWEEP_GRACE_MS): Promise<SweptEntry[]> {
  const own = owned(home, activeJobs);
  const removed: SweptEntry[] = [];
  const remove = async (p: string): Promise<void> => {
    const s = await lstat(p).catch(() => null);
    if (s === null || now - s.mtimeMs < graceMs) return;
    const bytes = await sizeOf(p);
    await rm(p, { recursive: true, force: true });
    removed.push({ path: p, bytes });
  };

  for (const name of await entries(home.downloads)) {
    // `<archive>`, `<archive>.part`, `<archive>.part.json`, their atomic-write temp names, and
    // `<archive>.delta/` (a delta update's content folder, src/delta).
    const archive = name.replace(/\.tmp-[\w-]+$/, '').replace(/\.part(\.[\w-]+)*$/, '').replace(/\.delta$/, '');
    if (!own.archives.has(archive)) await remove(path.join(home.downloads, name));
  }
  for (const id of await entries(home.models)) {
    for (const name of await entries(path.join(home.models, id))) {
      const partial = name.startsWith('.partial-') && !own.modelPartials.has(`${id}/${name}`);
      if (partial || name.startsWith('.trash-')) await remove(path.join(home.models, id, name));
    }
  }
  for (const id of await entries(home.services)) {
    for (const name of await entries(path.join(home.services, id))) {
      const stagingJob = name.startsWith('.staging-') ? name.slice('.staging-'.length) : undefined;
      const pointerTemp = /^\.current(\.json)?\.\d+\.[0-9a-f]+\.tmp$/.test(name);
      if ((stagingJob !== undefined && !own.jobIds.has(stagingJob)) || name.startsWith('.trash-') || pointerTemp) await remove(path.join(home.services, id, name));
    }
  }
  return removed;
}
