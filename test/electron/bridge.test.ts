// The Electron bridge end to end, through a stand-in for Electron's IPC that follows its
// documented semantics (ipc-standin.ts): the README's main-process code (fixtures/consumer/
// main.ts) registers the bridge, the preload exposes window.modelhub, and the README's renderer
// code installs a service from a real hub with progress up to 100 %.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { registerModelhubIpc } from '../../src/electron/main.js';
import { exposeModelhub } from '../../src/electron/preload.js';
import type { JobStateEvent, ModelhubApi, ProgressEvent } from '../../src/client/types.js';
import { startModelhub } from '../fixtures/consumer/main.js';
import { installWithProgress } from '../fixtures/consumer/renderer.js';
import { makeBench, type Bench } from '../engine/fixture.js';
import { tempDir } from '../helpers/tmp.js';
import { StandInContextBridge, StandInIpcMain, type StandInWebContents } from './ipc-standin.js';

let b: Bench;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 4 * 1024 * 1024 });
});

afterAll(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A renderer: its webContents, and the window.modelhub its preload exposed. */
function openRenderer(ipcMain: StandInIpcMain, url?: string): { contents: StandInWebContents; modelhub: ModelhubApi; world: Record<string, unknown> } {
  const contents = ipcMain.createWebContents(url);
  const bridge = new StandInContextBridge();
  exposeModelhub(bridge, contents.ipcRenderer);
  return { contents, modelhub: bridge.mainWorld.modelhub as ModelhubApi, world: bridge.mainWorld };
}

const settle = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the Electron bridge', () => {
  it("installs a service from a renderer with progress up to 100 %, through the README's main and renderer code", async () => {
    const ipcMain = new StandInIpcMain();
    const home = path.join(await tempDir(), 'home');
    const stop = await startModelhub(ipcMain, { home, hub: b.proxy.url, publisherKey: await readFile(b.key.pub, 'utf8') });
    cleanups.push(stop);
    const { modelhub } = openRenderer(ipcMain);
    const seen: ProgressEvent[] = [];
    const states: JobStateEvent[] = [];
    const offStates = modelhub.onJobState((e) => states.push(e));
    b.proxy.rate = 8 * 1024 * 1024;
    let value;
    try {
      value = await installWithProgress(modelhub, 'demo-echo', (e) => seen.push(e));
    } finally {
      b.proxy.rate = 0;
    }
    await settle();
    offStates();
    expect(value).toMatchObject({ ok: true, id: 'demo-echo', version: '1.0.0', current: '1.0.0', state: 'committed', rolled_back: false });
    const downloading = seen.filter((e) => e.phase === 'downloading');
    expect(downloading.length).toBeGreaterThan(1);
    expect(downloading[downloading.length - 1]).toMatchObject({ percent: 100 });
    expect(Math.max(...seen.map((e) => e.percent))).toBe(100);
    for (const e of seen) expect(Object.keys(e).sort()).toEqual(['bytesDone', 'bytesTotal', 'etaSeconds', 'jobId', 'kind', 'percent', 'phase', 'speedBps', 'target', 'ts']);
    expect(states.map((s) => s.state)).toContain('committed');

    const status = await modelhub.status();
    expect(status).toMatchObject({ ok: true, value: [{ id: 'demo-echo', version: '1.0.0', running: true, healthy: true }] });
    const updates = await modelhub.checkForUpdates();
    expect(updates).toEqual({ ok: true, value: { services: [{ id: 'demo-echo', current: '1.0.0', latest: '1.0.0', updateAvailable: false }], models: [] } });
    const events = await modelhub.jobEvents(value.jobId);
    expect(events.ok && events.value.map((e) => e.state).pop()).toBe('committed');
    expect(await modelhub.stop('demo-echo')).toEqual({ ok: true, value: { id: 'demo-echo', stopped: true } });
    expect(await modelhub.start('demo-echo')).toMatchObject({ ok: true, value: { id: 'demo-echo', version: '1.0.0', alreadyRunning: false } });
    expect(await modelhub.stop('demo-echo')).toEqual({ ok: true, value: { id: 'demo-echo', stopped: true } });
  });

  it('answers error values: an unknown id, malformed requests, an untrusted sender', async () => {
    const ipcMain = new StandInIpcMain();
    const home = path.join(await tempDir(), 'home');
    cleanups.push(await startModelhub(ipcMain, { home, hub: b.proxy.url, publisherKey: await readFile(b.key.pub, 'utf8') }));
    const { modelhub } = openRenderer(ipcMain);

    const unknown = await modelhub.install({ id: 'no-such-service' });
    expect(unknown).toMatchObject({ ok: false, error: { code: 'NOT_FOUND', details: { state: 'failed', current: null, rolled_back: false } } });

    const malformed: unknown[] = [
      { id: '../../etc' },
      { id: 'demo-echo', version: 'latest' },
      { id: 'demo-echo', extra: true },
      { id: 42 },
      'demo-echo',
      null,
    ];
    const call = (arg: unknown): ReturnType<ModelhubApi['install']> => (modelhub.install as (a: unknown) => ReturnType<ModelhubApi['install']>)(arg);
    for (const m of malformed) expect(await call(m)).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(await modelhub.cancel('not-a-job-id')).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(await modelhub.cancel('00000000-0000-4000-8000-000000000000')).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await modelhub.start('not installed')).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(await modelhub.start('not-installed')).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    // Nothing was started for any of them.
    expect(await modelhub.status()).toEqual({ ok: true, value: [] });

    // A page loaded from the web (not the app's file:// pages) may not use the engine.
    const foreign = openRenderer(ipcMain, 'https://evil.example/');
    expect(await foreign.modelhub.install({ id: 'demo-echo' })).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
  });

  it('sends events only to subscribed renderers, and stops on unsubscribe and when the renderer is destroyed', async () => {
    const ipcMain = new StandInIpcMain();
    const home = path.join(await tempDir(), 'home');
    const engine = new Engine({ home, hub: b.proxy.url });
    await engine.trust.add(b.key.pub);
    const dispose = registerModelhubIpc(engine, ipcMain);
    try {
      const a = openRenderer(ipcMain);
      const c = openRenderer(ipcMain);
      const silent = openRenderer(ipcMain);
      const got = { a: 0, c: 0 };
      const offA = a.modelhub.onJobState(() => got.a++);
      c.modelhub.onJobState(() => got.c++);
      await settle();
      const first = await a.modelhub.install({ id: 'demo-echo', start: false });
      expect(first.ok).toBe(true);
      await settle();
      expect(got.a).toBeGreaterThan(3);
      expect(got.c).toBe(got.a);
      expect(silent.contents.sent).toBe(0);

      offA();
      c.contents.destroy();
      await settle();
      const before = { a: got.a, c: got.c, sentA: a.contents.sent };
      const again = await a.modelhub.uninstall({ id: 'demo-echo' });
      expect(again.ok).toBe(true);
      await settle();
      expect(got).toEqual({ a: before.a, c: before.c });
      expect(a.contents.sent).toBe(before.sentA);
    } finally {
      dispose();
      engine.close();
    }
    // dispose() removed every handler and listener.
    expect(ipcMain.handlerCount()).toBe(0);
    expect(ipcMain.listenerCount()).toBe(0);
  });

  it('exposes only functions and plain data: nothing of Node or Electron reaches the page', () => {
    const ipcMain = new StandInIpcMain();
    const { world, modelhub } = openRenderer(ipcMain);
    expect(Object.keys(world)).toEqual(['modelhub']);
    const api = modelhub as unknown as Record<string, unknown>;
    expect(Object.keys(api).sort()).toEqual(['cancel', 'checkForUpdates', 'install', 'jobEvents', 'onJobState', 'onProgress', 'pause', 'pullModel', 'ranking', 'repair', 'resume', 'start', 'state', 'status', 'stop', 'uninstall', 'verify']);
    for (const v of Object.values(api)) expect(typeof v).toBe('function');
    const off = modelhub.onProgress(() => undefined);
    expect(typeof off).toBe('function');
    off();
    // The stand-in refuses what Electron's contextBridge cannot copy faithfully: a class
    // instance such as ipcRenderer itself.
    const contents = ipcMain.createWebContents();
    expect(() => new StandInContextBridge().exposeInMainWorld('ipc', { ipc: contents.ipcRenderer })).toThrow(/not a plain object/);
  });

  it('the stand-in keeps Electron semantics: a throwing handler loses everything but its message', async () => {
    const ipcMain = new StandInIpcMain();
    const contents = ipcMain.createWebContents();
    ipcMain.handle('boom', () => {
      throw Object.assign(new Error('kaput'), { code: 'NOT_FOUND' });
    });
    const err = (await contents.ipcRenderer.invoke('boom').catch((e: unknown) => e)) as Error & { code?: string };
    expect(err.message).toBe("Error invoking remote method 'boom': Error: kaput");
    expect(err.code).toBeUndefined();
    await expect(contents.ipcRenderer.invoke('boom', () => 1)).rejects.toThrow(/could not be cloned/);
    expect(() => ipcMain.handle('boom', () => 1)).toThrow(/second handler/);
  });
});
