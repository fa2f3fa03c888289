// `npm start` on a fresh data directory: the first URL printed is the page, which answers 200
// and installs a demo service with a live progress stream; the hub's own GET / answers an
// index; Ctrl-C stops the page, the hub and the service the demo started.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

async function answers(url: string): Promise<boolean> {
  return fetch(url, { signal: AbortSignal.timeout(2000) }).then(
    () => true,
    () => false,
  );
}

describe('npm start', () => {
  it('serves the page first, over a demo hub whose services install from it; Ctrl-C stops everything', async () => {
    const dir = await tempDir();
    const child = spawn(process.execPath, [path.join(REPO, 'dist', 'src', 'demo', 'start.js')], {
      env: { ...process.env, PORT: '0', MODELHUB_DEMO_DIR: path.join(dir, 'demo') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URLs printed: ${out}`)), 60_000);
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (/serving at http/.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exited.then((code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      const urls = [...out.matchAll(/(http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[1]!);
      const pageUrl = urls[0]!;
      const hubUrl = /serving at (http:\/\/\S+)/.exec(out)![1]!;
      expect(pageUrl).not.toBe(hubUrl);

      // The page, carrying its token.
      const page = await fetch(`${pageUrl}/`);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('<title>modelhub');
      const token = /name="modelhub-token" content="([^"]+)"/.exec(html)![1]!;

      // The hub's own index.
      const index = await fetch(`${hubUrl}/`);
      expect(index.status).toBe(200);
      expect(await index.json()).toMatchObject({ name: 'modelhub hub', links: { openapi: '/api/openapi.json' } });

      // The page's data: the demo services of the demo hub, installable.
      const call = async (method: string, args: unknown[]): Promise<{ ok: boolean; value?: Record<string, unknown>; error?: unknown }> => {
        const r = await fetch(`${pageUrl}/api/call/${method}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-modelhub-token': token }, body: JSON.stringify({ args }) });
        return (await r.json()) as { ok: boolean; value?: Record<string, unknown> };
      };
      const state = await call('state', []);
      expect(state.ok).toBe(true);
      const services = (state.value!.services as { id: string; latest: string }[]).map((s) => [s.id, s.latest]);
      expect(services).toEqual([['demo-echo', '1.1.0']]);
      const installed = await call('install', [{ id: 'demo-echo' }]);
      expect(installed).toMatchObject({ ok: true, value: { current: '1.1.0', state: 'committed' } });
      const status = await call('status', []);
      const running = (status.value as unknown as { port: number; healthy: boolean }[])[0]!;
      expect(running.healthy).toBe(true);
      const serviceUrl = `http://127.0.0.1:${running.port}/health`;
      expect(await answers(serviceUrl)).toBe(true);

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(await answers(`${pageUrl}/`)).toBe(false);
      expect(await answers(`${hubUrl}/health`)).toBe(false);
      expect(await answers(serviceUrl)).toBe(false);
    } finally {
      child.kill('SIGKILL');
    }
  }, 120_000);
});
