// The runtime manager: start a service from its service.json, wait until it is healthy, stop it.
//
// Services outlive the CLI command that started them. `startService` spawns a small detached
// supervisor (supervisor.ts) which leads a new process group, spawns the service with pipes,
// copies its output into `<logsDir>/<id>.log` with size-bounded rotation, forwards SIGTERM and
// exits with the service. The pid returned (and recorded by the engine) is the **supervisor's**:
// it is the process-group leader, so `stopService(pid)` reaches the service and every process
// it spawned. The service's own pid is returned too, as `servicePid`, for diagnostics.
//
// A recorded pid outlives its process: after a reboot, or once the pid counter wraps, it may
// name an unrelated process. So the supervisor's start time (the platform adapter's
// processStartTime) is returned with its pid, to be recorded with it; `stopService` and
// `recordedProcess` compare it before signalling or calling the service alive.
//
// Nothing here asks which OS it runs on; the platform adapter answers those questions.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelhubError } from '../errors.js';
import { platformAdapter, type PlatformAdapter } from '../platform/adapter.js';
import { findScript, nodeLaunch } from '../platform/node-launch.js';
import { ID_PATTERN, type Platform } from '../schemas/common.js';
import type { HealthCheck, ServiceJson } from '../schemas/service.js';
import { choosePort, isPortFree } from './ports.js';
import { DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES } from './rotating-log.js';
import type { SupervisorMessage, SupervisorStart } from './supervisor.js';

export { choosePort } from './ports.js';

export interface StartRequest {
  serviceId: string;
  version: string;
  versionDir: string;
  service: ServiceJson;
  platform: Platform;
  logsDir: string;
  adapter?: PlatformAdapter;
  /** Base environment, default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Log rotation bound per file (default 10 MiB) and rotated files kept (default 3). */
  logMaxBytes?: number;
  logKeep?: number;
  /** An exit within this many ms of spawning fails the start (default 100). */
  earlyExitMs?: number;
  /**
   * How long a service that got its preferred port (`default_port`) is watched for a lost bind
   * race before startService returns (default BIND_WATCH_MS); see "Lost bind races" below.
   */
  bindWatchMs?: number;
  /** The Node executable that runs the supervisor (default: this process's, as Node under Electron). */
  nodeExecutable?: string;
}

export interface RunningService {
  /** The supervisor's pid: the process-group leader whose tree stopService kills. Record this one. */
  pid: number;
  /**
   * The supervisor's start time (adapter.processStartTime), recorded with `pid` and given back
   * to stopService, so a later process that reuses the pid is never taken for it. Null where the
   * OS would not say (then only the pid, and on Linux the command line, are checked).
   */
  startTime: string | null;
  port: number;
  /** ms since the epoch. */
  startedAt: number;
  logFile: string;
  /** The service's argv: the resolved program, then exec.args. */
  command: string[];
  /** The service process itself (a child of `pid`); informational. */
  servicePid: number;
}

export const EARLY_EXIT_MS = 100;
export const BIND_WATCH_MS = 1_000;
/** After a lost bind race the service is started again on another port, at most this often. */
export const MAX_BIND_RETRIES = 2;
/** The supervisor's argv is `node …/supervisor.js --service <id>@<version>`; ps shows which service. */
const SUPERVISOR_FLAG = '--service';
const HANDSHAKE_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
/** After SIGKILL, how long the tree may take to disappear before stopService gives up. */
const KILL_WAIT_MS = 10_000;
const POLL_MS = 25;
/** Environment variables of the CLI that a service must never see. */
const WITHHELD_ENV = new Set(['MODELHUB_ADMIN_TOKEN']);

// ---------------------------------------------------------------------------------------------
// Bookkeeping for services started by this process: how they ended, where they log.

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}
const exits = new Map<number, Exit>();
const logFiles = new Map<number, string>();
/** Size of the log when the service was started: where its own output begins. */
const logStarts = new Map<number, number>();
const REMEMBERED = 256;

