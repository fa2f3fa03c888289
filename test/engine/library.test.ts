// The engine as a library (what an Electron main process embeds): progress$ and the hooks,
// with an injected fetch.
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { ProgressEvent } from '../../src/engine/progress.js';
import type { FetchLike } from '../../src/download/fetch-like.js';
import { tempDir } from '../helpers/tmp.js';
import { makeBench, type Bench } from './fixture.js';

let b: Bench;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 24 * 1024 * 1024 });
  await b.publishModel({ id: 'lib-model', version: '1.0.0' });
});

/** Node's global fetch (undici), as an Electron app would pass net.fetch. */
const globalFetch: FetchLike = async (url, init) => {
  const res = await fetch(url, { method: init.method ?? 'GET', headers: init.headers, signal: init.signal });
  return { status: res.status, headers: res.headers, body: res.body as AsyncIterable<Uint8Array> | null };
};

describe('Engine library', () => {
  it('streams typed progress that never goes backwards, and fires the hooks', async () => {
    const home = path.join(await tempDir(), 'home');
    const engine = new Engine({ home, hub: b.proxy.url, fetch: globalFetch });
    await engine.trust.add(b.key.pub);
    const events: ProgressEvent[] = [];
    const hooks: string[] = [];
    const sub = engine.progress$.subscribe((e) => events.push(e));
    engine.hooks.on('downloadStart', () => hooks.push('downloadStart'));
    engine.hooks.on('downloadComplete', () => hooks.push('downloadComplete'));
    engine.hooks.on('downloadProgress', () => {
      if (hooks[hooks.length - 1] !== 'downloadProgress') hooks.push('downloadProgress');
    });
    engine.hooks.on('jobStateChanged', (e) => hooks.push(`state:${e.state}`));
    b.proxy.rate = 16 * 1024 * 1024;
    try {
      const r = await engine.install({ id: 'demo-echo', version: '1.0.0', start: false });
      expect(r).toMatchObject({ ok: true, current: '1.0.0', rolled_back: false, state: 'committed' });
    } finally {
      b.proxy.rate = 0;
      sub.unsubscribe();
      engine.close();
    }
    // Hooks in order.
    expect(hooks[0]).toBe('state:resolving');
    expect(hooks).toContain('downloadStart');
    expect(hooks.indexOf('downloadStart')).toBeLessThan(hooks.indexOf('downloadComplete'));
    expect(hooks).toContain('downloadProgress');
    expect(hooks[hooks.length - 1]).toBe('state:committed');
    // One event shape, never backwards within a phase, throttled.
    const downloading = events.filter((e) => e.phase === 'downloading');
    expect(downloading.length).toBeGreaterThan(3);
    for (let i = 1; i < downloading.length; i++) expect(downloading[i]!.bytesDone).toBeGreaterThanOrEqual(downloading[i - 1]!.bytesDone);
    const last = downloading[downloading.length - 1]!;
    expect(last.bytesDone).toBe(last.bytesTotal);
    expect(downloading.some((e) => e.speedBps > 0 && e.etaSeconds !== null)).toBe(true);
    for (const e of events) expect(Object.keys(e).sort()).toEqual(['bytesDone', 'bytesTotal', 'etaSeconds', 'jobId', 'kind', 'percent', 'phase', 'speedBps', 'target', 'ts']);
    expect(last.percent).toBe(100);
    for (const e of downloading) expect(e.percent).toBe(Math.floor((e.bytesDone / e.bytesTotal) * 1000) / 10);
    expect(events[events.length - 1]).toMatchObject({ phase: 'committed', percent: 100 });
    const span = last.ts - downloading[0]!.ts;
    expect(downloading.length).toBeLessThanOrEqual(Math.ceil(span / 100) + 3);
  });

  it('an attached caller takes over when the process running the job dies', async () => {
    const home = path.join(await tempDir(), 'home');
    const setup = new Engine({ home, hub: b.proxy.url });
    await setup.trust.add(b.key.pub);
    setup.close();
    const { spawnCli } = await import('../helpers/cli.js');
    b.proxy.rate = 2 * 1024 * 1024;
    try {
      const holder = spawnCli(['install', 'demo-echo@1.0.0', '--no-start', '--home', home, '--hub', b.proxy.url, '--json']);
      // Wait until the holder's job is downloading, then attach from this process.
      const watcher = new Engine({ home, hub: b.proxy.url, leaseTtlMs: 3000 });
      const deadline = Date.now() + 20_000;
      while (!watcher.jobs.allJobs().some((j) => j.state === 'downloading')) {
        if (Date.now() > deadline) throw new Error('holder never started downloading');
        await new Promise((r) => setTimeout(r, 50));
      }
      const attached = watcher.install({ id: 'demo-echo', version: '1.0.0', start: false });
      await new Promise((r) => setTimeout(r, 300));
      holder.kill('SIGKILL');
      const r = await attached;
      expect(r).toMatchObject({ ok: true, current: '1.0.0', attached: true });
      expect(watcher.jobs.allJobs()).toHaveLength(1);
      expect(watcher.jobs.allJobs()[0]!.restores).toBe(1);
      watcher.close();
    } finally {
      b.proxy.rate = 0;
    }
  });

  it('cancels through an AbortSignal and through cancel(jobId): nothing installed, partials removed', async () => {
    const home = path.join(await tempDir(), 'home');
    const engine = new Engine({ home, hub: b.proxy.url });
    await engine.trust.add(b.key.pub);
    b.proxy.rate = 2 * 1024 * 1024;
    const waitDownloading = async (): Promise<string> => {
      for (;;) {
        const job = engine.jobs.allJobs().find((j) => j.active === 1 && j.state === 'downloading');
        if (job !== undefined) return job.id;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      const abort = new AbortController();
      const first = engine.install({ id: 'demo-echo', version: '1.0.0', start: false, signal: abort.signal });
      await waitDownloading();
      abort.abort();
      expect(await first).toMatchObject({ ok: false, state: 'cancelled', current: null });

      const second = engine.install({ id: 'demo-echo', version: '1.0.0', start: false });
      const jobId = await waitDownloading();
      expect(await engine.cancel(jobId)).toEqual({ jobId, state: 'cancelled' });
      expect(await second).toMatchObject({ ok: false, state: 'cancelled' });
      await expect(engine.cancel(jobId)).resolves.toEqual({ jobId, state: 'cancelled' });
      await expect(engine.cancel('00000000-0000-4000-8000-000000000000')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      b.proxy.rate = 0;
    }
    expect(engine.list().services).toEqual([]);
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(path.join(home, 'downloads'))).toEqual([]);
    expect((await readdir(path.join(home, 'services', 'demo-echo'))).filter((n) => n.startsWith('.staging'))).toEqual([]);

    // After the switch, cancel is too late.
    const done = await engine.install({ id: 'demo-echo', version: '1.0.0', start: false });
    expect(done.ok).toBe(true);
    await expect(engine.cancel(done.jobId)).rejects.toMatchObject({ code: 'CANCEL_TOO_LATE' });
    engine.close();
  });

  it('trusts a key given as text, refuses text that is not a key, and checks for updates', async () => {
    const home = path.join(await tempDir(), 'home');
    const engine = new Engine({ home, hub: b.proxy.url });
    const { readFile } = await import('node:fs/promises');
    const added = await engine.trust.addKey(await readFile(b.key.pub, 'utf8'));
    expect(added.key_id).toBe(b.key.keyId);
    expect((await engine.trust.list()).map((k) => k.key_id)).toEqual([added.key_id]);
    await expect(engine.trust.addKey('not a key')).rejects.toMatchObject({ code: 'INVALID_REQUEST' });

    expect(await engine.checkForUpdates()).toEqual({ services: [], models: [] });
    expect((await engine.install({ id: 'demo-echo', version: '1.0.0', start: false })).ok).toBe(true);
    await b.publishModel({ id: 'upd-model', version: '1.0.0' });
    expect((await engine.pullModel({ id: 'upd-model' })).ok).toBe(true);
    await b.publishModel({ id: 'upd-model', version: '1.1.0' });
    expect(await engine.checkForUpdates()).toEqual({
      services: [{ id: 'demo-echo', current: '1.0.0', latest: '1.0.0', updateAvailable: false }],
      models: [{ id: 'upd-model', installed: ['1.0.0'], latest: '1.1.0', updateAvailable: true }],
    });
    engine.close();
  });

  it('one engine runs an install and a model pull side by side without recovering its own job', async () => {
    const home = path.join(await tempDir(), 'home');
    const engine = new Engine({ home, hub: b.proxy.url });
    await engine.trust.add(b.key.pub);
    b.proxy.rate = 8 * 1024 * 1024;
    try {
      const install = engine.install({ id: 'demo-echo', version: '1.0.0', start: false });
      while (!engine.jobs.allJobs().some((j) => j.state === 'downloading')) await new Promise((r) => setTimeout(r, 20));
      const pull = await engine.pullModel({ id: 'lib-model' });
      expect(pull).toMatchObject({ ok: true, version: '1.0.0' });
      expect(await install).toMatchObject({ ok: true, current: '1.0.0' });
      const jobs = engine.jobs.allJobs();
      expect(jobs.map((j) => `${j.kind}:${j.state}:${j.restores}`).sort()).toEqual(['install:committed:0', 'model_pull:committed:0']);
    } finally {
      b.proxy.rate = 0;
      engine.close();
    }
  });
});
