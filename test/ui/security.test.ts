// The local page server is reachable from every website the user opens. Each refusal below is
// a request a hostile page (or DNS rebinding, or curl) can make; none of them may start a job.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { startUiServer, type UiServer } from '../../src/ui/server.js';
import { makeBench, type Bench } from '../engine/fixture.js';
import { rawRequest, type RawResponse } from '../helpers/raw-http.js';
import { tempDir } from '../helpers/tmp.js';

let b: Bench;
let engine: Engine;
let ui: UiServer;
let port: number;
let own: string;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0' });
  engine = new Engine({ home: path.join(await tempDir(), 'home'), hub: b.proxy.url });
  await engine.trust.add(b.key.pub);
  ui = await startUiServer({ engine });
  port = Number(new URL(ui.url).port);
  own = `127.0.0.1:${port}`;
});

afterAll(async () => {
  await ui?.close();
  engine?.close();
});

function request(target: string, o: { method?: string; host?: string; origin?: string; token?: string | null; body?: string } = {}): Promise<RawResponse> {
  const headers: Record<string, string> = { host: o.host ?? own };
  if (o.origin !== undefined) headers.origin = o.origin;
  const token = o.token === undefined ? ui.token : o.token;
  if (token !== null) headers['x-modelhub-token'] = token;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  return rawRequest(ui.url, target, { method: o.method ?? 'GET', headers, ...(o.body !== undefined ? { body: o.body } : {}) });
}

const install = (o: Parameters<typeof request>[1] = {}) => request('/api/call/install', { method: 'POST', body: JSON.stringify({ args: [{ id: 'demo-echo', start: false }] }), ...o });
const legacyInstall = (o: Parameters<typeof request>[1] = {}) => request('/api/services/demo-echo/install', { method: 'POST', body: '{}', ...o });

function envelope(r: RawResponse): { success: boolean; error: string; message: string } {
  return JSON.parse(r.body.toString('utf8')) as { success: boolean; error: string; message: string };
}

function expectNoJob(): void {
  expect(engine.jobs.allJobs()).toEqual([]);
}

describe('the page server refuses other websites', () => {
  it('listens on loopback only', () => {
    const address = ui.app.server.address();
    expect(typeof address === 'object' && address?.address).toBe('127.0.0.1');
  });

  it('refuses a foreign Host (DNS rebinding) on every route, the page and the event stream included', async () => {
    for (const host of [`evil.example:${port}`, `127.0.0.1.evil.example:${port}`, `127.0.0.1:${port + 1}`, '127.0.0.1', `localhost:${port}.evil`]) {
      for (const target of ['/', '/api/state', '/api/events', '/assets/page.js']) {
        const r = await request(target, { host });
        expect(r.status, `${host} ${target}`).toBe(403);
        expect(envelope(r)).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
        expect(r.body.toString('utf8')).not.toContain(ui.token);
      }
      expect((await install({ host })).status).toBe(403);
      expect((await legacyInstall({ host })).status).toBe(403);
    }
    expectNoJob();
  });

  it('refuses a foreign Origin and Origin: null before anything runs', async () => {
    for (const origin of ['https://evil.example', `http://evil.example:${port}`, 'null', `http://localhost:${port}`, `https://127.0.0.1:${port}`]) {
      const r = await install({ origin });
      expect(r.status, origin).toBe(403);
      expect(envelope(r).error).toBe('UNAUTHORIZED');
      expect((await legacyInstall({ origin })).status).toBe(403);
      expect((await request('/api/state', { origin })).status).toBe(403);
    }
    expectNoJob();
  });

  it('refuses /api/* without the token or with a wrong one (curl, a foreign page)', async () => {
    for (const token of [null, '', 'wrong', ui.token.slice(1), `${ui.token}x`]) {
      const r = await install({ token });
      expect(r.status, String(token)).toBe(401);
      expect(envelope(r).error).toBe('UNAUTHORIZED');
      expect((await legacyInstall({ token })).status).toBe(401);
      expect((await request('/api/state', { token })).status).toBe(401);
      expect((await request('/api/events', { token })).status).toBe(401);
    }
    expectNoJob();
  });

  it('serves the page with the token inside, unframable, with a strict script policy', async () => {
    const r = await request('/', { token: null });
    expect(r.status).toBe(200);
    expect(r.body.toString('utf8')).toContain(`<meta name="modelhub-token" content="${ui.token}">`);
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
    expect(r.headers['x-frame-options']).toBe('DENY');
    // The page and the shared client it imports.
    for (const asset of ['/assets/page.js', '/assets/page.css', '/assets/client/http.js', '/assets/client/types.js']) expect((await request(asset, { token: null })).status, asset).toBe(200);
    expect((await request('/assets/client/../../engine/engine.js', { token: null })).status).toBe(404);
  });

  it('answers 400 and 404 in the one envelope', async () => {
    for (const [target, body, status] of [
      ['/api/call/install', '{"args":[{"id":"../x"}]}', 200],
      ['/api/call/install', '{"nope":1}', 400],
      ['/api/call/install', 'not json', 400],
      ['/api/services/..%2Fx/install', '{}', 400],
      ['/api/no-such-route', '{}', 404],
    ] as const) {
      const r = await request(target, { method: 'POST', body });
      expect(r.status, `${target} ${body}`).toBe(status);
      const answer = JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
      if (status === 200) expect(answer).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
      else expect(answer).toMatchObject({ success: false, error: status === 404 ? 'NOT_FOUND' : 'INVALID_REQUEST' });
    }
    expect((await request('/api/jobs/00000000-0000-4000-8000-000000000000/events')).status).toBe(404);
    expectNoJob();
  });

  it('accepts its own names with the token, from its own origin', async () => {
    for (const host of [own, `localhost:${port}`, `[::1]:${port}`]) {
      const r = await request('/api/state', { host, origin: `http://${host}` });
      expect(r.status, host).toBe(200);
    }
    const r = await install({ origin: `http://${own}` });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ ok: true, value: { id: 'demo-echo', current: '1.0.0', state: 'committed' } });
    expect(engine.jobs.allJobs()).toHaveLength(1);
  });
});