/** Set, keeping only the most recent entries (a long-lived Electron main process starts many). */
function remember<V>(map: Map<number, V>, pid: number, value: V): void {
  map.delete(pid);
  map.set(pid, value);
  while (map.size > REMEMBERED) {
    const oldest = map.keys().next();
    if (oldest.done === true) break;
    map.delete(oldest.value);
  }
}

function describeExit(e: Exit | undefined): string {
  if (e === undefined) return 'exited';
  if (e.code !== null) return `exited with code ${e.code}`;
  return `was killed by ${e.signal ?? 'a signal'}`;
}

async function logTail(file: string | undefined, bytes = 4096): Promise<string> {
  return file === undefined ? '' : logSince(file, 0, bytes);
}

/** Up to the last `bytes` of `file` from byte `from` on (all of it when it rotated since). */
async function logSince(file: string, from: number, bytes = 64 * 1024): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const start = Math.max(size < from ? 0 : from, size - bytes);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

async function logSize(file: string): Promise<number> {
  try {
    const fh = await open(file, 'r');
    try {
      return (await fh.stat()).size;
    } finally {
      await fh.close();
    }
  } catch {
    return 0;
  }
}

/** What a service prints when it cannot bind its port: Node, Python, Go, Java …, and Windows. */
const ADDRESS_IN_USE = /EADDRINUSE|address already in use|only one usage of each socket address/i;

/**
 * A service that died having lost its port: its output (of this start) says the address was in
 * use, and the port is now held by some other process. Both, so that a service that fails to
 * bind a fixed port of its own (ours is free) is not mistaken for one that lost a race.
 */
async function lostPort(output: string, port: number): Promise<boolean> {
  return ADDRESS_IN_USE.test(output) && !(await isPortFree(port));
}

/**
 * The line of a service's output that best says why it ended: the last one naming an error
 * (a Node crash ends with the thrown object's fields and "Node.js v20…", a Python one with the
 * exception), else the last line.
 */
function tellingLine(output: string): string | undefined {
  const lines = output
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '' && !l.startsWith('[modelhub '));
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i]!;
    if (/^\s*at /.test(l)) continue; // a stack frame
    if (/(^|\s)\w*(Error|Exception):/.test(l) || /\bpanic:|\bfatal\b/i.test(l)) return l.trim();
  }
  return lines.pop();
}

/**
 * START_FAILED for a service that ended. `output` is what it printed during this start (the log
 * also holds earlier runs); without it the log's tail stands in.
 */
async function exitError(pid: number, what: string, extra: Record<string, unknown> = {}, port?: number, output?: string): Promise<ModelhubError> {
  const exit = exits.get(pid);
  const logFile = logFiles.get(pid);
  const tail = await logTail(logFile);
  const lastLine = tellingLine(output ?? tail);
  const hint = logFile === undefined ? '' : ` (log: ${logFile}${lastLine === undefined ? '' : `; last output: ${lastLine.slice(0, 300)}`})`;
  const taken = port !== undefined && (await lostPort(output ?? tail, port));
  const why = taken ? `; port ${port} was taken by another process before the service could bind it` : '';
  return new ModelhubError('START_FAILED', `service ${describeExit(exit)} ${what}${why}${hint}`, {
    details: { pid, exit_code: exit?.code ?? null, signal: exit?.signal ?? null, log_file: logFile ?? null, log_tail: tail, ...(taken ? { port_taken: true } : {}), ...extra },
  });
}

// ---------------------------------------------------------------------------------------------
// The supervisor script

/**
 * The compiled supervisor. Next to this module when running from dist/ (`dist/src/runtime/`);
 * when this module runs from its TypeScript source (vitest), the sibling is a .ts file, so the
 * compiled one is taken from `<repo>/dist/src/runtime/supervisor.js` (`npm run build` makes it).
 */
