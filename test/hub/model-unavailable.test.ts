// POST /api/model-unavailable: nodes' MODEL_NOT_AVAILABLE answers as unmet demand (SPEC §10).
// The node token (constant-time, checked before the body is read), the body's shape, the
// per-client rate limit, the ranking by requests plus unmet demand, the catalog migration on an
// existing hub.db, `hub serve --node-token`, and a node that uses the hub as its scheduler.
import Database from 'better-sqlite3';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SqliteCatalogStore } from '../../hub/catalog/sqlite-store.js';
import type { Hub } from '../../hub/server.js';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { tempDir } from '../helpers/tmp.js';

const NODE_TOKEN = 'node-token-for-tests-0123456789';

let hub: Hub;

beforeAll(async () => {
  hub = await startHub(await tempDir(), [], { nodeToken: NODE_TOKEN });
});

function report(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'model_unavailable', node_id: '6f1c2d9e-8a7b-4c3d-9e8f-0a1b2c3d4e5f', model_id: 'marian-en-zh', version: null, reason: 'not_installed', ts: new Date().toISOString(), ...over };
}

async function post(body: unknown, o: { token?: string | null; base?: string; raw?: boolean; type?: string } = {}): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = { 'content-type': o.type ?? 'application/json' };
  const token = o.token === undefined ? NODE_TOKEN : o.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${o.base ?? hub.url}/api/model-unavailable`, { method: 'POST', headers, body: o.raw === true ? (body as string) : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

async function ranking(base = hub.url): Promise<unknown> {
  return (await fetch(`${base}/api/model-usage/ranking`)).json();
}

describe('POST /api/model-unavailable', () => {
  it('401 without the node token, with a wrong one, with the admin token, and on a hub without one', async () => {
    for (const token of [null, 'wrong', TEST_TOKEN, '']) {
      const r = await post(report(), { token });
      expect(r.status, String(token)).toBe(401);
      expect(r.body).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
    }
    // The token is checked before the body is read: a malformed body without it is still 401.
    expect((await post('{not json', { token: null, raw: true })).status).toBe(401);
    const closed = await startHub(await tempDir(), []);
    const r = await post(report(), { base: closed.url });
    expect(r.status).toBe(401);
    expect(r.body.message).toContain('MODELHUB_NODE_TOKEN');
    expect(await ranking()).toEqual([]);
  });

  it('400 for a malformed body', async () => {
    const bad: [string, unknown][] = [
      ['not JSON', '{"type":'],
      ['an array', '[]'],
      ['wrong type', JSON.stringify(report({ type: 'model_available' }))],
      ['no node_id', JSON.stringify({ ...report(), node_id: undefined })],
      ['unsafe model id', JSON.stringify(report({ model_id: '../etc' }))],
      ['not SemVer', JSON.stringify(report({ version: 'latest' }))],
      ['unknown reason', JSON.stringify(report({ reason: 'lost' }))],
      ['not ISO 8601', JSON.stringify(report({ ts: 'yesterday' }))],
      ['node id with spaces', JSON.stringify(report({ node_id: 'my node' }))],
    ];
    for (const [what, body] of bad) {
      const r = await post(body, { raw: true });
      expect(r.status, what).toBe(400);
      expect(r.body).toMatchObject({ success: false, error: 'INVALID_REQUEST' });
    }
    expect((await post('<x/>', { raw: true, type: 'application/xml' })).status).toBe(415);
    expect(await ranking()).toEqual([]);
  });

  it('202, and the ranking counts unmet demand beside requests', async () => {
    const usage = async (model_id: string, count: number): Promise<void> => {
      const res = await fetch(`${hub.url}/api/model-usage`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_TOKEN}` }, body: JSON.stringify({ model_id, count }) });
      expect(res.status).toBe(200);
    };
    await usage('whisper-zh', 4);
    await usage('tiny-nmt', 1);
    for (let i = 0; i < 5; i++) {
      const r = await post(report({ node_id: `node-${i}`, reason: i % 2 === 0 ? 'not_installed' : 'downloading', version: i === 0 ? '1.2.0' : null }));
      expect(r.status).toBe(202);
      expect(r.body).toEqual({ success: true });
    }
    // Fields a newer node may add are ignored; a node whose home did not exist sends node_id null.
    expect((await post({ ...report({ model_id: 'tiny-nmt', node_id: null }), gpu: 'none' })).status).toBe(202);
    expect(await ranking()).toEqual([
      { model_id: 'marian-en-zh', request_count: 0, unavailable_count: 5, rank: 1 },
      { model_id: 'whisper-zh', request_count: 4, unavailable_count: 0, rank: 2 },
      { model_id: 'tiny-nmt', request_count: 1, unavailable_count: 1, rank: 3 },
    ]);
    const top = (await (await fetch(`${hub.url}/api/model-usage/ranking?limit=1`)).json()) as unknown[];
    expect(top).toEqual([{ model_id: 'marian-en-zh', request_count: 0, unavailable_count: 5, rank: 1 }]);
    expect((await hub.catalog.ranking(10)).map((r) => r.model_id)).toEqual(['marian-en-zh', 'whisper-zh', 'tiny-nmt']);
  });

  it('429 past the per-client limit, counting every request, valid or not', async () => {
    const limited = await startHub(await tempDir(), [], { nodeToken: NODE_TOKEN, nodeReportLimit: 3 });
    expect((await post(report(), { base: limited.url })).status).toBe(202);
    expect((await post(report(), { base: limited.url, token: 'guess' })).status).toBe(401);
    expect((await post(report(), { base: limited.url })).status).toBe(202);
    const r = await post(report(), { base: limited.url });
    expect(r.status).toBe(429);
    expect(r.body).toMatchObject({ success: false, error: 'RATE_LIMITED' });
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await ranking(limited.url)).toEqual([{ model_id: 'marian-en-zh', request_count: 0, unavailable_count: 2, rank: 1 }]);
  });
});

