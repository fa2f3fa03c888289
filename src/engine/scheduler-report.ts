// Telling a scheduler at once (seed 002 §7.6, SPEC §10): when getModelPath / `models path`
// answers MODEL_NOT_AVAILABLE, the node POSTs { type: "model_unavailable", node_id, model_id,
// version, reason, ts } as JSON to the scheduler URL, so the scheduler can send the work
// elsewhere. The report never changes the answer: sending it never throws, never blocks the
// caller, and gives up at its deadline (the CLI waits at most 200 ms for it).
//
// node:http rather than fetch: the CLI has it loaded already, while Node's fetch (undici) costs
// tens of milliseconds on first use — a large part of a 200 ms budget in a short-lived CLI.
import http from 'node:http';
import https from 'node:https';
import { z } from 'zod';
import { idSchema, versionSchema } from '../schemas/common.js';
import { nodeIdSchema } from './node-id.js';

export const MODEL_UNAVAILABLE_REASONS = ['not_installed', 'downloading', 'verifying', 'error'] as const;
export const modelUnavailableReasonSchema = z.enum(MODEL_UNAVAILABLE_REASONS);

/**
 * The report, as nodes send it and the hub's POST /api/model-unavailable accepts it. `node_id`
 * is null only when a read-only command ran on a home that does not exist yet (it creates
 * nothing there, not even the id); `version` is the requested version, null for "latest".
 * Unknown fields are ignored, not refused, so newer nodes can add some.
 */
export const modelUnavailableReportSchema = z.object({
  type: z.literal('model_unavailable'),
  node_id: nodeIdSchema.nullable(),
  model_id: idSchema,
  version: versionSchema.nullable(),
  reason: modelUnavailableReasonSchema,
  ts: z.iso.datetime({ offset: true }).meta({ description: 'When the node answered MODEL_NOT_AVAILABLE (ISO 8601).' }),
});

export type ModelUnavailableReport = z.infer<typeof modelUnavailableReportSchema>;

export function unavailableReport(o: { nodeId: string | null; modelId: string; version: string | null; reason: ModelUnavailableReport['reason']; now?: number }): ModelUnavailableReport {
  return { type: 'model_unavailable', node_id: o.nodeId, model_id: o.modelId, version: o.version, reason: o.reason, ts: new Date(o.now ?? Date.now()).toISOString() };
}

/** How long the CLI waits for the report before it exits (SPEC §10). */
export const CLI_REPORT_BUDGET_MS = 200;
/** A library report runs in the background; past this it is dropped (the scheduler is down or stuck). */
export const BACKGROUND_REPORT_TIMEOUT_MS = 5_000;

export interface SchedulerTarget {
  url: URL;
  /** Sent as `Authorization: Bearer …` (e.g. the hub's node token when the hub is the scheduler). */
  token?: string;
}

/** A scheduler URL as the user gave it; throws a message fit for a usage error. */
export function parseSchedulerUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`"${text}": only http:// and https:// schedulers are supported`);
  if (url.username !== '' || url.password !== '') throw new Error(`"${text}": put credentials in the node token ($MODELHUB_NODE_TOKEN), not in the URL`);
  return url;
}

/** The scheduler from explicit options, else the environment; null when none is set. Throws on a bad URL. */
export function schedulerTargetOf(url: string | undefined, token: string | undefined): SchedulerTarget | null {
  if (url === undefined || url === '') return null;
  return { url: parseSchedulerUrl(url), ...(token !== undefined && token !== '' ? { token } : {}) };
}

export type ReportOutcome = { delivered: true; status: number } | { delivered: false; error: string };

// Keep-alive agents: the library's reports reuse one connection (the benchmark's 200 calls); an
// idle kept-alive socket is unref'd by node, so it never holds a CLI process open.
const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 8 });

/**
 * POSTs the report; resolves (never rejects) once the scheduler answered, failed or the deadline
 * passed — then the request is destroyed, so nothing of it outlives the deadline. A 2xx answer
 * counts as delivered.
 */
export function postReport(target: SchedulerTarget, report: ModelUnavailableReport, timeoutMs: number): Promise<ReportOutcome> {
  return new Promise<ReportOutcome>((resolve) => {
    let settled = false;
    let req: http.ClientRequest | undefined;
    const finish = (outcome: ReportOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      finish({ delivered: false, error: `no answer within ${timeoutMs} ms` });
      req?.destroy();
    }, timeoutMs);
    try {
      const body = Buffer.from(JSON.stringify(report), 'utf8');
      const secure = target.url.protocol === 'https:';
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': body.length, accept: 'application/json' };
      if (target.token !== undefined) headers.authorization = `Bearer ${target.token}`;
      const onResponse = (res: http.IncomingMessage): void => {
        const status = res.statusCode ?? 0;
        res.on('error', (err) => finish({ delivered: false, error: err.message }));
        res.on('end', () => finish(status >= 200 && status < 300 ? { delivered: true, status } : { delivered: false, error: `the scheduler answered ${status}` }));
        res.resume();
      };
      const options = { method: 'POST', headers };
      req = secure ? https.request(target.url, { ...options, agent: httpsAgent }, onResponse) : http.request(target.url, { ...options, agent: httpAgent }, onResponse);
      req.on('error', (err) => finish({ delivered: false, error: err.message }));
      req.end(body);
    } catch (err) {
      finish({ delivered: false, error: err instanceof Error ? err.message : String(err) });
    }
  });
}

/** Reports of the library in flight at once; beyond it a stuck scheduler costs dropped reports, not memory. */
const MAX_IN_FLIGHT = 32;

/**
 * The library's reporter: `send` returns at once and the report goes out in the background.
 * Failures are warned about once per streak (a scheduler that is down would otherwise fill the
 * log with one line per call) and never reach the caller.
 */
export class BackgroundReporter {
  private inFlight = 0;
  private failing = false;
  private readonly pending = new Set<Promise<ReportOutcome>>();

  constructor(
    private readonly target: SchedulerTarget,
    private readonly warn: (message: string) => void,
    private readonly timeoutMs = BACKGROUND_REPORT_TIMEOUT_MS,
  ) {}

  send(report: ModelUnavailableReport): void {
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.failed(`${MAX_IN_FLIGHT} reports still in flight; dropped the one for ${report.model_id}`);
      return;
    }
    this.inFlight++;
    const p = postReport(this.target, report, this.timeoutMs).then((outcome) => {
      this.inFlight--;
      this.pending.delete(p);
      if (outcome.delivered) this.failing = false;
      else this.failed(outcome.error);
      return outcome;
    });
    this.pending.add(p);
  }

  /** Resolves when every report sent so far has been delivered or given up (tests, shutdown). */
  async settled(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  private failed(error: string): void {
    if (this.failing) return;
    this.failing = true;
    this.warn(`scheduler ${this.target.url.origin}${this.target.url.pathname}: model_unavailable report not delivered (${error}); further failures are not logged until one succeeds`);
  }
}