export function supervisorScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const sibling = path.join(here, 'supervisor.js');
  const built = path.resolve(here, '..', '..', 'dist', 'src', 'runtime', 'supervisor.js');
  const found = findScript([sibling, built]);
  if (found !== null) return found;
  throw new ModelhubError('START_FAILED', `the service supervisor is not built (looked for ${sibling} and ${built}); run npm run build`);
}

// ---------------------------------------------------------------------------------------------
// Start

function withoutKeys(env: NodeJS.ProcessEnv, drop: (key: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !drop(k)) out[k] = v;
  return out;
}

/** The service's environment: base (minus secrets) ← platform entry env ← the injected variables. */
export function serviceEnv(
  base: NodeJS.ProcessEnv,
  platformEnv: Record<string, string> | undefined,
  injected: { PORT: number; SERVICE_DIR: string; SERVICE_ID: string; SERVICE_VERSION: string },
): Record<string, string> {
  const injectedVars: Record<string, string> = {
    PORT: String(injected.PORT),
    SERVICE_DIR: injected.SERVICE_DIR,
    MODELS_DIR: path.join(injected.SERVICE_DIR, 'models'),
    SERVICE_ID: injected.SERVICE_ID,
    SERVICE_VERSION: injected.SERVICE_VERSION,
  };
  // Keys compare case-insensitively, so a platform `Port` cannot shadow the injected `PORT` on
  // Windows, where the environment is case-insensitive.
  const injectedUpper = new Set(Object.keys(injectedVars).map((k) => k.toUpperCase()));
  const env = withoutKeys(base, (k) => WITHHELD_ENV.has(k.toUpperCase()) || injectedUpper.has(k.toUpperCase()));
  for (const [k, v] of Object.entries(platformEnv ?? {})) if (!injectedUpper.has(k.toUpperCase())) env[k] = v;
  return { ...env, ...injectedVars };
}

// Lost bind races. choosePort checks that a port is free, but the service binds it only after
// its own start-up, and in between another process may take it: typically another service, or
// another modelhub process, that prefers the same default_port. The service then fails to bind.
//
// Only startService can still choose another port (its caller records pid and port as soon as it
// returns), so this is where a lost race is recognised: the service ended within its early
// window, its output of this start says the address was in use (EADDRINUSE, "address already in
// use", …), and the port is now held by another process. Then it is started again on a port the
// OS picks, at most MAX_BIND_RETRIES times. All three conditions are required, so a genuinely
// broken service (one that exits for another reason, or binds a fixed port of its own while ours
// is free) fails exactly as before: at once, with its exit code and last line of output.
//
// The preferred port is the contested one — every service and every node that prefers it tries
// it — so a service that got it is watched for BIND_WATCH_MS (1 s) rather than the 100 ms early
// window: long enough for a typical service to reach its bind. A port the OS picked is one of
// tens of thousands handed out at random; losing it is a coincidence not worth delaying every
// start for. A service that loses its port later than its window (it binds only after a long
// start-up) dies during the health check, which reports START_FAILED saying the port was taken
// (`details.port_taken`); starting it again chooses afresh.

type Launch = { ok: true; running: RunningService } | { ok: false; error: ModelhubError };

