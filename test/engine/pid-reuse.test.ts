// A recorded pid that now names another process (issue 9): the runtime row's start time differs
// from the live process's, so that process is not the service. Through the real CLI, `status`,
// `list`, `stop`, `start`, `uninstall` and a rollback (recover after a kill during the health
// check) never signal it — it is still alive and answering afterwards — and report the service
// as not running.
//
// The "other process" is a real modelhub supervisor with its service (the one the row was
// written for), so the supervisor command-line check alone cannot tell it apart: only the start
// time can. Rewriting the row's start time is what a reboot or a wrapped pid counter does to a
// recorded pid: the same number, a process that started at another time.
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDbReadOnly } from '../../src/engine/db.js';
import { platformAdapter } from '../../src/platform/adapter.js';
import { spawnCli } from '../helpers/cli.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;
/** Process groups the tests left running on purpose (the "other" processes); killed at the end. */
const leftRunning = new Set<number>();

const SLOW_GRACE_MS = 60_000;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0' });
  await b.publish({ version: '1.1.0' });
  // Waits a minute before its first health check: its job stays in health_checking until killed.
  await b.publish({ version: '1.2.0', extra: { health_check: { type: 'http', endpoint: '/health', startup_grace_ms: SLOW_GRACE_MS, interval_ms: 100, timeout_ms: 10_000 } } });
}, 120_000);

afterAll(() => {
  for (const pid of leftRunning) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

interface RuntimeRow {
  id: string;
  version: string;
  pid: number;
  port: number;
  start_time: string | null;
}

function runtimeRow(home: string, id = 'demo-echo'): RuntimeRow | undefined {
  const db = openDbReadOnly(path.join(home, 'engine.db'));
  if (db === null) return undefined;
  try {
    return db.prepare('SELECT * FROM runtime WHERE id = ?').get(id) as RuntimeRow | undefined;
  } finally {
    db.close();
  }
}

/** Another start time than `real`: the recorded process started one clock tick earlier. */
function otherStartTime(real: string): string {
  const m = /^(.*:)(\d+)$/.exec(real);
  return m === null ? `${real}-earlier` : `${m[1]}${Number(m[2]) - 1}`;
}

/**
 * Makes the service's recorded pid name "another process": the row keeps the pid of the live
 * supervisor but records another start time. Returns that process's pid and port.
 */
function rewriteStartTime(home: string): { pid: number; port: number } {
  const row = runtimeRow(home);
  if (row === undefined) throw new Error('no runtime row');
  expect(row.start_time).toBe(platformAdapter.processStartTime(row.pid));
  const db = new Database(path.join(home, 'engine.db'));
  try {
    db.pragma('busy_timeout = 10000');
    db.prepare('UPDATE runtime SET start_time = ? WHERE id = ?').run(otherStartTime(row.start_time!), row.id);
  } finally {
    db.close();
  }
  leftRunning.add(row.pid);
  return { pid: row.pid, port: row.port };
}

async function answer(port: number): Promise<{ version?: string } | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
    return (await res.json()) as { version?: string };
  } catch {
    return null;
  }
}

async function statusOf(home: string): Promise<{ id: string; version: string; pid: number | null; running: boolean; healthy: boolean }[]> {
  const r = await b.cli(home, ['status']);
  expect(r.code, r.stderr).toBe(0);
  return r.result!.services as { id: string; version: string; pid: number | null; running: boolean; healthy: boolean }[];
}

async function installed(home: string, version: string): Promise<void> {
  const r = await b.cli(home, ['install', `demo-echo@${version}`]);
  expect(r.result, r.stdout + r.stderr).toMatchObject({ ok: true, current: version });
}

