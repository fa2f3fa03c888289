// The exported event log (SPEC §5): JSON lines { seq, job_id, ts, type, payload, state }.
// `kind` is added so a replay knows which machine to use; files without it are still read.
import { z } from 'zod';
import type { EventRow, JobKind } from './jobs-store.js';

export const exportLineSchema = z.object({
  seq: z.number().int().nonnegative(),
  job_id: z.string().min(1),
  ts: z.union([z.string(), z.number()]),
  type: z.string().min(1),
  payload: z.looseObject({ type: z.string() }),
  state: z.string(),
  kind: z.enum(['install', 'uninstall', 'model_pull', 'rebuild', 'repair']).optional(),
});
export type ExportLine = z.infer<typeof exportLineSchema>;

export function toExportLine(row: EventRow, kind: JobKind): ExportLine {
  return {
    seq: row.seq,
    job_id: row.job_id,
    ts: new Date(row.ts).toISOString(),
    type: row.type,
    payload: JSON.parse(row.payload) as ExportLine['payload'],
    state: row.state,
    kind,
  };
}
