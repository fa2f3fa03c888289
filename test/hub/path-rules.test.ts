// The hub applies the node's rules at publish (one function, src/schemas/manifest-rules.ts):
// file names that collide by case or Unicode form, names Windows reads as something else, and
// an exec.program that escapes the package are refused as 422 MANIFEST_INVALID from the signed
// manifest, before any file of the release is stored. Every release here is validly signed;
// `modelhub pack` refuses the same sources, so the uploads are written by hand.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { makeKey, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';
import { rawZip } from '../stage/raw-zip.js';

let hub: Hub;
let key: TestKey;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function signed(manifest: object): Promise<{ text: Buffer; sig: string }> {
  const text = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  return { text, sig: formatSignature(signBytes(text, await readSecretKeyFile(key.key))) };
}

async function send(target: string, parts: [string, Buffer | string][]): Promise<Answer> {
  const form = new FormData();
  for (const [name, data] of parts) form.append(name, new Blob([data]), path.posix.basename(name));
  const res = await fetch(`${hub.url}/api/admin/${target}`, { method: 'PUT', body: form, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function publishModel(version: string, files: Record<string, string>): Promise<Answer> {
  const { text, sig } = await signed({
    schema: 1,
    kind: 'model',
    id: 'rules-model',
    version,
    files: Object.entries(files).map(([p, d]) => ({ path: p, sha256: sha256(d), size: Buffer.byteLength(d) })),
    model: { name: 'rules', task: 'nmt', languages: ['en'] },
    created_at: '2026-01-01T00:00:00Z',
  });
  return send(`models/rules-model/${version}`, [['manifest', text], ['signature', sig], ...Object.entries(files).map(([p, d]): [string, string] => [`file:${p}`, d])]);
}

async function publishService(version: string, platforms: Record<string, string>, files: Record<string, string>): Promise<Answer> {
  const service = {
    service_id: 'rules-svc',
    version,
    platforms: Object.fromEntries(Object.entries(platforms).map(([p, program]) => [p, { exec: { type: 'argv', program, args: [] } }])),
  };
  const all: Record<string, string> = { 'service.json': JSON.stringify(service), ...files };
  const zip = rawZip(Object.entries(all).map(([name, data]) => ({ name, data })));
  const { text, sig } = await signed({
    schema: 1,
    kind: 'service',
    id: 'rules-svc',
    version,
    platform: 'linux-x64',
    archive: { path: 'service.zip', sha256: sha256(zip), size: zip.length },
    files: Object.entries(all).map(([p, d]) => ({ path: p, sha256: sha256(d), size: Buffer.byteLength(d), mode: 0o644 })),
    service,
    created_at: '2026-01-01T00:00:00Z',
  });
  return send(`services/rules-svc/${version}/linux-x64`, [['manifest', text], ['signature', sig], ['package', zip]]);
}

async function storedNothing(kind: 'models' | 'services', id: string, version: string): Promise<void> {
  expect(existsSync(path.join(hub.layout.root, kind, id, version))).toBe(false);
  expect(await readdir(hub.layout.incomingDir).catch(() => [] as string[])).toEqual([]);
}

beforeAll(async () => {
  const work = await tempDir();
  key = await makeKey(work);
  hub = await startHub(work, [key]);
});

const COLLISIONS: [string, string, string][] = [
  ['NFC and NFD forms of one name', 'w/caf\u00e9.bin', 'w/cafe\u0301.bin'],
  ['names differing only in case', 'w/Vocab.txt', 'w/VOCAB.txt'],
  ['final and medial sigma', 'w/\u03c3.bin', 'w/\u03c2.bin'],
];
const TRAPS = ['w/aux.bin', 'w/LPT1', 'w/model.bin:stream', 'w/trailing.', 'w/trailing '];

describe('model publish', () => {
  COLLISIONS.forEach(([what, a, b], i) => {
    it(`${what} → 422 MANIFEST_INVALID, nothing stored`, async () => {
      const version = `1.${i}.0`;
      const r = await publishModel(version, { [a]: 'first', [b]: 'second' });
      expect(r).toMatchObject({ status: 422, body: { success: false, error: 'MANIFEST_INVALID' } });
      expect(String(r.body.message)).toContain('collides');
      await storedNothing('models', 'rules-model', version);
    });
  });

  TRAPS.forEach((name, i) => {
    it(`${JSON.stringify(name)} → 422 MANIFEST_INVALID, nothing stored`, async () => {
      const version = `2.${i}.0`;
      const r = await publishModel(version, { 'config.json': '{}', [name]: 'x' });
      expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
      await storedNothing('models', 'rules-model', version);
    });
  });

  it('control: distinct, portable names → 201', async () => {
    expect(await publishModel('9.0.0', { 'w/cafe.bin': 'a', 'w/caf\u00e9.bin': 'b', 'w/vocab.txt': 'c' })).toMatchObject({ status: 201 });
  });

  // The release's folder keeps its signed manifest in .modelhub/ beside the files (the storage
  // layout is the URL layout), so no file may live there, in any case.
  ['.modelhub/manifest.json', '.ModelHub/x.bin'].forEach((name, i) => {
    it(`${JSON.stringify(name)} (the records folder) → 422 MANIFEST_INVALID, nothing stored`, async () => {
      const version = `3.${i}.0`;
      const r = await publishModel(version, { 'config.json': '{}', [name]: 'x' });
      expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
      expect(String(r.body.message)).toContain('reserved');
      await storedNothing('models', 'rules-model', version);
    });
  });

  it('control: .modelhub deeper down, manifest.json and files/ at the top → 201, each served at its path', async () => {
    const files = { 'w/.modelhub/x.bin': 'deep', 'manifest.json': '{"a":1}', 'files/y.bin': 'y' };
    expect(await publishModel('9.1.0', files)).toMatchObject({ status: 201 });
    for (const [p, data] of Object.entries(files)) {
      const res = await fetch(`${hub.url}/storage/models/rules-model/9.1.0/${p}`);
      expect(await res.text(), p).toBe(data);
    }
  });
});

describe('service publish', () => {
  const SERVER = 'console.log(1)\n';

  COLLISIONS.forEach(([what, a, b], i) => {
    it(`${what} in the package → 422 MANIFEST_INVALID, nothing stored`, async () => {
      const version = `1.${i}.0`;
      const r = await publishService(version, { 'linux-x64': 'node' }, { 'app/server.mjs': SERVER, [a]: 'first', [b]: 'second' });
      expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
      await storedNothing('services', 'rules-svc', version);
    });
  });

  const programs: [string, Record<string, string>][] = [
    ['../../../../bin/sh', { 'linux-x64': '../../../../bin/sh' }],
    ['an absolute path', { 'linux-x64': '/bin/sh' }],
    ['a path not in the package', { 'linux-x64': 'app/missing' }],
    ['a backslash path for another platform', { 'linux-x64': 'node', 'windows-x64': '..\\..\\cmd.exe' }],
  ];
  programs.forEach(([what, platforms], i) => {
    it(`exec.program: ${what} → 422 MANIFEST_INVALID, nothing stored`, async () => {
      const version = `2.${i}.0`;
      const r = await publishService(version, platforms, { 'app/server.mjs': SERVER });
      expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
      expect(String(r.body.message)).toContain('exec.program');
      await storedNothing('services', 'rules-svc', version);
    });
  });

  it('control: a bare command, or a program in the package → 201', async () => {
    expect(await publishService('9.0.0', { 'linux-x64': 'node' }, { 'app/server.mjs': SERVER })).toMatchObject({ status: 201 });
    expect(await publishService('9.1.0', { 'linux-x64': 'app/server.mjs', 'windows-x64': 'runtime/node.exe' }, { 'app/server.mjs': SERVER })).toMatchObject({ status: 201 });
  });
});