describe('a recorded pid reused by another process (another start time)', () => {
  it('records the supervisor start time; status, list and stop leave the other process alone', async () => {
    const home = await b.newHome();
    await installed(home, '1.0.0');
    const before = runtimeRow(home)!;
    expect(before.start_time).toMatch(/^linux:[0-9a-f-]+:\d+$/);
    expect((await statusOf(home))[0]).toMatchObject({ running: true, pid: before.pid });

    const other = rewriteStartTime(home);
    expect(platformAdapter.isAlive(other.pid)).toBe(true);

    // status (a read-only view) and list: not running; the row is left to a writer.
    expect((await statusOf(home))[0]).toMatchObject({ id: 'demo-echo', running: false, pid: null, healthy: false });
    const list = await b.cli(home, ['list']);
    expect(list.result).toMatchObject({ services: [{ id: 'demo-echo', running: false }] });
    expect(runtimeRow(home)).toBeDefined();

    // stop: nothing of ours runs, so nothing is stopped, and the other process is never signalled.
    const stop = await b.cli(home, ['stop', 'demo-echo']);
    expect(stop.result, stop.stdout + stop.stderr).toMatchObject({ ok: true, stopped: false });
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
    expect(platformAdapter.isTreeAlive(other.pid)).toBe(true);
    expect(await answer(other.port)).toMatchObject({ version: '1.0.0' });
    expect(runtimeRow(home)).toBeUndefined(); // the stale row is gone

    // start: the service is not running, so it is started (as a new process), not "already running".
    const start = await b.cli(home, ['start', 'demo-echo']);
    expect(start.result, start.stdout + start.stderr).toMatchObject({ ok: true, already_running: false });
    expect(start.result!.pid).not.toBe(other.pid);
    expect((await statusOf(home))[0]).toMatchObject({ running: true, pid: start.result!.pid, healthy: true });
    expect((await b.cli(home, ['stop', 'demo-echo'])).result).toMatchObject({ ok: true, stopped: true });
    expect(platformAdapter.isAlive(start.result!.pid as number)).toBe(false);
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
  });

  it('a stale row found by a writer (start) is deleted, and the other process is left alone', async () => {
    const home = await b.newHome();
    await installed(home, '1.0.0');
    const other = rewriteStartTime(home);
    const start = await b.cli(home, ['start', 'demo-echo']);
    expect(start.result, start.stdout + start.stderr).toMatchObject({ ok: true, already_running: false });
    const row = runtimeRow(home)!;
    expect(row.pid).toBe(start.result!.pid);
    expect(row.start_time).toBe(platformAdapter.processStartTime(row.pid));
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
    await b.cli(home, ['uninstall', 'demo-echo']);
    expect(platformAdapter.isAlive(row.pid)).toBe(false);
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
  });

  it('uninstall leaves the other process alone', async () => {
    const home = await b.newHome();
    await installed(home, '1.0.0');
    const other = rewriteStartTime(home);
    const un = await b.cli(home, ['uninstall', 'demo-echo']);
    expect(un.result, un.stdout + un.stderr).toMatchObject({ ok: true });
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
    expect(await answer(other.port)).toMatchObject({ version: '1.0.0' });
    expect(runtimeRow(home)).toBeUndefined();
    expect(await statusOf(home)).toEqual([]);
  });

  it("an update's stop of the old version leaves the other process alone", async () => {
    const home = await b.newHome();
    await installed(home, '1.0.0');
    const other = rewriteStartTime(home);
    // The update stops the recorded (old) version before it starts the new one.
    await installed(home, '1.1.0');
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
    expect(await answer(other.port)).toMatchObject({ version: '1.0.0' });
    const [s] = await statusOf(home);
    expect(s).toMatchObject({ version: '1.1.0', running: true, healthy: true });
    expect(s!.pid).not.toBe(other.pid);
    await b.cli(home, ['uninstall', 'demo-echo']);
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
  });

  it("a rollback's stop (recover after a kill during the health check) leaves the other process alone", async () => {
    const home = await b.newHome();
    await installed(home, '1.0.0');
    // The update to 1.2.0 starts 1.2.0 (recording its supervisor) and waits a minute before its
    // first health check; it is killed there.
    const child = spawnCli(['install', 'demo-echo@1.2.0', '--home', home, '--hub', b.proxy.url, '--json']);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const db = openDbReadOnly(path.join(home, 'engine.db'))!;
    let reached = false;
    try {
      const job = db.prepare("SELECT state FROM jobs WHERE target = 'demo-echo@1.2.0' AND active = 1");
      const rt = db.prepare("SELECT version FROM runtime WHERE id = 'demo-echo'");
      const giveUp = Date.now() + 120_000;
      while (Date.now() < giveUp && child.exitCode === null) {
        const state = (job.get() as { state: string } | undefined)?.state;
        const version = (rt.get() as { version: string } | undefined)?.version;
        if (state === 'health_checking' && version === '1.2.0') {
          reached = true;
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      child.kill('SIGKILL');
      await exited;
      db.close();
    }
    expect(reached).toBe(true);
    expect(runtimeRow(home)).toMatchObject({ version: '1.2.0' });

    const other = rewriteStartTime(home);
    const rec = await b.cli(home, ['recover']);
    expect(rec.code, rec.stdout + rec.stderr).toBe(0);
    expect(rec.result).toMatchObject({ recovered: [{ target: 'demo-echo@1.2.0' }] });
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    // The rollback stopped "1.2.0" — which the row says is another process now — without a signal.
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
    expect(platformAdapter.isTreeAlive(other.pid)).toBe(true);
    const [s] = await statusOf(home);
    expect(s).toMatchObject({ version: '1.0.0', running: true, healthy: true });
    expect(s!.pid).not.toBe(other.pid);
    await b.cli(home, ['uninstall', 'demo-echo']);
    expect(platformAdapter.isAlive(other.pid)).toBe(true);
  });
});
