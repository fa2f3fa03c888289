// The runtime manager for real: the demo service (src/demo/fixtures.ts) and a few services of our
// own, started through the detached supervisor, health-checked, stopped.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, realpath, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelhubError } from '../../src/errors.js';
import { platformAdapter } from '../../src/platform/adapter.js';
import { choosePort } from '../../src/runtime/ports.js';
import {
  BIND_WATCH_MS,
  isAlive,
  isSupervisorProcess,
  probeHealth,
  recordedProcess,
  startService,
  stopService,
  supervisorScript,
  waitHealthy,
  type RunningService,
  type StartRequest,
} from '../../src/runtime/manager.js';
import type { ServiceJson } from '../../src/schemas/service.js';
import { tempDir } from '../helpers/tmp.js';
import { DIST_MANAGER, demoService, nodeService, startedPids, stopAll, until } from './helpers.js';

const PLATFORM = platformAdapter.platform ?? 'linux-x64';

let root: string;
let logsDir: string;

beforeAll(async () => {
  root = await realpath(await tempDir('modelhub-runtime-'));
  logsDir = path.join(root, 'home', 'logs');
});
afterEach(stopAll);
afterAll(stopAll);

async function start(dir: string, service: ServiceJson, extra: Partial<StartRequest> = {}): Promise<RunningService> {
  const r = await startService({
    serviceId: service.service_id,
    version: service.version,
    versionDir: dir,
    service,
    platform: PLATFORM,
    logsDir,
    ...extra,
  });
  startedPids.add(r.pid);
  return r;
}

async function healthy(r: RunningService, service: ServiceJson, ms = 10_000): Promise<{ checks: number; elapsedMs: number }> {
  return waitHealthy({ port: r.port, health: service.health_check, pid: r.pid, deadline: Date.now() + ms });
}

async function getJson(port: number, p = '/'): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`);
  return (await res.json()) as Record<string, unknown>;
}

async function failure(p: Promise<unknown>): Promise<ModelhubError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ModelhubError) return err;
    throw err;
  }
  throw new Error('expected a ModelhubError');
}

/** Another process's listener on 127.0.0.1:`port` (0: any free port), as a lost race would meet it. */
async function holdPort(port: number): Promise<{ port: number; release: () => Promise<void> }> {
  const server = net.createServer();
  const sockets = new Set<net.Socket>();
  server.on('connection', (c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr !== null ? addr.port : 0,
    release: () =>
      new Promise((resolve) => {
        // A health probe may still be connected to it; closing waits for every connection.
        for (const c of sockets) c.destroy();
        server.close(() => resolve());
      }),
  };
}

/** ppid and pgrp from /proc (Linux). */
function procInfo(pid: number): { ppid: number; pgrp: number } {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(f[1]), pgrp: Number(f[2]) };
}

const ENV_SOURCE = `
import http from 'node:http';
const keys = ['PORT', 'SERVICE_DIR', 'MODELS_DIR', 'SERVICE_ID', 'SERVICE_VERSION', 'DEMO_GREETING', 'FROM_BASE', 'MODELHUB_ADMIN_TOKEN'];
http.createServer((req, res) => {
  res.writeHead(req.url === '/health' || req.url === '/' ? 200 : 404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ env: Object.fromEntries(keys.map((k) => [k, process.env[k] ?? null])), cwd: process.cwd(), argv: process.argv.slice(2) }));
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

const TREE_SOURCE = `
import http from 'node:http';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
const stubborn = process.env.STUBBORN === '1';
const code = stubborn ? "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)" : 'setInterval(() => {}, 1000)';
const g = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
fs.writeFileSync(process.env.GRANDCHILD_PID_FILE, String(g.pid));
if (stubborn) process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
http.createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');
`;

