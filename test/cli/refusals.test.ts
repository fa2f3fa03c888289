// The node's refusals no other test exercises, through the real CLI: too little disk, a model
// manifest that is not the one asked for, a hub that is unreachable, answers non-JSON or answers
// too much, start/stop in the wrong state, unknown targets, bad trust-store input. Each refusal
// has a control beside it (the same thing done right succeeds), so the test fails if the refusal
// is removed.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, statfs, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { runCli, spawnCli, waitForLine, type CliResult } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { mountRefused, mountSmallDisk, type SmallDisk } from '../helpers/tmpfs.js';
import { buildModelRelease, buildServiceRelease, makeKey, type TestKey } from '../helpers/releases.js';
import { gate, startRewritingProxy, type RewritingProxy } from '../helpers/rewriting-proxy.js';
import { tempDir } from '../helpers/tmp.js';
import { currentOf } from '../engine/fixture.js';

const MiB = 1024 * 1024;

let work: string;
let key: TestKey;
let hub: Hub;
/** In front of the hub: forwards everything unless a test's rule answers. */
let proxy: RewritingProxy;
/** A preferred port of our own, away from the demo's 18000 that other test files use. */
const PORT = 21000 + (process.pid % 4000);

function cli(home: string, args: string[], hubUrl = proxy.url): Promise<CliResult> {
  return runCli([...args, '--home', home, '--hub', hubUrl, '--json']);
}

function errorOf(r: CliResult): { code: string; message: string } {
  return r.result?.error as { code: string; message: string };
}

async function trustedHome(parent?: string): Promise<string> {
  const home = path.join(parent ?? (await tempDir('modelhub-node-')), `home-${randomUUID().slice(0, 8)}`);
  const r = await cli(home, ['trust', 'add', key.pub]);
  expect(r.result, r.stderr).toMatchObject({ ok: true, key_id: key.keyId });
  return home;
}

async function publishService(id: string, version: string, modelBytes?: number): Promise<void> {
  const r = await buildServiceRelease(work, key, { id, version, modelBytes, extra: { default_port: PORT } });
  await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
}

async function publishModel(id: string, version: string, files?: Record<string, number>): Promise<void> {
  const r = await buildModelRelease(work, key, { id, version, files });
  await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
}

function storageRequests(since: number): string[] {
  return proxy.requests.slice(since).filter((p) => p.startsWith('/storage/'));
}

beforeAll(async () => {
  work = await tempDir();
  key = await makeKey(work);
  // Uncertified on purpose: explicit versions then go through the hub's plain listing, whose
  // answers these tests break (a certified hub's signed snapshot is covered in
  // test/engine/metadata.test.ts).
  hub = await startHub(work, [key], { certify: false });
  proxy = await startRewritingProxy(hub.url);
  await publishService('ref-echo', '1.0.0');
  await publishService('ref-echo', '1.1.0');
  await publishModel('ref-model', '1.0.0');
});

afterEach(() => {
  proxy.rules = [];
});

