// Health-gated commit and automatic rollback with real service processes (issue 4).
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;

async function answer(port: unknown): Promise<{ version?: string } | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${String(port)}/`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as { version?: string };
  } catch {
    return null;
  }
}

async function statusOf(home: string): Promise<{ id: string; version: string; pid: number | null; port: number | null; healthy: boolean }[]> {
  const r = await b.cli(home, ['status']);
  return r.result!.services as { id: string; version: string; pid: number | null; port: number | null; healthy: boolean }[];
}

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0' });
  await b.publish({ version: '1.1.0' });
  await b.publish({ version: '2.0.0', behavior: 'unhealthy', healthTimeoutMs: 1500 });
  await b.publish({ version: '2.1.0', behavior: 'never-binds', healthTimeoutMs: 1500 });
  await b.publish({ version: '2.2.0', behavior: 'exits', healthTimeoutMs: 5000 });
});

describe('run what is installed', () => {
  it('install → answers; update → the new version answers; a bad update rolls back by itself', async () => {
    const home = await b.newHome();
    const first = await b.cli(home, ['install', 'demo-echo@1.0.0']);
    expect(first.result).toMatchObject({ ok: true, current: '1.0.0', rolled_back: false });
    let [s] = await statusOf(home);
    expect(s).toMatchObject({ id: 'demo-echo', version: '1.0.0', healthy: true });
    expect(await answer(s!.port)).toMatchObject({ version: '1.0.0' });
    const oldPort = s!.port;

    const update = await b.cli(home, ['install', 'demo-echo@1.1.0']);
    expect(update.result).toMatchObject({ ok: true, current: '1.1.0' });
    [s] = await statusOf(home);
    expect(s).toMatchObject({ version: '1.1.0', healthy: true });
    expect(await answer(s!.port)).toMatchObject({ version: '1.1.0' });
    if (s!.port !== oldPort) expect(await answer(oldPort)).toBeNull();

    for (const [version, code] of [
      ['2.0.0', 'HEALTH_CHECK_FAILED'],
      ['2.1.0', 'HEALTH_CHECK_FAILED'],
      ['2.2.0', 'START_FAILED'],
    ] as const) {
      const t0 = Date.now();
      const bad = await b.cli(home, ['install', `demo-echo@${version}`]);
      expect(bad.code, version).toBe(1);
      expect(bad.result, version).toMatchObject({ ok: false, rolled_back: true, current: '1.1.0', error: { code } });
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(await currentOf(home, 'demo-echo')).toBe('1.1.0');
      [s] = await statusOf(home);
      expect(s, version).toMatchObject({ version: '1.1.0', healthy: true });
      expect(await answer(s!.port)).toMatchObject({ version: '1.1.0' });
      const dirs = (await readdir(path.join(home, 'services', 'demo-echo'))).filter((n) => !n.startsWith('.') && n !== 'current');
      expect(dirs).not.toContain(version);
    }

    const stop = await b.cli(home, ['stop', 'demo-echo']);
    expect(stop.result).toMatchObject({ ok: true, stopped: true });
    expect(await answer(s!.port)).toBeNull();
    expect((await statusOf(home))[0]).toMatchObject({ pid: null, healthy: false });
    const start = await b.cli(home, ['start', 'demo-echo']);
    expect(start.result).toMatchObject({ ok: true, version: '1.1.0' });
    expect(await answer(start.result!.port)).toMatchObject({ version: '1.1.0' });

    const un = await b.cli(home, ['uninstall', 'demo-echo']);
    expect(un.result).toMatchObject({ ok: true });
    expect(await answer(start.result!.port)).toBeNull();
    expect(await readdir(path.join(home, 'services'))).toEqual([]);
  });

  it('a first install that fails leaves no version and no process', async () => {
    const home = await b.newHome();
    const r = await b.cli(home, ['install', 'demo-echo@2.0.0']);
    expect(r.result).toMatchObject({ ok: false, rolled_back: true, current: null, error: { code: 'HEALTH_CHECK_FAILED' } });
    expect(await currentOf(home, 'demo-echo')).toBeNull();
    expect((await readdir(path.join(home, 'services', 'demo-echo')).catch(() => [] as string[])).filter((n) => !n.startsWith('.'))).toEqual([]);
    expect(await statusOf(home)).toEqual([]);
    expect((await b.cli(home, ['list'])).result).toMatchObject({ services: [] });
  });

  it('--no-start updates leave the running version alone, and a later install runs the current one', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.1.0'])).result).toMatchObject({ ok: true, current: '1.1.0' });
    const running = (await statusOf(home))[0]!;
    expect(running).toMatchObject({ version: '1.1.0', healthy: true });
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--allow-downgrade'])).result).toMatchObject({ ok: true, current: '1.0.0' });
    // current 1.0.0, previous 1.1.0 (running), and now a third: 1.1.0 must not be deleted.
    await b.publish({ version: '1.0.5' });
    // 1.1.0 was installed: the rollback floor makes anything below it an explicit downgrade.
    expect((await b.cli(home, ['install', 'demo-echo@1.0.5', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'DOWNGRADE_REFUSED' } });
    expect((await b.cli(home, ['install', 'demo-echo@1.0.5', '--no-start', '--allow-downgrade'])).result).toMatchObject({ ok: true, current: '1.0.5' });
    const dirs = (await readdir(path.join(home, 'services', 'demo-echo'))).filter((n) => !n.startsWith('.') && n !== 'current').sort();
    expect(dirs).toContain('1.1.0');
    expect(await answer(running.port)).toMatchObject({ version: '1.1.0' });
    // The current version is not the one running: installing it with start really starts it.
    const r = await b.cli(home, ['install', 'demo-echo@1.0.5', '--allow-downgrade']);
    expect(r.result).toMatchObject({ ok: true, current: '1.0.5' });
    const [s] = await statusOf(home);
    expect(s).toMatchObject({ version: '1.0.5', healthy: true });
    expect(await answer(s!.port)).toMatchObject({ version: '1.0.5' });
    await b.cli(home, ['uninstall', 'demo-echo']);
  });
});