export async function startService(req: StartRequest): Promise<RunningService> {
  const adapter = req.adapter ?? platformAdapter;
  if (!ID_PATTERN.test(req.serviceId) || req.serviceId.includes('..')) {
    throw new ModelhubError('INVALID_REQUEST', `not a valid service id: ${JSON.stringify(req.serviceId)}`);
  }
  const entry = req.service.platforms[req.platform];
  if (entry === undefined) {
    throw new ModelhubError('PLATFORM_NOT_SUPPORTED', `service ${req.serviceId} ${req.version} has no entry for platform ${req.platform}`, {
      details: { platform: req.platform, platforms: Object.keys(req.service.platforms) },
    });
  }
  const versionDir = path.resolve(req.versionDir);
  const base = req.env ?? process.env;
  // The program is looked up with the environment it will run with (a platform entry may set PATH).
  const lookupEnv = { ...withoutKeys(base, () => false), ...(entry.env ?? {}) };
  const program = await adapter.resolveProgram(entry.exec.program, versionDir, lookupEnv);
  const args = entry.exec.args;

  const logsDir = path.resolve(req.logsDir);
  await mkdir(logsDir, { recursive: true });
  const logFile = path.join(logsDir, `${req.serviceId}.log`);
  const script = supervisorScript();

  const preferred = req.service.default_port;
  let port = await choosePort(preferred);
  const tried: number[] = [];
  for (;;) {
    tried.push(port);
    const contested = tried.length === 1 && port === preferred;
    const windowMs = Math.max(req.earlyExitMs ?? EARLY_EXIT_MS, contested ? (req.bindWatchMs ?? BIND_WATCH_MS) : 0);
    const env = serviceEnv(base, entry.env, {
      PORT: port,
      SERVICE_DIR: versionDir,
      SERVICE_ID: req.serviceId,
      SERVICE_VERSION: req.version,
    });
    const start: SupervisorStart = {
      type: 'start',
      label: `${req.serviceId}@${req.version}`,
      program,
      args,
      cwd: versionDir,
      env,
      logFile,
      logMaxBytes: req.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES,
      logKeep: req.logKeep ?? DEFAULT_LOG_KEEP,
    };
    const r = await launch(req, adapter, script, logsDir, start, port, windowMs);
    if (r.ok) return r.running;
    if (r.error.details.port_taken !== true || tried.length > MAX_BIND_RETRIES) {
      if (tried.length > 1) r.error.details.ports_tried = tried;
      throw r.error;
    }
    port = await choosePort();
  }
}

