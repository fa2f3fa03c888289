// What the service-management page shows (SPEC §8), as plain data: the same JSON feeds the page
// and an Electron renderer.
import type { Engine } from '../engine/engine.js';
import type { HubClient } from '../engine/hub-client.js';
import type { JobRow } from '../engine/jobs-store.js';

export interface UiService {
  id: string;
  name: string;
  /** Versions on the hub for this platform, newest first. */
  versions: string[];
  latest: string | null;
  current: string | null;
  installed: string[];
  running: boolean;
  /** The job running for this service now, if any. */
  job: UiJob | null;
  /** The last finished job's error, if it failed. */
  error: { code: string; message: string } | null;
}

export interface UiJob {
  id: string;
  kind: string;
  target: string;
  state: string;
  active: boolean;
  percent: number | null;
  bytes_done: number;
  bytes_total: number;
  started_at: string;
  ended_at: string | null;
}

export interface UiState {
  platform: string;
  hub: { url: string | null; reachable: boolean; error: string | null };
  services: UiService[];
  ranking: { model_id: string; request_count: number; rank: number }[] | null;
  ranking_error: string | null;
  jobs: UiJob[];
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export function jobView(j: JobRow): UiJob {
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
  if (active) percent = bytesTotal > 0 ? Math.min(100, Math.floor((bytesDone / bytesTotal) * 100)) : 0;
  if (active && j.state !== 'downloading' && j.state !== 'resolving' && j.state !== 'verifying_manifest' && j.state !== 'created') percent = 100;
  return { id: j.id, kind: j.kind, target: j.target, state: j.state, active, percent, bytes_done: bytesDone, bytes_total: bytesTotal, started_at: iso(j.started_at)!, ended_at: iso(j.ended_at) };
}

export async function uiState(engine: Engine, hub: HubClient | null, signal: AbortSignal): Promise<UiState> {
  const installed = new Map(engine.registry.services().map((s) => [s.id, s]));
  const jobs = engine.jobs.allJobs();
  const state: UiState = {
    platform: engine.platform,
    hub: { url: hub?.base ?? null, reachable: false, error: hub === null ? 'no hub configured' : null },
    services: [],
    ranking: null,
    ranking_error: null,
    jobs: jobs.slice(-50).reverse().map(jobView),
  };
  const catalog = new Map<string, { name: string; versions: string[]; latest: string | null }>();
  if (hub !== null) {
    const [services, ranking] = await Promise.allSettled([hub.services(engine.platform, signal), hub.ranking(20, signal)]);
    if (services.status === 'fulfilled') {
      state.hub.reachable = true;
      for (const s of services.value) catalog.set(s.service_id, { name: s.service_name ?? s.service_id, versions: s.versions.map((v) => v.version), latest: s.latest_version });
    } else {
      state.hub.error = (services.reason as Error).message;
    }
    if (ranking.status === 'fulfilled') state.ranking = ranking.value;
    else state.ranking_error = (ranking.reason as Error).message;
  }
  const ids = [...new Set([...catalog.keys(), ...installed.keys()])].sort();
  for (const id of ids) {
    const c = catalog.get(id);
    const i = installed.get(id);
    const mine = jobs.filter((j) => j.subject === `service:${id}`);
    const active = mine.find((j) => j.active === 1);
    const last = mine[mine.length - 1];
    let error: UiService['error'] = null;
    if (active === undefined && last !== undefined && last.state !== 'committed' && last.output !== null) {
      const out = JSON.parse(last.output) as { error?: { code: string; message: string } | null };
      if (out.error) error = { code: out.error.code, message: out.error.message };
    }
    state.services.push({
      id,
      name: c?.name ?? id,
      versions: c?.versions ?? [],
      latest: c?.latest ?? null,
      current: i?.current ?? null,
      installed: i?.versions ?? [],
      running: i?.running ?? false,
      job: active === undefined ? null : jobView(active),
      error,
    });
  }
  return state;
}