/** Answers /health, and tells on /probes when the first probe came (ms since the epoch) and how many came. */
const PROBE_LOG_SOURCE = `
import http from 'node:http';
let first = null;
let count = 0;
http.createServer((req, res) => {
  if (req.url === '/health') {
    count++;
    first ??= Date.now();
    res.end('ok');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ first, count }));
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

/**
 * Notes each port it is given in $PORTS_FILE, waits for $GO_FILE on its first start only, then
 * binds $BIND_PORT (default $PORT); a failed bind kills it with EADDRINUSE, as in most servers.
 */
const BIND_RACE_SOURCE = `
import http from 'node:http';
import fs from 'node:fs';
const first = !fs.existsSync(process.env.PORTS_FILE);
fs.appendFileSync(process.env.PORTS_FILE, process.env.PORT + '\\n');
if (first) while (!fs.existsSync(process.env.GO_FILE)) await new Promise((r) => setTimeout(r, 10));
const port = Number(process.env.BIND_PORT ?? process.env.PORT);
http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ port }));
}).listen(port, '127.0.0.1', () => console.log('listening on ' + port));
`;

const CHATTY_SOURCE = `
import http from 'node:http';
for (let i = 0; i < 200; i++) console.log('line ' + String(i).padStart(4, '0') + ' ' + 'x'.repeat(80));
console.error('stderr goes to the log too');
http.createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');
`;

describe('runtime manager: start, health, stop', () => {
  it('starts the demo service detached, health-checks it, and it answers with its version', async () => {
    expect(existsSync(supervisorScript())).toBe(true);
    const { dir, service } = await demoService(root, { version: '1.0.0' });
    const before = Date.now();
    const r = await start(dir, service);
    expect(r.startedAt).toBeGreaterThanOrEqual(before);
    expect(r.startedAt).toBeLessThanOrEqual(Date.now());
    expect(r.logFile).toBe(path.join(logsDir, 'demo-echo.log'));
    expect(path.isAbsolute(r.command[0] ?? '')).toBe(true);
    expect(path.basename(r.command[0] ?? '')).toMatch(/^node/);
    expect(r.command.slice(1)).toEqual(['app/server.mjs']);

    // The recorded pid is the supervisor: the group leader and the service's parent.
    expect(r.pid).not.toBe(r.servicePid);
    expect(isAlive(r.pid)).toBe(true);
    expect(isAlive(r.servicePid)).toBe(true);
    expect(procInfo(r.pid).pgrp).toBe(r.pid);
    expect(procInfo(r.servicePid)).toEqual({ ppid: r.pid, pgrp: r.pid });
    expect(isSupervisorProcess(r.pid)).toBe(true);
    expect(isSupervisorProcess(r.servicePid)).toBe(false);

    const h = await healthy(r, service);
    expect(h.checks).toBeGreaterThanOrEqual(1);
    expect(await getJson(r.port)).toEqual({ service: 'demo-echo', version: '1.0.0', model_bytes: 4096 });
    expect(await probeHealth(r.port, service.health_check)).toBe(true);

    expect(await stopService(r.pid, { graceMs: 3000 })).toEqual({ forced: false });
    expect(isAlive(r.pid)).toBe(false);
    expect(isAlive(r.servicePid)).toBe(false);
    expect(await probeHealth(r.port, service.health_check, 500)).toBe(false);
    const log = await readFile(r.logFile, 'utf8');
    expect(log).toContain(`demo service listening on ${r.port}`);
    expect(log).toMatch(/service exited with code 0/);
    // Stopping again is a no-op.
    expect(await stopService(r.pid)).toEqual({ forced: false });
  });

  it('injects PORT, SERVICE_DIR, MODELS_DIR, SERVICE_ID, SERVICE_VERSION over the platform and base env, argv without a shell, cwd the version dir', async () => {
    const { dir, service } = await nodeService(root, 'env-dump', ENV_SOURCE, {}, { DEMO_GREETING: 'hello', PORT: '1', SERVICE_ID: 'spoofed' });
    const entry = service.platforms[PLATFORM];
    if (entry === undefined) throw new Error('no platform entry');
    entry.exec.args = ['app/main.mjs', 'a b; echo $HOME', '*', '$(id)'];
    const r = await start(dir, service, { env: { ...process.env, FROM_BASE: 'yes', MODELHUB_ADMIN_TOKEN: 'secret', SERVICE_VERSION: '9.9.9' } });
    await healthy(r, service);
    const body = await getJson(r.port);
    expect(body.env).toEqual({
      PORT: String(r.port),
      SERVICE_DIR: dir,
      MODELS_DIR: path.join(dir, 'models'),
      SERVICE_ID: 'env-dump',
      SERVICE_VERSION: '1.0.0',
      DEMO_GREETING: 'hello',
      FROM_BASE: 'yes',
      MODELHUB_ADMIN_TOKEN: null,
    });
    expect(body.cwd).toBe(dir);
    expect(body.argv).toEqual(['a b; echo $HOME', '*', '$(id)']);
    expect(r.command.slice(1)).toEqual(['app/main.mjs', 'a b; echo $HOME', '*', '$(id)']);
  });

  it('keeps running after the process that started it exits', async () => {
    const { dir, service } = await demoService(root, { id: 'survivor' });
    const script = `
      import { readFileSync } from 'node:fs';
      const { startService } = await import(${JSON.stringify(pathToFileURL(DIST_MANAGER).href)});
      const [dir, logsDir, platform] = process.argv.slice(1);
      const service = JSON.parse(readFileSync(dir + '/service.json', 'utf8'));
      const r = await startService({ serviceId: service.service_id, version: service.version, versionDir: dir, service, platform, logsDir });
      console.log(JSON.stringify(r));
    `;
    const out = await new Promise<{ code: number; killed: boolean; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--input-type=module', '-e', script, dir, logsDir, PLATFORM], { timeout: 45_000 }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, killed: err?.killed === true, stdout, stderr });
      });
    });
    // The starter exits by itself: nothing of the service keeps its event loop alive (a starter
    // held open would be killed by the timeout instead, however busy the machine is).
    expect(out.killed).toBe(false);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const r = JSON.parse(out.stdout.trim()) as RunningService;
    startedPids.add(r.pid);

    expect(isAlive(r.pid)).toBe(true);
    await waitHealthy({ port: r.port, health: service.health_check, pid: r.pid, deadline: Date.now() + 10_000 });
    expect(await getJson(r.port)).toMatchObject({ service: 'survivor', version: '1.0.0' });
    // Orphaned: the supervisor's parent is no longer the starter.
    expect(procInfo(r.pid).ppid).not.toBe(process.pid);

    expect(await stopService(r.pid, { graceMs: 3000 })).toEqual({ forced: false });
    expect(isAlive(r.pid)).toBe(false);
    expect(isAlive(r.servicePid)).toBe(false);
  });

  it('stops the whole tree: the service and the process it spawned', async () => {
    const pidFile = path.join(root, 'grandchild-1.pid');
    const { dir, service } = await nodeService(root, 'tree', TREE_SOURCE, {}, { GRANDCHILD_PID_FILE: pidFile });
    const r = await start(dir, service);
    await healthy(r, service);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    expect(isAlive(grandchild)).toBe(true);
    expect(procInfo(grandchild).pgrp).toBe(r.pid);

    expect(await stopService(r.pid, { graceMs: 3000 })).toEqual({ forced: false });
    for (const pid of [r.pid, r.servicePid, grandchild]) expect(isAlive(pid)).toBe(false);
  });

  it('kills a tree that ignores SIGTERM once the grace period is over', async () => {
    const pidFile = path.join(root, 'grandchild-2.pid');
    const { dir, service } = await nodeService(root, 'stubborn', TREE_SOURCE, {}, { GRANDCHILD_PID_FILE: pidFile, STUBBORN: '1' });
    const r = await start(dir, service);
    await healthy(r, service);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    const t0 = Date.now();
    expect(await stopService(r.pid, { graceMs: 600 })).toEqual({ forced: true });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    for (const pid of [r.pid, r.servicePid, grandchild]) expect(isAlive(pid)).toBe(false);
  });

  it('stops an orphaned group whose supervisor died', async () => {
    const pidFile = path.join(root, 'grandchild-3.pid');
    const { dir, service } = await nodeService(root, 'orphans', TREE_SOURCE, {}, { GRANDCHILD_PID_FILE: pidFile });
    const r = await start(dir, service);
    await healthy(r, service);
    process.kill(r.pid, 'SIGKILL');
    expect(await until(() => !isAlive(r.pid))).toBe(true);
    expect(isAlive(r.servicePid)).toBe(true);
    await stopService(r.pid, { graceMs: 2000 });
    expect(isAlive(r.servicePid)).toBe(false);
    expect(isAlive(Number(await readFile(pidFile, 'utf8')))).toBe(false);
  });

  it('stopService leaves alone a live pid that is not a modelhub supervisor (a reused pid)', async () => {
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    const pid = other.pid ?? 0;
    try {
      expect(isAlive(pid)).toBe(true);
      expect(isSupervisorProcess(pid)).toBe(false);
      expect(await stopService(pid, { graceMs: 200 })).toEqual({ forced: false });
      expect(isAlive(pid)).toBe(true);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('returns the supervisor start time; stopService never signals the pid for a record with another start time (a reused pid)', async () => {
    const { dir, service } = await demoService(root, { id: 'reused-pid' });
    const r = await start(dir, service);
    await healthy(r, service);
    expect(r.startTime).toMatch(/^linux:[0-9a-f-]+:\d+$/);
    expect(r.startTime).toBe(platformAdapter.processStartTime(r.pid));
    // The record of a process that held this pid before: it started one clock tick earlier.
    const earlier = r.startTime!.replace(/\d+$/, (t) => String(Number(t) - 1));
    expect(recordedProcess(r.pid, r.startTime)).toBe('running');
    expect(recordedProcess(r.pid, earlier)).toBe('reused');
    expect(recordedProcess(r.pid, null)).toBe('running'); // a record without a start time: it is a supervisor

    // The live process passes the supervisor command-line check; only the start time tells.
    expect(isSupervisorProcess(r.pid)).toBe(true);
    expect(await stopService(r.pid, { graceMs: 500, startTime: earlier })).toEqual({ forced: false });
    expect(isAlive(r.pid)).toBe(true);
    expect(isAlive(r.servicePid)).toBe(true);
    expect(await probeHealth(r.port, service.health_check)).toBe(true);

    expect(await stopService(r.pid, { graceMs: 3000, startTime: r.startTime })).toEqual({ forced: false });
    expect(isAlive(r.pid)).toBe(false);
    expect(isAlive(r.servicePid)).toBe(false);
    expect(recordedProcess(r.pid, r.startTime)).toBe('gone');
  });

  it('with a start time, still stops an orphaned group whose supervisor died', async () => {
    const pidFile = path.join(root, 'grandchild-4.pid');
    const { dir, service } = await nodeService(root, 'orphans-st', TREE_SOURCE, {}, { GRANDCHILD_PID_FILE: pidFile });
    const r = await start(dir, service);
    await healthy(r, service);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    process.kill(r.pid, 'SIGKILL');
    expect(await until(() => !isAlive(r.pid))).toBe(true);
    expect(isAlive(r.servicePid)).toBe(true);
    expect(recordedProcess(r.pid, r.startTime)).toBe('gone');
    await stopService(r.pid, { graceMs: 2000, startTime: r.startTime });
    expect(isAlive(r.servicePid)).toBe(false);
    expect(isAlive(grandchild)).toBe(false);
  });

  it('a record without a start time keeps the command-line check: a live pid that is no supervisor is "reused"', async () => {
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    const pid = other.pid ?? 0;
    try {
      expect(recordedProcess(pid, null)).toBe('reused');
      expect(recordedProcess(pid, undefined)).toBe('reused');
      expect(recordedProcess(pid, platformAdapter.processStartTime(pid))).toBe('running');
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('stopService on a pid that is gone is a no-op', async () => {
    const { dir, service } = await demoService(root, { id: 'gone', behavior: 'exits' });
    const err = await failure(start(dir, service, { earlyExitMs: 3000 }));
    expect(err.code).toBe('START_FAILED');
    const pid = err.details.pid as number;
    expect(await until(() => !isAlive(pid))).toBe(true);
    expect(await stopService(pid)).toEqual({ forced: false });
  });
});

describe('runtime manager: failures', () => {
  it('never-binds: HEALTH_CHECK_FAILED at the deadline, naming the last error', async () => {
    const { dir, service } = await demoService(root, { id: 'mute', behavior: 'never-binds' });
    const r = await start(dir, service);
    const t0 = Date.now();
    const err = await failure(waitHealthy({ port: r.port, health: service.health_check, pid: r.pid, deadline: t0 + 1500 }));
    const elapsed = Date.now() - t0;
    expect(err.code).toBe('HEALTH_CHECK_FAILED');
    expect(err.message).toMatch(/ECONNREFUSED/);
    // It waited for the deadline it was given, and gave up there, not at the service's own
    // timeout_ms (10 s): the ceiling only leaves room for a busy machine.
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(8000);
    expect(isAlive(r.pid)).toBe(true); // the caller decides to stop it
  });

  it('unhealthy (503): HEALTH_CHECK_FAILED naming the status', async () => {
    const { dir, service } = await demoService(root, { id: 'sick', behavior: 'unhealthy' });
    const r = await start(dir, service);
    // The deadline counts from when the service answers at all, so that a slow start-up on a
    // busy machine cannot use it up with connection errors.
    expect(await until(async () => (await fetch(`http://127.0.0.1:${r.port}/health`).catch(() => null))?.status === 503)).toBe(true);
    const err = await failure(waitHealthy({ port: r.port, health: service.health_check, pid: r.pid, deadline: Date.now() + 3000 }));
    expect(err.code).toBe('HEALTH_CHECK_FAILED');
    expect(err.message).toMatch(/HTTP 503/);
    // A 503 is not final: it kept probing until the deadline.
    expect(err.details.checks).toBeGreaterThan(1);
    expect(await probeHealth(r.port, service.health_check)).toBe(false);
  });

  it('exits: START_FAILED quickly, with the exit code', async () => {
    const { dir, service } = await demoService(root, { id: 'quitter', behavior: 'exits' });
    for (const earlyExitMs of [undefined, 0]) {
      const t0 = Date.now();
      const err = await failure(
        (async () => {
          const r = await start(dir, service, earlyExitMs === undefined ? {} : { earlyExitMs });
          await waitHealthy({ port: r.port, health: service.health_check, pid: r.pid, deadline: Date.now() + 45_000 });
        })(),
      );
      expect(err.code).toBe('START_FAILED');
      expect(err.message).toMatch(/exited with code 3/);
      expect(err.message).toMatch(/exiting at once, as configured/);
      // Noticed when the process ended, not at the 45 s deadline.
      expect(Date.now() - t0).toBeLessThan(20_000);
    }
    // An exit inside the early window fails startService itself.
    const err = await failure(start(dir, service, { earlyExitMs: 3000 }));
    expect(err.code).toBe('START_FAILED');
    expect(err.message).toMatch(/exited with code 3 within 3000 ms/);
    expect(err.details.exit_code).toBe(3);
  });

  it('honours startup_grace_ms, but notices a death during the grace at once', async () => {
    const hc = (grace: number): Record<string, unknown> => ({
      health_check: { type: 'http', endpoint: '/health', startup_grace_ms: grace, interval_ms: 100, timeout_ms: 5000 },
    });
    // The service itself notes when the first probe reached it: no probe may come before the grace is over.
    const a = await nodeService(root, 'graceful', PROBE_LOG_SOURCE, hc(600));
    const r = await start(a.dir, a.service);
    const h = await healthy(r, a.service, 30_000);
    expect(h.elapsedMs).toBeGreaterThanOrEqual(600);
    const seen = (await getJson(r.port, '/probes')) as { first: number | null; count: number };
    expect(seen.first).not.toBeNull();
    expect(seen.first! - r.startedAt).toBeGreaterThanOrEqual(600 - 5); // 5 ms: clock granularity between processes
    expect(seen.count).toBeGreaterThanOrEqual(1);
    expect(seen.count).toBeLessThanOrEqual(h.checks);

    const b = await demoService(root, { id: 'graceless', behavior: 'exits', patch: hc(30_000) });
    const t0 = Date.now();
    const err = await failure(
      (async () => {
        const rb = await start(b.dir, b.service, { earlyExitMs: 0 });
        await healthy(rb, b.service, 45_000);
      })(),
    );
    expect(err.code).toBe('START_FAILED');
    expect(err.message).toMatch(/exited with code 3/);
    // Noticed during the 30 s grace, not after it.
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('a program that cannot be resolved fails before anything is spawned', async () => {
    const { dir, service } = await demoService(root, { id: 'broken' });
    for (const [program, message] of [
      ['app/missing', /not found in the package/],
      ['../escape', /inside the package/],
      ['no-such-command-xyz', /not found on PATH/],
    ] as const) {
      const s = structuredClone(service);
      const entry = s.platforms[PLATFORM];
      if (entry === undefined) throw new Error('no platform entry');
      entry.exec.program = program;
      const err = await failure(start(dir, s));
      expect(err.code).toBe('START_FAILED');
      expect(err.message).toMatch(message);
    }
    expect(existsSync(path.join(logsDir, 'broken.log'))).toBe(false);
  });

  it('PLATFORM_NOT_SUPPORTED without an entry for the platform', async () => {
    const { dir, service } = await demoService(root, { id: 'elsewhere' });
    const s = structuredClone(service);
    delete s.platforms[PLATFORM];
    expect((await failure(start(dir, s))).code).toBe('PLATFORM_NOT_SUPPORTED');
  });

  it('waitHealthy stops waiting when aborted', async () => {
    const { dir, service } = await demoService(root, { id: 'aborted', behavior: 'never-binds' });
    const r = await start(dir, service);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const t0 = Date.now();
    await expect(
      waitHealthy({ port: r.port, health: service.health_check, pid: r.pid, deadline: Date.now() + 45_000, signal: ac.signal }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    // Stopped at the abort, long before the 45 s deadline.
    expect(Date.now() - t0).toBeLessThan(20_000);
  });
});

describe('runtime manager: ports, health without a health_check, logs', () => {
  it('uses default_port when it is free, another port when it is taken', async () => {
    const free = await choosePort();
    const a = await demoService(root, { id: 'port-free', patch: { default_port: free } });
    const ra = await start(a.dir, a.service);
    expect(ra.port).toBe(free);
    await healthy(ra, a.service);

    const blocker = await holdPort(0);
    const taken = blocker.port;
    try {
      const b = await demoService(root, { id: 'port-taken', patch: { default_port: taken } });
      const rb = await start(b.dir, b.service);
      expect(rb.port).not.toBe(taken);
      await healthy(rb, b.service);
      expect(await getJson(rb.port)).toMatchObject({ service: 'port-taken' });
    } finally {
      await blocker.release();
    }
  });

  it('a service that loses its port between the check and its bind is started again on another one', async () => {
    const preferred = await choosePort();
    const marker = path.join(root, 'race-1.ports');
    const go = path.join(root, 'race-1.go');
    const { dir, service } = await nodeService(root, 'race-lost', BIND_RACE_SOURCE, { default_port: preferred }, { PORTS_FILE: marker, GO_FILE: go });
    // A generous watch, so that the service's own start-up on a busy machine cannot outlast it.
    const starting = start(dir, service, { bindWatchMs: 30_000 });
    let thief: { release: () => Promise<void> } | undefined;
    try {
      // Once the service has been given the preferred port, another process takes it; then the
      // service tries to bind it.
      // The service creates the file and then writes it: wait for the line, not the file.
      expect(await until(() => existsSync(marker) && readFileSync(marker, 'utf8').endsWith('\n'))).toBe(true);
      expect(readFileSync(marker, 'utf8').trim()).toBe(String(preferred));
      thief = await holdPort(preferred);
      await writeFile(go, '');
      const r = await starting;
      expect(r.port).not.toBe(preferred);
      await healthy(r, service);
      expect(await getJson(r.port)).toEqual({ port: r.port });
      // Two starts: the preferred port, lost, then the one the OS picked.
      expect(readFileSync(marker, 'utf8').trim().split('\n')).toEqual([String(preferred), String(r.port)]);
      expect(readFileSync(r.logFile, 'utf8')).toMatch(/EADDRINUSE/);
    } finally {
      await starting.catch(() => undefined);
      await thief?.release();
    }
  });

  it('a service that cannot bind a port of its own fails at once, without a retry', async () => {
    const blocker = await holdPort(0);
    const fixed = blocker.port;
    try {
      const marker = path.join(root, 'race-2.ports');
      const go = path.join(root, 'race-2.go');
      await writeFile(go, '');
      // It ignores $PORT and binds `fixed`, which is busy: EADDRINUSE, but not a lost race.
      const { dir, service } = await nodeService(root, 'fixed-port', BIND_RACE_SOURCE, {}, { PORTS_FILE: marker, GO_FILE: go, BIND_PORT: String(fixed) });
      const t0 = Date.now();
      const err = await failure(start(dir, service, { earlyExitMs: 30_000 }));
      expect(err.code).toBe('START_FAILED');
      expect(err.message).toMatch(/exited with code 1 within 30000 ms/);
      expect(err.message).toMatch(new RegExp(`last output: .*EADDRINUSE.*:${fixed}`));
      expect(err.details.port_taken).toBeUndefined();
      expect(readFileSync(marker, 'utf8').trim().split('\n')).toHaveLength(1);
      // Reported when it died, not at the end of its 30 s window.
      expect(Date.now() - t0).toBeLessThan(20_000);
    } finally {
      await blocker.release();
    }
  });

  it('a port lost after the start window is reported as taken by the health check', async () => {
    const preferred = await choosePort();
    const marker = path.join(root, 'race-3.ports');
    const go = path.join(root, 'race-3.go');
    const { dir, service } = await nodeService(root, 'race-late', BIND_RACE_SOURCE, { default_port: preferred }, { PORTS_FILE: marker, GO_FILE: go });
    const r = await start(dir, service, { bindWatchMs: 0 });
    expect(r.port).toBe(preferred);
    const thief = await holdPort(preferred);
    try {
      await writeFile(go, '');
      const err = await failure(healthy(r, service, 45_000));
      expect(err.code).toBe('START_FAILED');
      expect(err.message).toMatch(new RegExp(`port ${preferred} was taken by another process`));
      expect(err.details.port_taken).toBe(true);
    } finally {
      await thief.release();
    }
  });

  it('watches a service on its preferred port for a lost bind race before handing it over', async () => {
    expect(BIND_WATCH_MS).toBeGreaterThanOrEqual(500);
    const free = await choosePort();
    const a = await demoService(root, { id: 'port-watched', patch: { default_port: free } });
    const t0 = Date.now();
    const r = await start(a.dir, a.service);
    expect(r.port).toBe(free);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(BIND_WATCH_MS);
    await healthy(r, a.service);
  });

  it('without a health_check, healthy means the port accepts connections', async () => {
    const ok = await demoService(root, { id: 'tcp-ok', patch: { health_check: undefined } });
    expect(ok.service.health_check).toBeUndefined();
    const r = await start(ok.dir, ok.service);
    await waitHealthy({ port: r.port, health: undefined, pid: r.pid, deadline: Date.now() + 10_000 });
    expect(await probeHealth(r.port, undefined)).toBe(true);

    const mute = await demoService(root, { id: 'tcp-mute', behavior: 'never-binds', patch: { health_check: undefined } });
    const rm = await start(mute.dir, mute.service);
    const err = await failure(waitHealthy({ port: rm.port, health: undefined, pid: rm.pid, deadline: Date.now() + 800 }));
    expect(err.code).toBe('HEALTH_CHECK_FAILED');
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it('writes stdout and stderr to <logs>/<id>.log and rotates at the size bound', async () => {
    const { dir, service } = await nodeService(root, 'chatty', CHATTY_SOURCE);
    const r = await start(dir, service, { logMaxBytes: 2048, logKeep: 3 });
    await healthy(r, service);
    const base = path.join(logsDir, 'chatty.log');
    const all = async (): Promise<string> => {
      let text = '';
      for (const f of [`${base}.3`, `${base}.2`, `${base}.1`, base]) if (existsSync(f)) text += await readFile(f, 'utf8');
      return text;
    };
    const read = (f: string): string => (existsSync(f) ? readFileSync(f, 'utf8') : '');
    expect(await until(() => (read(`${base}.1`) + read(base)).includes('stderr goes to the log too'))).toBe(true);
    const files = (await readdir(logsDir)).filter((f) => f.startsWith('chatty.log')).sort();
    expect(files).toEqual(['chatty.log', 'chatty.log.1', 'chatty.log.2', 'chatty.log.3']);
    for (const f of files) expect((await stat(path.join(logsDir, f))).size).toBeLessThanOrEqual(2048);
    // The newest output is kept, in order; the oldest rotated away.
    const text = await all();
    expect(text).toContain('line 0199');
    expect(text).not.toContain('line 0000');
    const lines = text.split('\n').filter((l) => l.startsWith('line '));
    expect(lines).toEqual([...lines].sort());

    await stopService(r.pid);
    // The supervisor notes the end before it exits, and stopService waits for the tree to be gone.
    expect(readFileSync(base, 'utf8')).toMatch(/service (exited|was killed)/);
  });
});
