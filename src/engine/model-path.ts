// getModelPath (seed 002/003): answer at once, from the registry, or fail fast with
// MODEL_NOT_AVAILABLE and why, so a scheduler can send the work elsewhere.
import semver from 'semver';
import { ModelhubError } from '../errors.js';
import type { Home } from './home.js';
import type { JobsStore } from './jobs-store.js';
import type { Registry } from './registry.js';

export type ModelUnavailableReason = 'not_installed' | 'downloading' | 'verifying' | 'error';

export class ModelNotAvailableError extends ModelhubError {
  readonly reason: ModelUnavailableReason;
  constructor(id: string, version: string | null, reason: ModelUnavailableReason) {
    super('MODEL_NOT_AVAILABLE', `model ${id}@${version ?? 'latest'} is not available: ${reason}`, { details: { reason }, retryable: reason === 'downloading' || reason === 'verifying' });
    this.reason = reason;
  }
}

const REASON_BY_STATE: Record<string, ModelUnavailableReason> = {
  created: 'downloading',
  resolving: 'downloading',
  downloading: 'downloading',
  verifying_manifest: 'verifying',
  installing: 'verifying',
  cleaning_up: 'error',
};

export function modelPath(view: { registry: Registry; jobs: JobsStore; home: Home } | null, id: string, version: string | null): string {
  const installed = view?.registry.models().find((m) => m.id === id)?.versions ?? [];
  const chosen = version ?? [...installed].sort(semver.rcompare)[0] ?? null;
  if (view !== null && chosen !== null && installed.includes(chosen)) return view.home.modelDir(id, chosen);
  const jobs = (view?.jobs.allJobs() ?? []).filter((j) => j.kind === 'model_pull' && j.subject === `model:${id}`);
  const relevant = jobs.filter((j) => version === null || j.target === `${id}@${version}` || j.requested === `${id}@${version}`);
  const last = relevant[relevant.length - 1];
  if (last !== undefined && last.active === 1) throw new ModelNotAvailableError(id, version, REASON_BY_STATE[last.state] ?? 'downloading');
  if (last !== undefined && last.state === 'failed') throw new ModelNotAvailableError(id, version, 'error');
  throw new ModelNotAvailableError(id, version, 'not_installed');
}
