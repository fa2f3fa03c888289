// Validly signed releases the node must still refuse, from the signed manifest alone and before
// a byte of the release is downloaded: an exec.program that escapes the package (or is not in
// it), and file names that collide by case or Unicode form. The hub refuses such releases at
// publish, so each one is put between hub and node: written into the hub's storage folder and
// catalog directly, signed with the trusted publisher key. A counting proxy in front of the hub
// shows that no package or model byte was fetched.
import { createHash } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';
import { rawZip } from '../stage/raw-zip.js';
import { currentOf } from './fixture.js';

const SERVICE = 'exec-check';
const MODEL = 'names-check';
const sha256 = (d: Buffer | string): string => createHash('sha256').update(d).digest('hex');

let hub: Hub;
let key: TestKey;
let proxy: { url: string; bytes: Map<string, number>; close: () => Promise<void> };

/** Forwards to the hub and counts the body bytes it sends back, per path. */
async function countingProxy(target: string): Promise<typeof proxy> {
  const bytes = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const where = (req.url ?? '/').split('?')[0] ?? '/';
    const up = http.request(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.on('data', (chunk: Buffer) => bytes.set(where, (bytes.get(where) ?? 0) + chunk.length));
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    bytes,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function sign(text: string): Promise<string> {
  return formatSignature(signBytes(Buffer.from(text, 'utf8'), await readSecretKeyFile(key.key)));
}

/** A validly signed service release written straight into the hub's storage and catalog. */
async function plantService(version: string, platforms: Record<string, { program: string }>, files: Record<string, string>): Promise<string> {
  const service = {
    service_id: SERVICE,
    version,
    platforms: Object.fromEntries(Object.entries(platforms).map(([p, e]) => [p, { exec: { type: 'argv', program: e.program, args: ['app/server.mjs'] } }])),
  };
  const all: Record<string, string> = { 'service.json': JSON.stringify(service), ...files };
  const zip = rawZip(Object.entries(all).map(([name, data]) => ({ name, data })));
  const manifest = {
    schema: 1,
    kind: 'service',
    id: SERVICE,
    version,
    platform: 'linux-x64',
    archive: { path: 'service.zip', sha256: sha256(zip), size: zip.length },
    files: Object.entries(all).map(([p, data]) => ({ path: p, sha256: sha256(data), size: Buffer.byteLength(data), mode: 0o644 })),
    service,
    created_at: '2026-01-01T00:00:00Z',
  };
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  const dir = hub.layout.serviceDir(SERVICE, version, 'linux-x64');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'manifest.json'), text);
  await writeFile(path.join(dir, 'manifest.json.minisig'), await sign(text));
  await writeFile(path.join(dir, 'service.zip'), zip);
  const now = new Date().toISOString();
  expect(
    await hub.catalog.insert({ kind: 'service', id: SERVICE, version, platform: 'linux-x64', size_bytes: zip.length, sha256: sha256(zip), manifest: text, key_id: key.keyId, stable: 0, created_at: manifest.created_at, published_at: now }),
  ).toBe(true);
  return `/storage/services/${SERVICE}/${version}/linux-x64/service.zip`;
}

/** A validly signed model release written straight into the hub's storage and catalog; its file URLs. */
async function plantModel(version: string, files: Record<string, string>): Promise<string[]> {
  const manifest = {
    schema: 1,
    kind: 'model',
    id: MODEL,
    version,
    files: Object.entries(files).map(([p, data]) => ({ path: p, sha256: sha256(data), size: Buffer.byteLength(data) })),
    model: { name: 'names', task: 'nmt', languages: ['en'] },
    created_at: '2026-01-01T00:00:00Z',
  };
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  const dir = hub.layout.modelDir(MODEL, version);
  for (const [p, data] of Object.entries(files)) {
    const file = path.join(dir, ...p.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, data);
  }
  await mkdir(path.dirname(hub.layout.modelRecord(MODEL, version, 'manifest.json')), { recursive: true });
  await writeFile(hub.layout.modelRecord(MODEL, version, 'manifest.json'), text);
  await writeFile(hub.layout.modelRecord(MODEL, version, 'manifest.json.minisig'), await sign(text));
  const now = new Date().toISOString();
  const size = Object.values(files).reduce((n, d) => n + Buffer.byteLength(d), 0);
  expect(
    await hub.catalog.insert({ kind: 'model', id: MODEL, version, platform: '', size_bytes: size, sha256: sha256(text), manifest: text, key_id: key.keyId, stable: 0, created_at: manifest.created_at, published_at: now }),
  ).toBe(true);
  return Object.keys(files).map((p) => `/storage/models/${MODEL}/${version}/${p.split('/').map(encodeURIComponent).join('/')}`);
}