/** Spawns the supervisor for one start on `port` and waits out the early window. */
async function launch(
  req: StartRequest,
  adapter: PlatformAdapter,
  script: string,
  logsDir: string,
  start: SupervisorStart,
  port: number,
  windowMs: number,
): Promise<Launch> {
  const { program, args, logFile, env } = start;
  const logStart = await logSize(logFile);
  // The supervisor itself is Node: keep NODE_OPTIONS (meant for the service, or inherited from a
  // test runner or debugger) away from it; the service gets its environment through IPC.
  const nodeRun = nodeLaunch(req.nodeExecutable);
  const supervisorEnv = { ...withoutKeys(env, (k) => k.toUpperCase() === 'NODE_OPTIONS'), ...nodeRun.env };
  let child: ChildProcess;
  try {
    child = spawn(nodeRun.command, [script, SUPERVISOR_FLAG, start.label], {
      ...adapter.spawnDetachedOptions(),
      cwd: logsDir,
      env: supervisorEnv,
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
  } catch (err) {
    throw new ModelhubError('START_FAILED', `cannot start the service supervisor: ${(err as Error).message}`, { cause: err });
  }
  const startedAt = Date.now();
  // Read at once: the child cannot have been reaped yet, so the pid is still this process's.
  const startTime = child.pid === undefined ? null : adapter.processStartTime(child.pid);

  const outcome = await new Promise<{ servicePid: number } | { error: ModelhubError }>((resolve, reject) => {
    let settled = false;
    let ended = false;
    let spawnedPid: number | null = null;
    let earlyTimer: NodeJS.Timeout | undefined;
    const done = (err: Error | null, pid?: number): void => {
      if (settled) return;
      settled = true;
      clearTimeout(handshakeTimer);
      clearTimeout(earlyTimer);
      child.off('message', onMessage);
      child.off('exit', onSupervisorExit);
      if (err === null) resolve({ servicePid: pid ?? -1 });
      else if (err instanceof ModelhubError && ended) {
        // The service ended in its window: nothing more to hear from this supervisor.
        if (child.connected) child.disconnect();
        child.unref();
        resolve({ error: err });
      } else reject(err);
    };
    const handshakeTimer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          adapter.terminateTree(child.pid, 'SIGKILL', startTime);
        } catch {
          // gone already
        }
      }
      done(new ModelhubError('START_FAILED', `the service supervisor did not report within ${HANDSHAKE_TIMEOUT_MS} ms`));
    }, HANDSHAKE_TIMEOUT_MS);
    // The service's end, heard from the supervisor ('exited', once its output is in the log) or
    // seen as the supervisor's own exit, whichever comes first.
    const serviceEnded = (exit: Exit): void => {
      if (settled || ended) return;
      ended = true;
      const pid = child.pid ?? -1;
      remember(exits, pid, exit);
      const when = spawnedPid === null ? 'before it started' : `within ${windowMs} ms of starting`;
      void (async () => {
        const output = await logSince(logFile, logStart);
        done(await exitError(pid, when, { program, args, port }, port, output));
      })();
    };
    const onMessage = (m: SupervisorMessage): void => {
      if (m.type === 'ready') {
        child.send(start, (err) => {
          if (err !== null) done(new ModelhubError('START_FAILED', `cannot talk to the service supervisor: ${err.message}`, { cause: err }));
        });
      } else if (m.type === 'error') {
        done(
          new ModelhubError('START_FAILED', `cannot start ${program}: ${m.message}`, {
            details: { program, args, code: m.code ?? null, log_file: logFile },
          }),
        );
      } else if (m.type === 'spawned' && spawnedPid === null) {
        spawnedPid = m.pid;
        earlyTimer = setTimeout(() => done(null, m.pid), windowMs);
      } else if (m.type === 'exited') {
        serviceEnded({ code: m.code, signal: m.signal });
      }
    };
    const onSupervisorExit = (code: number | null, signal: NodeJS.Signals | null): void => serviceEnded({ code, signal });
    child.on('message', onMessage);
    child.once('exit', onSupervisorExit);
    // `on`, not `once`: a second 'error' without a listener would crash this process.
    child.on('error', (err) => done(new ModelhubError('START_FAILED', `cannot start the service supervisor: ${err.message}`, { cause: err })));
    if (child.pid !== undefined) remember(logFiles, child.pid, logFile);
  });
  if ('error' in outcome) return { ok: false, error: outcome.error };

  const pid = child.pid;
  if (pid === undefined) throw new ModelhubError('START_FAILED', 'the service supervisor has no pid');
  // Let go: the supervisor runs on without us, and this process may exit whenever it likes.
  child.on('exit', (code, signal) => remember(exits, pid, { code, signal }));
  remember(logStarts, pid, logStart);
  if (child.connected) child.disconnect();
  child.unref();
  return { ok: true, running: { pid, startTime, port, startedAt, logFile, command: [program, ...args], servicePid: outcome.servicePid } };
}

// ---------------------------------------------------------------------------------------------
// Stop

/**
 * Whether `pid` is a modelhub supervisor: true or false where the OS shows command lines (Linux),
 * null where it cannot tell.
 */
export function isSupervisorProcess(pid: number, adapter: PlatformAdapter = platformAdapter): boolean | null {
  const argv = adapter.commandLine(pid);
  if (argv === null) return null;
  const i = argv.findIndex((a) => /[\\/]supervisor\.js$/.test(a));
  return i >= 0 && argv[i + 1] === SUPERVISOR_FLAG;
}

export function isAlive(pid: number): boolean {
  return platformAdapter.isAlive(pid);
}

/**
 * What a recorded supervisor pid names now:
 *   - 'running': a live process that is the recorded one (same start time; for a record without
 *     a start time, any live process except one the OS shows is no modelhub supervisor),
 *   - 'reused': a live process that is not the recorded one (another start time, or without a
 *     start time a command line that is no supervisor's): never signal it,
 *   - 'gone': no live process (its process group may linger; stopService still reaches it).
 */
