// getModelPath (seed 002/003): answer at once, from the registry, or fail fast with
// MODEL_NOT_AVAILABLE and why, so a scheduler can send the work elsewhere.
//
// A MODEL_NOT_AVAILABLE answer is also reported to the scheduler, if one is configured
// (scheduler-report.ts): reportOf builds that report from the error.
import semver from 'semver';
import { z } from 'zod';
import { ModelhubError } from '../errors.js';
import { idSchema, versionSchema } from '../schemas/common.js';
import { parseOrThrow } from '../schemas/parse.js';
import type { Home } from './home.js';
import type { JobsStore } from './jobs-store.js';
import type { Registry } from './registry.js';
import { unavailableReport, type MODEL_UNAVAILABLE_REASONS, type ModelUnavailableReport } from './scheduler-report.js';

export type ModelUnavailableReason = (typeof MODEL_UNAVAILABLE_REASONS)[number];

export class ModelNotAvailableError extends ModelhubError {
  readonly reason: ModelUnavailableReason;
  /** What was asked for: the model and the requested version (null: the newest installed). */
  readonly modelId: string;
  readonly version: string | null;
  constructor(id: string, version: string | null, reason: ModelUnavailableReason) {
    super('MODEL_NOT_AVAILABLE', `model ${id}@${version ?? 'latest'} is not available: ${reason}`, { details: { reason }, retryable: reason === 'downloading' || reason === 'verifying' });
    this.reason = reason;
    this.modelId = id;
    this.version = version;
  }
}

const modelRequest = z.object({ id: idSchema, version: versionSchema.nullable() });

/** getModelPath's arguments, checked at the library boundary (INVALID_REQUEST, never reported). */
export function parseModelRequest(id: unknown, version: unknown): { id: string; version: string | null } {
  return parseOrThrow(modelRequest, { id, version: version ?? null }, 'INVALID_REQUEST', 'getModelPath');
}

/** The scheduler's report of a MODEL_NOT_AVAILABLE answer. */
export function reportOf(err: ModelNotAvailableError, nodeId: string | null, now?: number): ModelUnavailableReport {
  return unavailableReport({ nodeId, modelId: err.modelId, version: err.version, reason: err.reason, now });
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