describe('INSUFFICIENT_DISK on a small disk (an 8 MiB tmpfs as the node home)', () => {
  let disk: SmallDisk | undefined;
  let mnt = '';

  beforeAll(async () => {
    disk = await mountSmallDisk('modelhub-tmpfs-', 8);
    mnt = disk.dir;
    if (!disk.mounted) return;
    // Releases larger than the whole disk.
    await publishService('disk-svc', '1.0.0', 10 * MiB);
    await publishModel('disk-model', '1.0.0', { 'weights.bin': 10 * MiB, 'config.json': 0 });
  });

  afterAll(async () => {
    await disk?.release();
  });

  /** False (with the reason printed) when this machine does not let the test mount a tmpfs. */
  async function haveSmallDisk(): Promise<boolean> {
    if (mountRefused(disk, 'INSUFFICIENT_DISK test')) {
      expect(existsSync(path.join(mnt, 'anything'))).toBe(false);
      return false;
    }
    const s = await statfs(mnt);
    expect(s.blocks * s.bsize).toBeLessThanOrEqual(8 * MiB);
    return true;
  }

  it('install → INSUFFICIENT_DISK before anything is downloaded; nothing installed', async () => {
    if (!(await haveSmallDisk())) return;
    const home = await trustedHome(mnt);
    const before = proxy.requests.length;
    const r = await cli(home, ['install', 'disk-svc@1.0.0', '--no-start']);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'INSUFFICIENT_DISK' }, current: null, rolled_back: false });
    expect(storageRequests(before)).toEqual([]);
    expect(await currentOf(home, 'disk-svc')).toBeNull();
    const names = await readdir(path.join(home, 'services', 'disk-svc')).catch(() => [] as string[]);
    expect(names.filter((n) => !n.startsWith('.'))).toEqual([]);
    expect((await cli(home, ['list'])).result).toMatchObject({ ok: true, services: [] });
  });

  it('models pull → INSUFFICIENT_DISK before anything is downloaded; no model folder', async () => {
    if (!(await haveSmallDisk())) return;
    const home = await trustedHome(mnt);
    const before = proxy.requests.length;
    const r = await cli(home, ['models', 'pull', 'disk-model@1.0.0']);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'INSUFFICIENT_DISK' } });
    expect(storageRequests(before)).toEqual([]);
    expect(existsSync(path.join(home, 'models', 'disk-model', '1.0.0'))).toBe(false);
    expect((await cli(home, ['models', 'list'])).result).toMatchObject({ ok: true, models: [] });
  });

  it('control: the same releases install and pull on an ordinary disk', async () => {
    if (!(await haveSmallDisk())) return;
    const home = await trustedHome();
    const i = await cli(home, ['install', 'disk-svc@1.0.0', '--no-start']);
    expect(i.result, i.stdout).toMatchObject({ ok: true, current: '1.0.0' });
    const m = await cli(home, ['models', 'pull', 'disk-model@1.0.0']);
    expect(m.result, m.stdout).toMatchObject({ ok: true, version: '1.0.0' });
  });
});

describe('a model manifest that does not match the request', () => {
  beforeAll(async () => {
    await publishModel('mm-a', '1.0.0');
    await publishModel('mm-a', '1.1.0');
    await publishModel('mm-a', '2.0.0');
    await publishModel('mm-b', '1.0.0');
    // The hub serves another release's validly signed manifest (and its signature) for these two.
    const swap = async (from: [string, string], to: [string, string]): Promise<void> => {
      for (const f of ['manifest.json', 'manifest.json.minisig'] as const) await copyFile(hub.layout.modelRecord(...from, f), hub.layout.modelRecord(...to, f));
    };
    await swap(['mm-b', '1.0.0'], ['mm-a', '1.0.0']);
    await swap(['mm-a', '2.0.0'], ['mm-a', '1.1.0']);
  });

  it("another model's signed manifest → MANIFEST_MISMATCH; no model folder", async () => {
    const home = await trustedHome();
    const before = proxy.requests.length;
    const r = await cli(home, ['models', 'pull', 'mm-a@1.0.0']);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'MANIFEST_MISMATCH' } });
    expect(errorOf(r).message).toContain('mm-b');
    expect(storageRequests(before)).toEqual([]);
    expect(existsSync(path.join(home, 'models', 'mm-a'))).toBe(false);
  });

  it("another version's signed manifest → MANIFEST_MISMATCH; no model folder", async () => {
    const home = await trustedHome();
    const r = await cli(home, ['models', 'pull', 'mm-a@1.1.0']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'MANIFEST_MISMATCH' } });
    expect(errorOf(r).message).toContain('2.0.0');
    expect(existsSync(path.join(home, 'models', 'mm-a', '1.1.0'))).toBe(false);
    expect(existsSync(path.join(home, 'models', 'mm-a', '2.0.0'))).toBe(false);
  });

  it('control: an untouched release of the same model pulls', async () => {
    const home = await trustedHome();
    const r = await cli(home, ['models', 'pull', 'mm-a@2.0.0']);
    expect(r.result, r.stdout).toMatchObject({ ok: true, version: '2.0.0' });
  });
});

