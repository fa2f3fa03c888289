// The service supervisor: a tiny detached Node process between the CLI and a service.
//
//   CLI (startService) ──spawn detached, IPC──▶ supervisor ──spawn, pipes──▶ service ──▶ …
//
// - It is spawned detached, so it leads a new process group (POSIX: its own session) and
//   outlives the CLI. The service and everything it spawns inherit that group, so the
//   supervisor's pid is the one the engine records and the one whose tree `stopService` kills.
// - It says `{type:'ready'}`, receives its job as one IPC message (`SupervisorStart`), spawns the service (argv, never a
//   shell), reports `{type:'spawned', pid}` or `{type:'error', …}`, and the CLI then disconnects.
//   A service that ends while the CLI is still connected (its early window) is reported as
//   `{type:'exited', code, signal}` once its output is in the log, so the CLI need not wait for
//   the supervisor's own exit to read why.
// - It copies the service's stdout and stderr into `<logsDir>/<id>.log`, rotating at a size
//   bound (RotatingLog).
// - It forwards SIGTERM/SIGINT/SIGHUP to the service (once per signal), waits for it, and exits
//   with the service's exit code (128 + signal number when the service died of a signal).
//
// It is run as plain JavaScript by `node dist/src/runtime/supervisor.js`, so it imports only
// node: builtins and its sibling rotating-log.js, and never asks which OS it runs on.
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { RotatingLog } from './rotating-log.js';

export interface SupervisorStart {
  type: 'start';
  label: string;
  program: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  logFile: string;
  logMaxBytes: number;
  logKeep: number;
}

export type SupervisorMessage =
  | { type: 'ready' }
  | { type: 'spawned'; pid: number }
  | { type: 'error'; message: string; code?: string }
  | { type: 'exited'; code: number | null; signal: NodeJS.Signals | null };

/** How long to wait for the CLI's start message before giving up. */
const START_MESSAGE_TIMEOUT_MS = 15_000;
/** After the service exits, how long to wait for its pipes to drain (a grandchild may hold them). */
const DRAIN_MS = 1_000;

function send(msg: SupervisorMessage): void {
  if (process.send === undefined || !process.connected) return;
  try {
    process.send(msg, undefined, {}, () => undefined);
  } catch {
    // the CLI went away; nothing to tell
  }
}

function isStart(m: unknown): m is SupervisorStart {
  if (typeof m !== 'object' || m === null) return false;
  const o = m as Record<string, unknown>;
  return o.type === 'start' && typeof o.program === 'string' && Array.isArray(o.args) && typeof o.logFile === 'string';
}

function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = signal === null ? undefined : (os.constants.signals as Record<string, number | undefined>)[signal];
  return 128 + (n ?? 0);
}

function run(cfg: SupervisorStart): void {
  let log: RotatingLog;
  try {
    log = new RotatingLog(cfg.logFile, { maxBytes: cfg.logMaxBytes, keep: cfg.logKeep });
  } catch (err) {
    send({ type: 'error', message: `cannot open log file ${cfg.logFile}: ${(err as Error).message}` });
    setTimeout(() => process.exit(126), 200);
    return;
  }
  const note = (text: string): void => {
    try {
      log.note(text);
    } catch {
      // best effort
    }
  };
  note(`supervisor ${process.pid} starting ${cfg.label}: ${JSON.stringify([cfg.program, ...cfg.args])} in ${cfg.cwd}`);

  process.on('uncaughtException', (err) => {
    // Without a supervisor the service runs on unlogged (stopService still reaches its group);
    // leave a trace of why.
    note(`supervisor error: ${err.stack ?? err.message}`);
    process.exit(70);
  });

  let child: ChildProcess;
  let finished = false;
  const finish = (code: number, why: string): void => {
    if (finished) return;
    finished = true;
    try {
      log.note(why);
      log.close();
    } catch {
      // the log is best effort at this point
    }
    process.exitCode = code;
    // Leave through the event loop's end, so a pending IPC reply still goes out; force it soon
    // after in case something (the CLI's IPC channel, a grandchild's pipe) keeps the loop alive.
    setTimeout(() => process.exit(code), 200).unref();
  };

  try {
    child = spawn(cfg.program, cfg.args, {
      cwd: cfg.cwd,
      env: cfg.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      windowsHide: true,
    });
  } catch (err) {
    send({ type: 'error', message: (err as Error).message, code: (err as NodeJS.ErrnoException).code });
    finish(127, `spawn failed: ${(err as Error).message}`);
    return;
  }

  let spawned = false;
  child.once('spawn', () => {
    spawned = true;
    note(`service started, pid ${child.pid ?? '?'}`);
    send({ type: 'spawned', pid: child.pid ?? -1 });
  });
  child.on('error', (err: NodeJS.ErrnoException) => {
    if (spawned) {
      note(`error: ${err.message}`);
      return;
    }
    send({ type: 'error', message: err.message, code: err.code });
    finish(127, `cannot start ${cfg.program}: ${err.message}`);
  });
  // A full disk must not take the service down with it: drop output the log cannot take.
  const copy = (b: Buffer): void => {
    try {
      log.write(b);
    } catch {
      // dropped
    }
  };
  child.stdout?.on('data', copy);
  child.stderr?.on('data', copy);

  const forwarded = new Set<NodeJS.Signals>();
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (forwarded.has(sig)) return;
      forwarded.add(sig);
      note(`received ${sig}, forwarding it to the service`);
      try {
        child.kill(sig);
      } catch {
        // already gone
      }
    });
  }

  child.once('exit', (code, signal) => {
    const status = code !== null ? `exited with code ${code}` : `was killed by ${signal ?? 'a signal'}`;
    const exit = exitCodeOf(code, signal);
    let closed = false;
    child.once('close', () => {
      closed = true;
      finish(exit, `service ${status}`);
      send({ type: 'exited', code, signal });
    });
    setTimeout(() => {
      if (closed) return;
      finish(exit, `service ${status} (output pipes still held open; not waiting for them)`);
      send({ type: 'exited', code, signal });
    }, DRAIN_MS).unref();
  });
}

function main(): void {
  const timer = setTimeout(() => process.exit(2), START_MESSAGE_TIMEOUT_MS);
  const onDisconnect = (): void => process.exit(2);
  process.once('disconnect', onDisconnect);
  process.once('message', (m: unknown) => {
    clearTimeout(timer);
    process.off('disconnect', onDisconnect);
    if (!isStart(m)) {
      send({ type: 'error', message: 'supervisor: malformed start message' });
      setTimeout(() => process.exit(2), 200);
      return;
    }
    run(m);
  });
  // Ask for the job only now that the listener is in place, so it cannot arrive unheard.
  send({ type: 'ready' });
}

main();