function cli(home: string, args: string[]): Promise<CliResult> {
  return runCli([...args, '--home', home, '--hub', proxy.url, '--json']);
}

async function newHome(): Promise<string> {
  const home = path.join(await tempDir('modelhub-node-'), 'home');
  const r = await cli(home, ['trust', 'add', key.pub]);
  expect(r.result, r.stderr).toMatchObject({ ok: true });
  return home;
}

/** Nothing for `version` was downloaded: no bytes through the proxy, nothing under downloads/. */
async function nothingFetched(home: string, urls: string[], version: string): Promise<void> {
  for (const u of urls) expect(proxy.bytes.get(u) ?? 0, u).toBe(0);
  const downloads = await readdir(path.join(home, 'downloads')).catch(() => [] as string[]);
  expect(downloads.filter((n) => n.includes(version))).toEqual([]);
}

beforeAll(async () => {
  const work = await tempDir();
  key = await makeKey(work);
  hub = await startHub(work, [key]);
  proxy = await countingProxy(hub.url);
  await publishDir((await buildServiceRelease(work, key, { id: SERVICE, version: '1.0.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
  await publishDir((await buildModelRelease(work, key, { id: MODEL, version: '1.0.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
});
afterAll(async () => {
  await proxy.close();
});

describe('an unsafe exec.program is refused from the signed manifest, before download', () => {
  let home: string;

  beforeAll(async () => {
    home = await newHome();
    const first = await cli(home, ['install', `${SERVICE}@1.0.0`, '--no-start']);
    expect(first.result, first.stderr).toMatchObject({ ok: true, current: '1.0.0' });
  });

  const SERVER = 'console.log("hi")\n';
  const cases: { name: string; platforms: Record<string, { program: string }> }[] = [
    { name: 'a relative path climbing out of the package', platforms: { 'linux-x64': { program: '../../../../bin/sh' } } },
    { name: 'an absolute path', platforms: { 'linux-x64': { program: '/bin/sh' } } },
    { name: 'a ".." segment inside the path', platforms: { 'linux-x64': { program: 'app/../../../bin/sh' } } },
    { name: 'backslashes', platforms: { 'linux-x64': { program: 'app\\server.mjs' } } },
    { name: 'a drive letter', platforms: { 'linux-x64': { program: 'C:/Windows/System32/cmd.exe' } } },
    { name: 'a path to a file the package does not have', platforms: { 'linux-x64': { program: 'app/missing' } } },
    { name: "another platform's program escaping", platforms: { 'linux-x64': { program: 'node' }, 'windows-x64': { program: '..\\..\\Windows\\System32\\cmd.exe' } } },
  ];

  cases.forEach((c, i) => {
    const version = `2.${i}.0`;
    it(`${c.name} → MANIFEST_INVALID; no package byte fetched; 1.0.0 stays current`, async () => {
      const zipUrl = await plantService(version, c.platforms, { 'app/server.mjs': SERVER });
      const r = await cli(home, ['install', `${SERVICE}@${version}`, '--no-start']);
      expect(r.code).toBe(1);
      expect(r.result, r.stderr).toMatchObject({ ok: false, error: { code: 'MANIFEST_INVALID' }, current: '1.0.0', rolled_back: false });
      expect(String((r.result!.error as { message: string }).message)).toContain('exec.program');
      await nothingFetched(home, [zipUrl], version);
      expect(await currentOf(home, SERVICE)).toBe('1.0.0');
      expect((await readdir(path.join(home, 'services', SERVICE))).sort()).toEqual(['1.0.0', 'current']);
    });
  });

  it('control: the same planted release with a bare command name installs', async () => {
    const zipUrl = await plantService('3.0.0', { 'linux-x64': { program: 'node' }, 'windows-x64': { program: 'runtime/node.exe' } }, { 'app/server.mjs': SERVER });
    const r = await cli(home, ['install', `${SERVICE}@3.0.0`, '--no-start']);
    expect(r.result, r.stderr).toMatchObject({ ok: true, current: '3.0.0' });
    expect(proxy.bytes.get(zipUrl)).toBeGreaterThan(0);
  });
});

describe('file names that collide by case or Unicode form are refused by the node', () => {
  const COLLISIONS: [string, string, string][] = [
    ['NFC and NFD forms of one name', 'app/caf\u00e9.txt', 'app/cafe\u0301.txt'],
    ['case and Unicode form at once', 'app/CAF\u00c9.txt', 'app/cafe\u0301.txt'],
    ['final and medial sigma, one letter once case-folded', 'app/\u03c3.txt', 'app/\u03c2.txt'],
  ];

  describe('install (the prestager and the stager)', () => {
    let home: string;
    beforeAll(async () => {
      home = await newHome();
      const first = await cli(home, ['install', `${SERVICE}@1.0.0`, '--no-start']);
      expect(first.result, first.stderr).toMatchObject({ ok: true, current: '1.0.0' });
    });

    COLLISIONS.forEach(([what, a, b], i) => {
      const version = `4.${i}.0`;
      it(`${what} → MANIFEST_INVALID before download; 1.0.0 stays current`, async () => {
        const zipUrl = await plantService(version, { 'linux-x64': { program: 'node' } }, { 'app/server.mjs': 'console.log(1)\n', [a]: 'first\n', [b]: 'second\n' });
        const r = await cli(home, ['install', `${SERVICE}@${version}`, '--no-start']);
        expect(r.result, r.stderr).toMatchObject({ ok: false, error: { code: 'MANIFEST_INVALID' }, current: '1.0.0' });
        expect(String((r.result!.error as { message: string }).message)).toContain('collides');
        await nothingFetched(home, [zipUrl], version);
        expect(await currentOf(home, SERVICE)).toBe('1.0.0');
      });
    });
  });

  describe('models pull', () => {
    let home: string;
    beforeAll(async () => {
      home = await newHome();
      const first = await cli(home, ['models', 'pull', `${MODEL}@1.0.0`]);
      expect(first.result, first.stderr).toMatchObject({ ok: true, version: '1.0.0' });
    });

    COLLISIONS.forEach(([what, a, b], i) => {
      const version = `2.${i}.0`;
      it(`${what} → MANIFEST_INVALID before download; no model folder appears`, async () => {
        const urls = await plantModel(version, { 'config.json': '{}', [a.replace('app/', 'weights/')]: 'first\n', [b.replace('app/', 'weights/')]: 'second\n' });
        const r = await cli(home, ['models', 'pull', `${MODEL}@${version}`]);
        expect(r.result, r.stderr).toMatchObject({ ok: false, error: { code: 'MANIFEST_INVALID' } });
        expect(String((r.result!.error as { message: string }).message)).toContain('collides');
        await nothingFetched(home, urls, version);
        expect((await readdir(path.join(home, 'models', MODEL))).filter((n) => n.includes(version))).toEqual([]);
        expect((await cli(home, ['models', 'list'])).result).toMatchObject({ ok: true, models: [{ id: MODEL, versions: ['1.0.0'] }] });
      });
    });

    it('control: a planted model with distinct names pulls', async () => {
      await plantModel('3.0.0', { 'config.json': '{}', 'weights/a.txt': 'a\n', 'weights/b.txt': 'b\n' });
      const r = await cli(home, ['models', 'pull', `${MODEL}@3.0.0`]);
      expect(r.result, r.stderr).toMatchObject({ ok: true, version: '3.0.0' });
    });
  });
});
