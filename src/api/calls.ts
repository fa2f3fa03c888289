// One table of API calls over the engine, shared by the Electron IPC bridge and the local page
// server, so both parse the same arguments and answer the same values. Every call resolves to
// `{ ok: true, value } | { ok: false, error }`: Electron keeps only the message of a thrown
// error, and an HTTP client should not have to tell a failed call from a broken connection.
import type { ModelhubApi, ModelhubErrorValue, ModelhubMethod, ModelhubResult } from '../client/types.js';
import { MODELHUB_METHODS } from '../client/types.js';
import type { Engine, JobResult } from '../engine/engine.js';
import { ModelhubError, toModelhubError } from '../errors.js';
import { describeIssues } from '../schemas/parse.js';
import { callArguments, type CallArguments } from './requests.js';
import { engineState } from './state.js';

type ValueOf<M extends ModelhubMethod> = Awaited<ReturnType<ModelhubApi[M]>> extends ModelhubResult<infer T> ? T : never;

/** How long `state` and `ranking` wait for the hub: an unreachable hub must not hold the caller. */
const HUB_WAIT_MS = 5000;

/**
 * A job that ended other than committed is an error value whose details are the job's result
 * (state, current, rolled_back…), as the CLI prints them beside the error.
 */
function jobValue<T extends JobResult, V extends object>(r: T, extra: V) {
  const value = { ok: r.ok, jobId: r.jobId, kind: r.kind, target: r.target, state: r.state, attached: r.attached, error: r.error, ...extra };
  if (!r.ok) throw new ModelhubError(r.error?.code ?? 'INTERNAL', r.error?.message ?? `job ended in ${r.state}`, { details: { ...value } });
  return value;
}

const handlers: { [M in ModelhubMethod]: (engine: Engine, args: CallArguments[M]) => Promise<ValueOf<M>> } = {
  async install(engine, [r]) {
    const x = await engine.install({ id: r.id, version: r.version ?? null, start: r.start ?? true, allowDowngrade: r.allowDowngrade ?? false });
    return jobValue(x, { id: x.id, version: x.version, current: x.current, rolled_back: x.rolled_back });
  },
  async uninstall(engine, [r]) {
    const x = await engine.uninstall({ id: r.id, version: r.version ?? null });
    return jobValue(x, { removed: x.removed, current: x.current });
  },
  async pullModel(engine, [r]) {
    const x = await engine.pullModel({ id: r.id, version: r.version ?? null });
    return jobValue(x, { id: x.id, version: x.version, path: x.path });
  },
  cancel: (engine, [jobId]) => engine.cancel(jobId),
  pause: (engine, [jobId]) => engine.pause(jobId),
  async resume(engine, [jobId]) {
    const x = await engine.resume(jobId);
    if ('rolled_back' in x) return jobValue(x, { id: x.id, version: x.version, current: x.current, rolled_back: x.rolled_back });
    if ('path' in x) return jobValue(x, { id: x.id, version: x.version, path: x.path });
    return jobValue(x, {});
  },
  state: (engine) => engineState(engine, AbortSignal.timeout(HUB_WAIT_MS)),
  async ranking(engine) {
    if (engine.hub === null) throw new ModelhubError('INVALID_REQUEST', 'no hub configured');
    return engine.hub.ranking(20, AbortSignal.timeout(HUB_WAIT_MS));
  },
  checkForUpdates: (engine) => engine.checkForUpdates(),
  start: (engine, [id]) => engine.start(id),
  stop: (engine, [id]) => engine.stop(id),
  status: (engine) => engine.status(),
  jobEvents: async (engine, [jobId]) => engine.jobEvents(jobId),
  verify: (engine, [t]) => engine.verify({ id: t?.id ?? null, version: t?.version ?? null }),
  repair: (engine, [t]) => engine.repair({ id: t?.id ?? null, version: t?.version ?? null }),
};

export function errorValue(err: unknown): ModelhubErrorValue {
  const e = toModelhubError(err);
  return { code: e.code, message: e.message, details: e.details };
}

export function isMethod(name: string): name is ModelhubMethod {
  return (MODELHUB_METHODS as readonly string[]).includes(name);
}

function invalid(message: string, details: Record<string, unknown> = {}): ModelhubResult<never> {
  return { ok: false, error: { code: 'INVALID_REQUEST', message, details } };
}

/** Parses `args` for `method` and runs it; never throws. */
export async function callEngine(engine: Engine, method: string, args: unknown): Promise<ModelhubResult<unknown>> {
  if (!isMethod(method)) return invalid(`no such call: ${method.slice(0, 64)}`);
  const parsed = callArguments[method].safeParse(args);
  if (!parsed.success) return invalid(`${method}: ${describeIssues(parsed.error)}`);
  try {
    const run = handlers[method] as (engine: Engine, args: unknown) => Promise<unknown>;
    return { ok: true, value: await run(engine, parsed.data) };
  } catch (err) {
    return { ok: false, error: errorValue(err) };
  }
}
