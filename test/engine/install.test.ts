// Install and update through the real CLI against a real hub: the pointer, the registry, the
// kept versions, the checks of SPEC §3, and the job log.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;

beforeAll(async () => {
  b = await makeBench();
  for (const version of ['1.0.0', '1.1.0', '1.2.0']) await b.publish({ version });
  // Newer, but not for this platform: "latest" here must still be 1.2.0.
  await b.publish({ version: '1.9.0', platform: 'windows-x64' });
});

describe('install --no-start', () => {
  it('installs, updates, keeps current + previous, and lists', async () => {
    const home = await b.newHome();
    const first = await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start']);
    expect(first.code).toBe(0);
    expect(first.result).toMatchObject({ ok: true, id: 'demo-echo', version: '1.0.0', current: '1.0.0', rolled_back: false });
    expect(first.lines.filter((l) => l.type === 'progress').length).toBeGreaterThan(0);
    expect(first.lines.every((l) => l.type === 'progress' || l.type === 'result')).toBe(true);
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    // The files were staged while the package downloaded, and the stage step accepted them.
    const log = (await b.cli(home, ['events', String(first.result!.job_id)])).result!.events as { type: string; payload: { output?: { prestaged?: boolean } } }[];
    expect(log.find((e) => e.type === 'xstate.done.actor.downloadArchive')?.payload.output?.prestaged).toBe(true);
    const svc = JSON.parse(await readFile(path.join(home, 'services', 'demo-echo', 'current', 'service.json'), 'utf8')) as { version: string };
    expect(svc.version).toBe('1.0.0');
    expect((await stat(path.join(home, 'services', 'demo-echo', '1.0.0', 'app', 'server.mjs'))).isFile()).toBe(true);

    const latest = await b.cli(home, ['install', 'demo-echo', '--no-start']);
    expect(latest.result).toMatchObject({ ok: true, version: '1.2.0', current: '1.2.0' });
    const back = await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start']);
    expect(back.result).toMatchObject({ ok: false, error: { code: 'DOWNGRADE_REFUSED' }, current: '1.2.0' });
    expect(back.code).toBe(1);
    const forced = await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start', '--allow-downgrade']);
    expect(forced.result).toMatchObject({ ok: true, current: '1.1.0' });
    // current + previous only
    const dirs = (await readdir(path.join(home, 'services', 'demo-echo'))).filter((n) => !n.startsWith('.')).sort();
    expect(dirs).toEqual(['1.1.0', '1.2.0', 'current']);

    const list = await b.cli(home, ['list']);
    expect(list.result).toMatchObject({ ok: true, services: [{ id: 'demo-echo', current: '1.1.0', versions: ['1.1.0', '1.2.0'], running: false }], models: [] });
    const again = await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start']);
    expect(again.result).toMatchObject({ ok: true, current: '1.1.0' });

    const jobs = await b.cli(home, ['jobs']);
    const states = (jobs.result!.jobs as { state: string; kind: string; target: string }[]).map((j) => `${j.kind} ${j.target} ${j.state}`);
    expect(states).toEqual([
      'install demo-echo@1.0.0 committed',
      'install demo-echo@1.2.0 committed',
      'install demo-echo@1.1.0 failed',
      'install demo-echo@1.1.0 committed',
      'install demo-echo@1.1.0 committed',
    ]);
    // Nothing left behind in downloads or staging.
    expect((await readdir(path.join(home, 'downloads'))).filter((n) => !n.endsWith('.part'))).toEqual([]);
  });

  it('refuses what it does not trust, and keeps the current version', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).code).toBe(0);
    const keys = await b.cli(home, ['trust', 'list']);
    const keyId = (keys.result!.keys as { key_id: string }[])[0]!.key_id;
    expect((await b.cli(home, ['trust', 'remove', keyId])).code).toBe(0);
    const r = await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'UNTRUSTED_KEY' }, current: '1.0.0', rolled_back: false });
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
  });

  it('answers unknown ids, versions and platforms with their codes', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'ghost', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect((await b.cli(home, ['install', 'demo-echo@9.9.9', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'VERSION_NOT_FOUND' } });
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--platform', 'darwin-arm64'])).result).toMatchObject({ ok: false, error: { code: 'PLATFORM_NOT_SUPPORTED' } });
    const bad = await b.cli(home, ['install', 'demo-echo@not-semver']);
    expect(bad.code).toBe(2);
    expect(await currentOf(home, 'demo-echo')).toBeNull();
  });

  it('uninstalls as a job of its own', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).code).toBe(0);
    const r = await b.cli(home, ['uninstall', 'demo-echo']);
    expect(r.result).toMatchObject({ ok: true, id: 'demo-echo', removed: ['1.0.0'], current: null });
    expect(await currentOf(home, 'demo-echo')).toBeNull();
    expect(await readdir(path.join(home, 'services')).catch(() => [])).toEqual([]);
    expect((await b.cli(home, ['list'])).result).toMatchObject({ services: [] });
    expect((await b.cli(home, ['uninstall', 'demo-echo'])).result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  });
});

describe('read-only commands', () => {
  it('change nothing, not even on a fresh home', async () => {
    const home = path.join(b.work, 'untouched-home');
    for (const args of [['list'], ['jobs'], ['events'], ['status'], ['models', 'list']]) {
      const r = await b.cli(home, args);
      expect(r.code, args.join(' ')).toBe(0);
    }
    await expect(stat(home)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