export type RecordedProcessState = 'running' | 'reused' | 'gone';

export function recordedProcess(pid: number, startTime: string | null | undefined, adapter: PlatformAdapter = platformAdapter): RecordedProcessState {
  if (!adapter.isAlive(pid)) return 'gone';
  if (startTime !== undefined && startTime !== null) return adapter.isAliveWithStartTime(pid, startTime) ? 'running' : 'reused';
  return isSupervisorProcess(pid, adapter) === false ? 'reused' : 'running';
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitTreeGone(adapter: PlatformAdapter, pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (!adapter.isTreeAlive(pid)) return true;
    if (Date.now() >= until) return false;
    await sleep(Math.min(POLL_MS, Math.max(1, until - Date.now())));
  }
}

/**
 * Stop the tree led by `pid` (the supervisor): SIGTERM to the tree, up to `graceMs` for it to
 * exit, then SIGKILL to the tree. Resolves once the tree is gone; `forced` says whether SIGKILL
 * was needed. A pid that is already gone is a no-op.
 *
 * A recorded pid may have been reused (after a reboot, say) by a process that is none of ours:
 * with `startTime` (RunningService.startTime, recorded with the pid), a live pid that started at
 * another time is never signalled; without one (a record of an older version), where the OS
 * shows command lines only a modelhub supervisor's tree is. Either way that is a no-op too.
 */
export async function stopService(
  pid: number,
  opts: { graceMs?: number; adapter?: PlatformAdapter; startTime?: string | null } = {},
): Promise<{ forced: boolean }> {
  const adapter = opts.adapter ?? platformAdapter;
  const graceMs = opts.graceMs ?? STOP_GRACE_MS;
  const startTime = opts.startTime ?? null;
  // terminateTree compares the start time itself (one query, which costs a command off Linux);
  // a record without one gets the command-line check here.
  const signal = (sig: 'SIGTERM' | 'SIGKILL'): boolean =>
    startTime === null ? recordedProcess(pid, null, adapter) !== 'reused' && adapter.terminateTree(pid, sig) : adapter.terminateTree(pid, sig, startTime);
  if (!adapter.isTreeAlive(pid) || !signal('SIGTERM')) return { forced: false };
  if (await waitTreeGone(adapter, pid, graceMs)) return { forced: false };
  // Refused: the tree ended during the grace and the pid went to another process, not ours to kill.
  if (!signal('SIGKILL')) return { forced: false };
  if ((await waitTreeGone(adapter, pid, KILL_WAIT_MS)) || recordedProcess(pid, startTime, adapter) === 'reused') return { forced: true };
  throw new ModelhubError('INTERNAL', `process tree ${pid} is still running ${KILL_WAIT_MS} ms after SIGKILL`, { details: { pid } });
}

// ---------------------------------------------------------------------------------------------
// Health

export interface HealthRequest {
  port: number;
  health: HealthCheck | undefined;
  pid: number;
  /** Absolute, ms since the epoch. */
  deadline: number;
  signal?: AbortSignal;
  now?: () => number;
  adapter?: PlatformAdapter;
}

interface ProbeResult {
  ok: boolean;
  /** What was seen: "HTTP 503", "connect ECONNREFUSED 127.0.0.1:1234", … */
  seen: string;
}

const DEFAULT_PROBE_TIMEOUT_MS = 2_000;
/** Without a health_check: how often the port is tried. */
const TCP_INTERVAL_MS = 100;