describe('the catalog', () => {
  it('gains the unmet-demand table on a hub.db written before it, rows untouched', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'hub.db');
    // hub.db as the hub wrote it before: releases and model_usage, user_version 0.
    const old = new Database(file);
    old.exec(`CREATE TABLE releases (kind TEXT NOT NULL, id TEXT NOT NULL, version TEXT NOT NULL, platform TEXT NOT NULL,
      size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, manifest TEXT NOT NULL, key_id TEXT NOT NULL, stable INTEGER NOT NULL DEFAULT 0,
      created_at TEXT NOT NULL, published_at TEXT NOT NULL, PRIMARY KEY (kind, id, version, platform));
      CREATE TABLE model_usage (model_id TEXT PRIMARY KEY, request_count INTEGER NOT NULL);
      INSERT INTO model_usage VALUES ('whisper', 12), ('marian', 3);
      INSERT INTO releases VALUES ('service', 'old-svc', '1.0.0', 'linux-x64', 10, 'ab', '{}', 'K', 1, '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z');`);
    expect(old.pragma('user_version', { simple: true })).toBe(0);
    old.close();

    const catalog = new SqliteCatalogStore(file);
    try {
      expect(await catalog.ranking(10)).toEqual([
        { model_id: 'whisper', request_count: 12, unavailable_count: 0 },
        { model_id: 'marian', request_count: 3, unavailable_count: 0 },
      ]);
      // The release written before the rollout column: offered to every node (100 %), still stable.
      expect(await catalog.releases('service')).toMatchObject([{ id: 'old-svc', version: '1.0.0', stable: 1, rollout: 100, size_bytes: 10 }]);
      for (let i = 0; i < 10; i++) await catalog.addUnavailable('marian', new Date().toISOString());
      expect(await catalog.ranking(1)).toEqual([{ model_id: 'marian', request_count: 3, unavailable_count: 10 }]);
    } finally {
      await catalog.close();
    }
    // Opening it again migrates nothing twice and keeps every count.
    const again = new SqliteCatalogStore(file);
    try {
      expect(await again.ranking(10)).toEqual([
        { model_id: 'marian', request_count: 3, unavailable_count: 10 },
        { model_id: 'whisper', request_count: 12, unavailable_count: 0 },
      ]);
    } finally {
      await again.close();
    }
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBeGreaterThanOrEqual(1);
    expect(check.prepare("SELECT name FROM sqlite_master WHERE name = 'model_unavailable'").get()).toBeDefined();
    check.close();
  });
});

describe('the hub as the node\'s scheduler', () => {
  it('`hub serve --node-token`, and `models path --scheduler <hub>/api/model-unavailable`', async () => {
    const work = await tempDir();
    const storage = path.join(work, 'storage');
    await mkdir(storage, { recursive: true });
    const child = spawnCli(['hub', 'serve', '--storage', storage, '--port', '0', '--node-token', NODE_TOKEN, '--json'], { MODELHUB_NODE_TOKEN: '' });
    try {
      const ready = await waitForLine(child, 'ready');
      const url = String(ready.url);
      const home = path.join(work, 'node');
      await mkdir(home);
      const env = { MODELHUB_SCHEDULER: '', MODELHUB_NODE_TOKEN: '', MODELHUB_HUB: '' };
      const status = await runCli(['status', '--home', home, '--json'], env);
      const nodeId = status.result!.node_id as string;

      const told = await runCli(['models', 'path', 'whisper-zh@2.0.0', '--home', home, '--scheduler', `${url}/api/model-unavailable`, '--json'], { ...env, MODELHUB_NODE_TOKEN: NODE_TOKEN });
      expect(told.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' } });
      expect(told.stderr).not.toContain('not told');
      expect(await ranking(url)).toEqual([{ model_id: 'whisper-zh', request_count: 0, unavailable_count: 1, rank: 1 }]);

      // A wrong token: the hub refuses the report, the node's answer is the same and says so on stderr.
      const refused = await runCli(['models', 'path', 'whisper-zh@2.0.0', '--home', home, '--json'], { ...env, MODELHUB_SCHEDULER: `${url}/api/model-unavailable`, MODELHUB_NODE_TOKEN: 'wrong' });
      expect(refused.result).toEqual(told.result);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('the scheduler was not told (the scheduler answered 401)');
      expect(await ranking(url)).toEqual([{ model_id: 'whisper-zh', request_count: 0, unavailable_count: 1, rank: 1 }]);
      expect(nodeId).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      const exited = child.exitCode !== null ? Promise.resolve() : once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
  });
});
