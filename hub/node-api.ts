// What nodes tell the hub (node token): a MODEL_NOT_AVAILABLE answer of getModelPath /
// `modelhub models path` (SPEC §10, seed 002 §7.6), counted as unmet demand in the ranking.
// The body is the same report a node POSTs to any scheduler, so a node can use the hub itself
// as its scheduler (`--scheduler http://hub/api/model-unavailable`).
import { modelUnavailableReportSchema } from '../src/engine/scheduler-report.js';
import { parseOrThrow } from '../src/schemas/parse.js';
import type { CatalogStore } from './catalog/store.js';
import { json, type HubResponse } from './response.js';

export const modelUnavailableBody = modelUnavailableReportSchema;

export async function modelUnavailable(catalog: CatalogStore, body: unknown, now: Date = new Date()): Promise<HubResponse> {
  const report = parseOrThrow(modelUnavailableBody, body, 'INVALID_REQUEST', 'body');
  // When the hub counted it, not the node's clock: nodes' clocks are not the hub's to trust.
  await catalog.addUnavailable(report.model_id, now.toISOString());
  return json(202, { success: true });
}