describe('a hub that is unreachable, answers non-JSON, or answers too much', () => {
  it('unreachable → NETWORK_ERROR for install and models pull', async () => {
    const s = http.createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    const home = await trustedHome();
    const dead = `http://127.0.0.1:${port}`;
    const i = await cli(home, ['install', 'ref-echo@1.0.0', '--no-start'], dead);
    expect(i.code).toBe(1);
    expect(i.result).toMatchObject({ ok: false, error: { code: 'NETWORK_ERROR' }, current: null });
    const m = await cli(home, ['models', 'pull', 'ref-model@1.0.0'], dead);
    expect(m.result).toMatchObject({ ok: false, error: { code: 'NETWORK_ERROR' } });
    expect(existsSync(path.join(home, 'models', 'ref-model'))).toBe(false);
    // Control: the same home and commands through the reachable hub.
    expect((await cli(home, ['install', 'ref-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true, current: '1.0.0' });
  });

  it('non-JSON (an HTML page with 200, or a 502 from a gateway) → NETWORK_ERROR', async () => {
    const home = await trustedHome();
    const html = (status: number) => ({ status, headers: { 'content-type': 'text/html' }, body: '<html><body>Welcome to the hotel Wi-Fi</body></html>' });
    proxy.rules = [(p) => (p === '/api/services/ref-echo' || p === '/api/models/ref-model' ? html(200) : null)];
    const i = await cli(home, ['install', 'ref-echo@1.0.0', '--no-start']);
    expect(i.result).toMatchObject({ ok: false, error: { code: 'NETWORK_ERROR' }, current: null });
    expect(errorOf(i).message).toContain('not JSON');
    const m = await cli(home, ['models', 'pull', 'ref-model@1.0.0']);
    expect(m.result).toMatchObject({ ok: false, error: { code: 'NETWORK_ERROR' } });
    expect(errorOf(m).message).toContain('not JSON');

    proxy.rules = [(p) => (p === '/api/services/ref-echo' ? html(502) : null)];
    const g = await cli(home, ['install', 'ref-echo@1.0.0', '--no-start']);
    expect(g.result).toMatchObject({ ok: false, error: { code: 'NETWORK_ERROR' } });
    expect(errorOf(g).message).toContain('502');
    expect(await currentOf(home, 'ref-echo')).toBeNull();
  });

  /** The hub's real JSON answer for `p`, padded with an extra field to `total` bytes, streamed. */
  async function padded(p: string, total: number): Promise<{ status: number; headers: Record<string, string>; body: () => Generator<Buffer> }> {
    const real = await (await fetch(`${hub.url}${p}`)).text();
    const head = Buffer.from(real.replace(/}\s*$/, ',"padding":"'));
    const tail = Buffer.from('"}');
    const chunk = Buffer.alloc(MiB, 0x61);
    return {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: function* () {
        yield head;
        for (let left = total - head.length - tail.length; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
        yield tail;
      },
    };
  }

  it('a catalog answer over the 16 MiB limit → SIZE_EXCEEDED (install and models pull)', async () => {
    const home = await trustedHome();
    const svc = await padded('/api/services/ref-echo', 40 * MiB);
    const mdl = await padded('/api/models/ref-model', 40 * MiB);
    proxy.rules = [(p) => (p === '/api/services/ref-echo' ? svc : p === '/api/models/ref-model' ? mdl : null)];
    const i = await cli(home, ['install', 'ref-echo@1.0.0', '--no-start']);
    expect(i.result).toMatchObject({ ok: false, error: { code: 'SIZE_EXCEEDED' }, current: null });
    const m = await cli(home, ['models', 'pull', 'ref-model@1.0.0']);
    expect(m.result).toMatchObject({ ok: false, error: { code: 'SIZE_EXCEEDED' } });
    // The node stopped reading: it never took the whole answer.
    expect(proxy.sent.get('/api/services/ref-echo')!).toBeLessThan(40 * MiB);
    expect(proxy.sent.get('/api/models/ref-model')!).toBeLessThan(40 * MiB);

    // Control: just under the limit, the same padded answers are read and the install goes on.
    proxy.rules = [
      async (p) => (p === '/api/services/ref-echo' ? padded(p, 15 * MiB) : p === '/api/models/ref-model' ? padded(p, 15 * MiB) : null),
    ];
    expect((await cli(home, ['install', 'ref-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true, current: '1.0.0' });
    expect((await cli(home, ['models', 'pull', 'ref-model@1.0.0'])).result).toMatchObject({ ok: true, version: '1.0.0' });
  });

  it('a manifest over 8 MiB or a signature over 64 KiB → SIZE_EXCEEDED; the current version stays', async () => {
    const home = await trustedHome();
    expect((await cli(home, ['install', 'ref-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true, current: '1.0.0' });
    const base = '/api/services/ref-echo/1.1.0/linux-x64';
    const big = (n: number) => ({ status: 200, body: () => [Buffer.alloc(n, 0x20)] });
    proxy.rules = [(p) => (p === `${base}/manifest` ? big(9 * MiB) : null)];
    const a = await cli(home, ['install', 'ref-echo@1.1.0', '--no-start']);
    expect(a.result).toMatchObject({ ok: false, error: { code: 'SIZE_EXCEEDED' }, current: '1.0.0' });
    proxy.rules = [(p) => (p === `${base}/manifest.minisig` ? big(65 * 1024) : null)];
    const b = await cli(home, ['install', 'ref-echo@1.1.0', '--no-start']);
    expect(b.result).toMatchObject({ ok: false, error: { code: 'SIZE_EXCEEDED' }, current: '1.0.0' });
    expect(await currentOf(home, 'ref-echo')).toBe('1.0.0');
  });
});

describe('start and stop in the wrong state', () => {
  let home: string;

  beforeAll(async () => {
    home = await trustedHome();
    const r = await cli(home, ['install', 'ref-echo@1.0.0']);
    expect(r.result, r.stdout + r.stderr).toMatchObject({ ok: true, current: '1.0.0' });
  });

  afterAll(async () => {
    await cli(home, ['stop', 'ref-echo']);
  });

  it('start or stop of a service that is not installed → NOT_FOUND', async () => {
    const r = await cli(home, ['start', 'ghost']);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    const s = await cli(home, ['stop', 'ghost']);
    expect(s.code).toBe(1);
    expect(s.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect((await cli(home, ['status'])).result).toMatchObject({ ok: true, services: [{ id: 'ref-echo' }] });
  });

  it('start of a running service starts nothing new; stop of a stopped one stops nothing', async () => {
    const status = await cli(home, ['status', 'ref-echo']);
    const running = (status.result!.services as { pid: number; running: boolean }[])[0]!;
    expect(running).toMatchObject({ running: true, healthy: true });
    const again = await cli(home, ['start', 'ref-echo']);
    expect(again.result).toMatchObject({ ok: true, already_running: true, pid: running.pid, version: '1.0.0' });
    expect((await cli(home, ['status', 'ref-echo'])).result).toMatchObject({ services: [{ pid: running.pid, running: true }] });

    expect((await cli(home, ['stop', 'ref-echo'])).result).toMatchObject({ ok: true, stopped: true });
    const twice = await cli(home, ['stop', 'ref-echo']);
    expect(twice.code).toBe(0);
    expect(twice.result).toMatchObject({ ok: true, stopped: false });
    expect((await cli(home, ['status', 'ref-echo'])).result).toMatchObject({ services: [{ running: false, pid: null }] });
  });

  it('start and stop while an install job runs → INVALID_REQUEST naming the job; afterwards both work', async () => {
    const held = gate();
    proxy.rules = [async (p) => (p.startsWith('/storage/services/ref-echo/1.1.0/') ? held.wait().then(() => null) : null)];
    const child = spawnCli(['install', 'ref-echo@1.1.0', '--no-start', '--home', home, '--hub', proxy.url, '--json']);
    const result = waitForLine(child, 'result', 60_000);
    try {
      const deadline = Date.now() + 30_000;
      while (held.waiting() === 0) {
        if (Date.now() > deadline) throw new Error('the install never reached its download');
        await new Promise((r) => setTimeout(r, 25));
      }
      const start = await cli(home, ['start', 'ref-echo']);
      expect(start.code).toBe(1);
      expect(start.result).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
      expect(errorOf(start).message).toContain('install');
      const stop = await cli(home, ['stop', 'ref-echo']);
      expect(stop.result).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
      expect((await cli(home, ['status', 'ref-echo'])).result).toMatchObject({ services: [{ running: false }] });
    } finally {
      held.open();
    }
    expect(await result).toMatchObject({ ok: true, current: '1.1.0' });
    const start = await cli(home, ['start', 'ref-echo']);
    expect(start.result, start.stdout).toMatchObject({ ok: true, version: '1.1.0', already_running: false });
    expect((await cli(home, ['stop', 'ref-echo'])).result).toMatchObject({ ok: true, stopped: true });
  });
});

describe('status, events and uninstall of unknown targets', () => {
  it('→ NOT_FOUND (VERSION_NOT_FOUND for an unknown version of an installed service)', async () => {
    const home = await trustedHome();
    // Before anything exists (no engine.db yet).
    expect((await cli(home, ['events', randomUUID()])).result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect((await cli(home, ['status', 'ghost'])).result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });

    const installed = await cli(home, ['install', 'ref-echo@1.0.0', '--no-start']);
    expect(installed.result).toMatchObject({ ok: true });
    const jobId = String(installed.result!.job_id);

    const status = await cli(home, ['status', 'ghost']);
    expect(status.code).toBe(1);
    expect(status.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    const events = await cli(home, ['events', randomUUID()]);
    expect(events.code).toBe(1);
    expect(events.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    const uninstall = await cli(home, ['uninstall', 'ghost']);
    expect(uninstall.code).toBe(1);
    expect(uninstall.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    const version = await cli(home, ['uninstall', 'ref-echo@9.9.9']);
    expect(version.result).toMatchObject({ ok: false, error: { code: 'VERSION_NOT_FOUND' } });
    expect(await currentOf(home, 'ref-echo')).toBe('1.0.0');

    // Controls: the known ones answer.
    expect((await cli(home, ['status', 'ref-echo'])).result).toMatchObject({ ok: true, services: [{ id: 'ref-echo', version: '1.0.0' }] });
    const known = await cli(home, ['events', jobId]);
    expect(known.result).toMatchObject({ ok: true });
    expect((known.result!.events as unknown[]).length).toBeGreaterThan(0);
  });
});

describe('the trust store refuses bad input', () => {
  it('trust add of a file that is not a public key → INVALID_REQUEST (missing file → NOT_FOUND); nothing trusted', async () => {
    const dir = await tempDir();
    const home = path.join(dir, 'home');
    const pubText = await readFile(key.pub, 'utf8');
    const [comment, line] = pubText.split('\n');
    const files: Record<string, string | null> = {
      'garbage.pub': 'this is not a key\n',
      'empty.pub': '',
      'truncated.pub': `${comment}\n${line!.slice(0, -8)}\n`,
      'secret-key.pub': await readFile(key.key, 'utf8'),
      'a-directory.pub': null,
    };
    for (const [name, text] of Object.entries(files)) {
      const f = path.join(dir, name);
      if (text === null) await mkdir(f);
      else await writeFile(f, text);
      const r = await cli(home, ['trust', 'add', f]);
      expect(r.code, name).toBe(1);
      expect(r.result, name).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    }
    const missing = await cli(home, ['trust', 'add', path.join(dir, 'no-such.pub')]);
    expect(missing.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect((await cli(home, ['trust', 'list'])).result).toMatchObject({ ok: true, keys: [] });
    expect((await readdir(path.join(home, 'trust')).catch(() => [] as string[])).filter((n) => !n.startsWith('.'))).toEqual([]);

    // Control: the real public key is accepted.
    expect((await cli(home, ['trust', 'add', key.pub])).result).toMatchObject({ ok: true, key_id: key.keyId });
  });

  it('trust remove of an unknown id → NOT_FOUND, of a non-id → INVALID_REQUEST; the trusted key stays', async () => {
    const home = await trustedHome();
    const unknown = key.keyId === '0123456789ABCDEF' ? 'FEDCBA9876543210' : '0123456789ABCDEF';
    const r = await cli(home, ['trust', 'remove', unknown]);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    for (const bad of ['not-hex', '0123456789ABCDEF0', '../../etc/passwd']) {
      expect((await cli(home, ['trust', 'remove', bad])).result, bad).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    }
    expect((await cli(home, ['trust', 'list'])).result).toMatchObject({ ok: true, keys: [{ key_id: key.keyId }] });
    // Control: the known id is removed.
    expect((await cli(home, ['trust', 'remove', key.keyId])).result).toMatchObject({ ok: true, key_id: key.keyId });
    expect((await cli(home, ['trust', 'list'])).result).toMatchObject({ ok: true, keys: [] });
  });
});
