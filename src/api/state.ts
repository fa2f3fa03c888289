// What the service-management page shows and `window.modelhub.state()` answers, as plain data:
// the hub's services and models for this platform beside what is installed, and the jobs.
import type { EngineState, JobView, ModelView, ServiceView } from '../client/types.js';
import type { Engine } from '../engine/engine.js';
import type { JobRow } from '../engine/jobs-store.js';
import { percentOf } from '../client/types.js';
import { latestVersion } from '../schemas/versions.js';
import { damagedVersions } from '../engine/verify.js';

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** Phases before the bytes are all here; after them a running job shows a full bar. */
const BEFORE_DOWNLOAD_DONE = new Set(['created', 'resolving', 'verifying_manifest', 'downloading', 'paused']);

export function jobView(j: JobRow): JobView {
  let bytesDone = 0;
  let bytesTotal = 0;
  if (j.progress !== null) {
    try {
      const p = JSON.parse(j.progress) as { bytesDone?: number; bytesTotal?: number };
      bytesDone = p.bytesDone ?? 0;
      bytesTotal = p.bytesTotal ?? 0;
    } catch {
      // a progress row being rewritten: shown as unknown
    }
  }
  const active = j.active === 1;
  let percent: number | null = null;
  if (active) percent = BEFORE_DOWNLOAD_DONE.has(j.state) ? Math.floor(percentOf(bytesDone, bytesTotal, j.state)) : 100;
  return { id: j.id, kind: j.kind, target: j.target, state: j.state, active, percent, bytes_done: bytesDone, bytes_total: bytesTotal, started_at: iso(j.started_at)!, ended_at: iso(j.ended_at) };
}

/** The running job of a subject, and the error of its last job if that one failed. */
function jobsOf(jobs: JobRow[], subject: string): { job: JobView | null; error: { code: string; message: string } | null } {
  const mine = jobs.filter((j) => j.subject === subject);
  const active = mine.find((j) => j.active === 1);
  const last = mine[mine.length - 1];
  let error: { code: string; message: string } | null = null;
  if (active === undefined && last !== undefined && last.state !== 'committed' && last.state !== 'cancelled' && last.output !== null) {
    const out = JSON.parse(last.output) as { error?: { code: string; message: string } | null };
    if (out.error) error = { code: out.error.code, message: out.error.message };
  }
  return { job: active === undefined ? null : jobView(active), error };
}

export async function engineState(engine: Engine, signal: AbortSignal): Promise<EngineState> {
  const hub = engine.hub;
  const installed = new Map(engine.registry.services().map((s) => [s.id, s]));
  const installedModels = new Map(engine.registry.models().map((m) => [m.id, m.versions]));
  const jobs = engine.jobs.allJobs();
  const damaged = damagedVersions(engine.db, 'service');
  const damagedModels = damagedVersions(engine.db, 'model');
  const state: EngineState = {
    platform: engine.platform,
    hub: { url: hub?.base ?? null, reachable: false, error: hub === null ? 'no hub configured' : null },
    services: [],
    models: [],
    jobs: jobs.slice(-50).reverse().map(jobView),
  };
  const catalog = new Map<string, { name: string; versions: string[]; latest: string | null }>();
  const modelCatalog = new Map<string, { name: string; versions: string[]; latest: string | null }>();
  if (hub !== null) {
    const [services, models] = await Promise.allSettled([hub.services(engine.platform, signal), hub.models(signal)]);
    if (services.status === 'fulfilled') {
      state.hub.reachable = true;
      for (const s of services.value) catalog.set(s.service_id, { name: s.service_name ?? s.service_id, versions: s.versions.map((v) => v.version), latest: s.latest_version });
    } else {
      state.hub.error = (services.reason as Error).message;
    }
    if (models.status === 'fulfilled') {
      for (const m of models.value) modelCatalog.set(m.id, { name: m.name ?? m.id, versions: m.versions.map((v) => v.version), latest: m.default_version });
    }
  }
  for (const id of [...new Set([...catalog.keys(), ...installed.keys()])].sort()) {
    const c = catalog.get(id);
    const i = installed.get(id);
    const view: ServiceView = {
      id,
      name: c?.name ?? id,
      versions: c?.versions ?? [],
      latest: c?.latest ?? null,
      current: i?.current ?? null,
      installed: i?.versions ?? [],
      running: i?.running ?? false,
      damaged: damaged.get(id) ?? [],
      ...jobsOf(jobs, `service:${id}`),
    };
    state.services.push(view);
  }
  for (const id of [...new Set([...modelCatalog.keys(), ...installedModels.keys()])].sort()) {
    const c = modelCatalog.get(id);
    const versions = installedModels.get(id) ?? [];
    const view: ModelView = {
      id,
      name: c?.name ?? id,
      versions: c?.versions ?? [],
      latest: c?.latest ?? latestVersion(c?.versions ?? []),
      installed: versions,
      damaged: damagedModels.get(id) ?? [],
      ...jobsOf(jobs, `model:${id}`),
    };
    state.models.push(view);
  }
  return state;
}
