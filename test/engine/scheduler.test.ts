// The scheduler is told at once (SPEC §10, seed 002 §7.6): a MODEL_NOT_AVAILABLE answer of
// `models path` and engine.getModelPath() is POSTed to the scheduler as
// { type: "model_unavailable", node_id, model_id, version, reason, ts }, received here by a real
// local HTTP server. A scheduler that is down or never answers changes neither the answer nor
// (beyond the CLI's 200 ms budget) its speed; the node's id is stable and shown by `status`.
import { once } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ModelNotAvailableError } from '../../src/engine/model-path.js';
import { NODE_ID_FILE } from '../../src/engine/node-id.js';
import { ModelhubError } from '../../src/errors.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { makeBench, type Bench } from './fixture.js';

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface Scheduler {
  url: string;
  received: Received[];
  /** Requests whose headers arrived (a hanging scheduler never reads or answers them). */
  seen: number;
  close(): Promise<void>;
}

/** A real scheduler on 127.0.0.1: answers 202 after reading the body, or never answers at all. */
async function startScheduler(mode: 'answer' | 'hang' = 'answer'): Promise<Scheduler> {
  const received: Received[] = [];
  const s: Scheduler = { url: '', received, seen: 0, close: async () => undefined };
  const server = http.createServer((req, res) => {
    s.seen++;
    if (mode === 'hang') return;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(202, { 'content-type': 'application/json' }).end('{"success":true}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/reports/unavailable`;
  s.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return s;
}

/** A port nobody listens on: bound, then closed. */
async function deadUrl(): Promise<string> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return `http://127.0.0.1:${port}/dead`;
}

const schedulers: Scheduler[] = [];
async function scheduler(mode: 'answer' | 'hang' = 'answer'): Promise<Scheduler> {
  const s = await startScheduler(mode);
  schedulers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(schedulers.map((s) => s.close()));
});

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function reportOf(r: Received): Record<string, unknown> {
  return JSON.parse(r.body) as Record<string, unknown>;
}

function cli(home: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  // No scheduler or token from the environment of whoever runs the tests, unless a test sets one.
  return runCli([...args, '--home', home, '--json'], { MODELHUB_SCHEDULER: '', MODELHUB_NODE_TOKEN: '', MODELHUB_HUB: '', ...env });
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await f();
  return { value, ms: performance.now() - t0 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

let b: Bench;

beforeAll(async () => {
  b = await makeBench();
  await b.publishModel({ id: 'sched-model', version: '1.0.0' });
});

describe('models path tells the scheduler', () => {
  it('POSTs the exact report, with the node id status shows', async () => {
    const s = await scheduler();
    const home = await b.newHome();
    const status = await cli(home, ['status']);
    expect(status.result).toMatchObject({ ok: true, services: [] });
    const nodeId = status.result!.node_id as string;
    expect(nodeId).toMatch(UUID);

    const r = await cli(home, ['models', 'path', 'ghost-model', '--scheduler', s.url]);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' } });
    expect(r.lines).toHaveLength(1);
    expect(s.received).toHaveLength(1);
    const got = s.received[0]!;
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/reports/unavailable');
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers.authorization).toBeUndefined();
    const body = reportOf(got);
    const { ts, ...rest } = body;
    expect(rest).toEqual({ type: 'model_unavailable', node_id: nodeId, model_id: 'ghost-model', version: null, reason: 'not_installed' });
    expect(Object.keys(body)).toEqual(['type', 'node_id', 'model_id', 'version', 'reason', 'ts']);
    expect(ts).toMatch(ISO);
    expect(Number.isNaN(Date.parse(ts as string))).toBe(false);

    // The requested version, and $MODELHUB_SCHEDULER / $MODELHUB_NODE_TOKEN from the environment.
    const v = await cli(home, ['models', 'path', 'ghost-model@2.1.0'], { MODELHUB_SCHEDULER: s.url, MODELHUB_NODE_TOKEN: 'node-secret' });
    expect(v.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' } });
    expect(s.received).toHaveLength(2);
    expect(reportOf(s.received[1]!)).toMatchObject({ node_id: nodeId, model_id: 'ghost-model', version: '2.1.0', reason: 'not_installed' });
    expect(s.received[1]!.headers.authorization).toBe('Bearer node-secret');

    // --node-token beats the environment.
    await cli(home, ['models', 'path', 'ghost-model', '--scheduler', s.url, '--node-token', 'flag-secret'], { MODELHUB_NODE_TOKEN: 'env-secret' });
    expect(s.received[2]!.headers.authorization).toBe('Bearer flag-secret');
  });

  it('reports the reason: a failed pull is "error"; an installed model is answered and not reported', async () => {
    const s = await scheduler();
    const home = await b.newHome();
    const pulled = await b.cli(home, ['models', 'pull', 'sched-model@1.0.0']);
    expect(pulled.result).toMatchObject({ ok: true });
    const ok = await cli(home, ['models', 'path', 'sched-model', '--scheduler', s.url]);
    expect(ok.result).toMatchObject({ ok: true, path: path.join(home, 'models', 'sched-model', '1.0.0') });

    // A pull that fails (no trusted key): models path says "error", and so does the report.
    const other = await b.newHome();
    const keyId = ((await b.cli(other, ['trust', 'list'])).result!.keys as { key_id: string }[])[0]!.key_id;
    await b.cli(other, ['trust', 'remove', keyId]);
    expect((await b.cli(other, ['models', 'pull', 'sched-model@1.0.0'])).result).toMatchObject({ ok: false });
    const failed = await cli(other, ['models', 'path', 'sched-model@1.0.0', '--scheduler', s.url]);
    expect(failed.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'error' } });
    // Only the failing answer was reported (the installed one, asked first, sent nothing).
    expect(s.received.map((r) => reportOf(r))).toEqual([expect.objectContaining({ model_id: 'sched-model', version: '1.0.0', reason: 'error' })]);
  });

  it('a dead or silent scheduler changes neither the answer nor, beyond 200 ms, its time', async () => {
    const home = await b.newHome();
    const silent = await scheduler('hang');
    const dead = await deadUrl();
    const answerOf = (r: CliResult): unknown => ({ code: r.code, result: r.result });

    const base: number[] = [];
    const withDead: number[] = [];
    const withSilent: number[] = [];
    let baseline: CliResult | undefined;
    // Alternating runs, compared by their medians: a busy machine slows all three alike.
    for (let i = 0; i < 3; i++) {
      const a = await timed(() => cli(home, ['models', 'path', 'ghost-model@1.0.0']));
      const d = await timed(() => cli(home, ['models', 'path', 'ghost-model@1.0.0', '--scheduler', dead]));
      const h = await timed(() => cli(home, ['models', 'path', 'ghost-model@1.0.0', '--scheduler', silent.url]));
      baseline ??= a.value;
      expect(answerOf(d.value)).toEqual(answerOf(a.value));
      expect(answerOf(h.value)).toEqual(answerOf(a.value));
      expect(d.value.stderr).toContain('the scheduler was not told');
      expect(h.value.stderr).toContain('the scheduler was not told (no answer within 200 ms)');
      base.push(a.ms);
      withDead.push(d.ms);
      withSilent.push(h.ms);
    }
    expect(baseline!.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' } });
    // The silent scheduler did get every request: the CLI gave up on it, it did not skip it.
    await expect.poll(() => silent.seen).toBe(3);
    expect(median(withDead) - median(base)).toBeLessThan(1000);
    expect(median(withSilent) - median(base)).toBeLessThan(1000);
  });

  it('a bad scheduler URL is bad usage', async () => {
    const home = await b.newHome();
    for (const url of ['not a url', 'ftp://127.0.0.1/x', 'http://user:pw@127.0.0.1/x']) {
      const r = await cli(home, ['models', 'path', 'ghost-model', '--scheduler', url]);
      expect(r.code, url).toBe(2);
      expect(r.result).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    }
  });
});

describe('node_id', () => {
  it('is created once, stable across runs, and the same for the CLI and the library', async () => {
    const home = await b.newHome();
    const ids = await Promise.all([1, 2, 3, 4].map(() => cli(home, ['status']).then((r) => r.result!.node_id)));
    expect(new Set(ids).size).toBe(1);
    const id = ids[0] as string;
    expect(id).toMatch(UUID);
    expect((await readFile(path.join(home, NODE_ID_FILE), 'utf8')).trim()).toBe(id);
    expect((await cli(home, ['status'])).result!.node_id).toBe(id);
    const engine = new Engine({ home });
    try {
      expect(engine.nodeId).toBe(id);
    } finally {
      engine.close();
    }
    const again = new Engine({ home });
    try {
      expect(again.nodeId).toBe(id);
    } finally {
      again.close();
    }
  });

  it('a home that does not exist stays untouched: status says null, the report carries null', async () => {
    const s = await scheduler();
    const home = path.join(await tempDir(), 'never-made');
    const status = await cli(home, ['status']);
    expect(status.result).toMatchObject({ ok: true, node_id: null, services: [] });
    const r = await cli(home, ['models', 'path', 'ghost-model', '--scheduler', s.url]);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' } });
    expect(reportOf(s.received[0]!)).toMatchObject({ node_id: null, model_id: 'ghost-model' });
    expect(await exists(home)).toBe(false);
  });

  it('an engine gives a new home its id', async () => {
    const home = path.join(await tempDir(), 'home');
    const engine = new Engine({ home });
    try {
      expect(engine.nodeId).toMatch(UUID);
      expect((await cli(home, ['status'])).result!.node_id).toBe(engine.nodeId);
    } finally {
      engine.close();
    }
  });
});

describe('engine.getModelPath', () => {
  it('throws MODEL_NOT_AVAILABLE synchronously and reports it in the background', async () => {
    const s = await scheduler();
    const home = await b.newHome();
    const engine = new Engine({ home, scheduler: s.url, schedulerToken: 'lib-secret', warn: () => undefined });
    try {
      let thrown: unknown;
      try {
        engine.getModelPath('ghost-model', '3.0.0');
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ModelNotAvailableError);
      expect(thrown).toMatchObject({ code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' });
      await expect.poll(() => s.received.length).toBe(1);
      const { ts, ...rest } = reportOf(s.received[0]!);
      expect(rest).toEqual({ type: 'model_unavailable', node_id: engine.nodeId, model_id: 'ghost-model', version: '3.0.0', reason: 'not_installed' });
      expect(ts).toMatch(ISO);
      expect(s.received[0]!.headers.authorization).toBe('Bearer lib-secret');

      // A malformed request is INVALID_REQUEST, and not a scheduler's business.
      expect(() => engine.getModelPath('../etc')).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }) as Error);
      expect(() => engine.getModelPath('ghost-model', 'latest')).toThrow(ModelhubError);
      expect(() => engine.getModelPath('ghost-model')).toThrow(ModelNotAvailableError);
      await engine.schedulerReportsSettled();
      expect(s.received.map((r) => reportOf(r).version)).toEqual(['3.0.0', null]);
    } finally {
      engine.close();
    }
  });

  it('answers an installed model with its path and reports nothing', async () => {
    const s = await scheduler();
    const home = await b.newHome();
    expect((await b.cli(home, ['models', 'pull', 'sched-model@1.0.0'])).result).toMatchObject({ ok: true });
    const engine = new Engine({ home, scheduler: s.url });
    try {
      expect(engine.getModelPath('sched-model')).toBe(path.join(home, 'models', 'sched-model', '1.0.0'));
      expect(engine.getModelPath('sched-model', '1.0.0')).toBe(path.join(home, 'models', 'sched-model', '1.0.0'));
      expect(() => engine.getModelPath('sched-model', '2.0.0')).toThrow(ModelNotAvailableError);
      await engine.schedulerReportsSettled();
      expect(s.received.map((r) => reportOf(r).version)).toEqual(['2.0.0']);
    } finally {
      engine.close();
    }
  });

  it('with a dead or silent scheduler: the same answer, one warning per failing streak', async () => {
    const home = await b.newHome();
    const silent = await scheduler('hang');
    for (const url of [await deadUrl(), silent.url]) {
      const warnings: string[] = [];
      const engine = new Engine({ home, scheduler: url, warn: (m) => warnings.push(m) });
      try {
        for (let i = 0; i < 3; i++) {
          expect(() => engine.getModelPath('ghost-model')).toThrow(expect.objectContaining({ code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' }) as Error);
        }
        if (url === silent.url) {
          await expect.poll(() => silent.seen).toBe(3);
          // A scheduler that never answers is given up on at the deadline; cutting it short here.
          silent.close().catch(() => undefined);
        }
        await engine.schedulerReportsSettled();
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain('model_unavailable report not delivered');
      } finally {
        engine.close();
      }
    }
  });

  it('a bad scheduler URL is warned about once and changes no answer', async () => {
    const home = await b.newHome();
    const warnings: string[] = [];
    const engine = new Engine({ home, scheduler: 'ftp://nowhere', warn: (m) => warnings.push(m) });
    try {
      expect(() => engine.getModelPath('ghost-model')).toThrow(ModelNotAvailableError);
      expect(() => engine.getModelPath('ghost-model')).toThrow(ModelNotAvailableError);
      expect(warnings).toEqual([expect.stringContaining('only http:// and https:// schedulers are supported')]);
    } finally {
      engine.close();
    }
  });
});