function httpProbe(port: number, endpoint: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = http.get({ host: '127.0.0.1', port, path: endpoint, agent: false, headers: { connection: 'close' } }, (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      res.on('error', () => undefined);
      finish({ ok: status >= 200 && status < 300, seen: `HTTP ${status}` });
    });
    const timer = setTimeout(() => {
      finish({ ok: false, seen: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    req.on('error', (err) => finish({ ok: false, seen: err.message }));
  });
}

function tcpProbe(port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const finish = (r: ProbeResult): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, seen: `no TCP connection within ${timeoutMs} ms` }), timeoutMs);
    socket.once('connect', () => finish({ ok: true, seen: 'TCP connection accepted' }));
    socket.once('error', (err) => finish({ ok: false, seen: err.message }));
  });
}

function probe(port: number, health: HealthCheck | undefined, timeoutMs: number): Promise<ProbeResult> {
  return health === undefined ? tcpProbe(port, timeoutMs) : httpProbe(port, health.endpoint, timeoutMs);
}

/** One probe, for `status`: GET the health endpoint (2xx = healthy), or a TCP connect without one. */
export async function probeHealth(port: number, health: HealthCheck | undefined, timeoutMs = DEFAULT_PROBE_TIMEOUT_MS): Promise<boolean> {
  return (await probe(port, health, timeoutMs)).ok;
}

/** Sleep up to `ms`, waking early on abort or when `pid` dies (checked every 100 ms). */
async function watchfulSleep(ms: number, pid: number, adapter: PlatformAdapter, signal: AbortSignal | undefined): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (signal?.aborted === true || !adapter.isAlive(pid)) return;
    const step = Math.min(100, until - Date.now());
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, step);
      function done(): void {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/**
 * Wait until the service answers its health check: `startup_grace_ms` first, then a probe every
 * `interval_ms` (each with its own timeout) until one answers 2xx. START_FAILED as soon as `pid`
 * is gone ("exited with code N" when this process started it); HEALTH_CHECK_FAILED once the
 * deadline passes, naming the last answer or error. An abort rejects with the signal's reason.
 * Without a health_check, healthy means the port accepts TCP connections.
 */
export async function waitHealthy(req: HealthRequest): Promise<{ checks: number; elapsedMs: number }> {
  const adapter = req.adapter ?? platformAdapter;
  const now = req.now ?? Date.now;
  const started = now();
  const interval = req.health?.interval_ms ?? TCP_INTERVAL_MS;
  const grace = req.health?.startup_grace_ms ?? 0;
  const target = req.health === undefined ? `port ${req.port}` : `http://127.0.0.1:${req.port}${req.health.endpoint}`;

  const assertAlive = async (): Promise<void> => {
    if (adapter.isAlive(req.pid)) return;
    await sleep(20); // let this process see the exit status of a child it started
    const logFile = logFiles.get(req.pid);
    const output = logFile === undefined ? undefined : await logSince(logFile, logStarts.get(req.pid) ?? 0);
    throw await exitError(req.pid, 'before becoming healthy', { port: req.port }, req.port, output);
  };

  await watchfulSleep(Math.min(grace, req.deadline - now()), req.pid, adapter, req.signal);
  let checks = 0;
  let last = 'no probe made';
  for (;;) {
    req.signal?.throwIfAborted();
    await assertAlive();
    const remaining = req.deadline - now();
    const timeout = Math.max(100, Math.min(Math.max(DEFAULT_PROBE_TIMEOUT_MS, interval), remaining));
    const result = await probe(req.port, req.health, timeout);
    checks++;
    // A healthy answer from a port whose service died belongs to someone else.
    await assertAlive();
    if (result.ok) return { checks, elapsedMs: now() - started };
    last = result.seen;
    if (now() >= req.deadline) {
      throw new ModelhubError('HEALTH_CHECK_FAILED', `${target} did not become healthy in time after ${checks} checks; last: ${last}`, {
        details: { port: req.port, pid: req.pid, checks, last, log_file: logFiles.get(req.pid) ?? null },
      });
    }
    await watchfulSleep(Math.min(interval, Math.max(0, req.deadline - now())), req.pid, adapter, req.signal);
  }
}
