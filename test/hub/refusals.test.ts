// The hub's refusals no other test exercises: the upload size limit, broken model and service
// uploads, two publishes of one release at once, marking a model stable, and the 500 envelope.
// Each refused upload stores nothing; each refusal has a control that the same request without
// the one fault is accepted, so the test fails if the refusal is removed.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';
import { rawZip, S_IFREG, type RawEntry } from '../stage/raw-zip.js';

let work: string;
let hub: Hub;
let key: TestKey;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

interface Part {
  name: string;
  data: Buffer | string;
  filename?: string;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function put(base: string, target: string, parts: Part[]): Promise<Answer> {
  const form = new FormData();
  for (const p of parts) form.append(p.name, new Blob([p.data]), p.filename ?? p.name);
  const res = await fetch(`${base}/api/admin/${target}`, { method: 'PUT', body: form, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function servicePartsOf(r: BuiltRelease): Promise<Part[]> {
  return [
    { name: 'manifest', data: await readFile(path.join(r.dir, 'manifest.json')), filename: 'manifest.json' },
    { name: 'signature', data: await readFile(path.join(r.dir, 'manifest.json.minisig')), filename: 'manifest.json.minisig' },
    { name: 'package', data: await readFile(path.join(r.dir, 'service.zip')), filename: 'service.zip' },
  ];
}

async function modelPartsOf(r: BuiltRelease): Promise<Part[]> {
  if (r.manifest.kind !== 'model') throw new Error('not a model release');
  const parts: Part[] = [
    { name: 'manifest', data: await readFile(path.join(r.dir, 'manifest.json')) },
    { name: 'signature', data: await readFile(path.join(r.dir, 'manifest.json.minisig')) },
  ];
  for (const f of r.manifest.files) parts.push({ name: `file:${f.path}`, data: await readFile(path.join(r.dir, ...f.path.split('/'))) });
  return parts;
}

async function sign(bytes: Buffer): Promise<string> {
  return formatSignature(signBytes(bytes, await readSecretKeyFile(key.key)));
}

/** Nothing of a refused upload is kept: no release folder, no catalog row, an empty incoming area. */
async function storedNothing(h: Hub, kind: 'services' | 'models', id: string, version: string): Promise<void> {
  expect(existsSync(path.join(h.layout.root, kind, id, version))).toBe(false);
  expect(await readdir(h.layout.incomingDir).catch(() => [] as string[])).toEqual([]);
  const r = await fetch(`${h.url}/api/${kind}/${id}`);
  if (r.status === 200) {
    const body = (await r.json()) as { versions: { version: string }[] };
    expect(body.versions.map((v) => v.version)).not.toContain(version);
  } else {
    expect(r.status).toBe(404);
  }
}

beforeAll(async () => {
  work = await tempDir();
  key = await makeKey(work);
  hub = await startHub(work, [key]);
});

describe('the upload size limit (maxUploadBytes)', () => {
  it('a package one byte over the limit → 413 SIZE_EXCEEDED; at the limit → 201', async () => {
    const r = await buildServiceRelease(work, key, { id: 'big-svc', version: '1.0.0', modelBytes: 256 * 1024 });
    const parts = await servicePartsOf(r);
    const size = (await readFile(path.join(r.dir, 'service.zip'))).length;
    expect(size).toBeGreaterThan(256 * 1024);

    const tight = await startHub(await tempDir(), [key], { maxUploadBytes: size - 1 });
    const refused = await put(tight.url, 'services/big-svc/1.0.0/linux-x64', parts);
    expect(refused).toMatchObject({ status: 413, body: { success: false, error: 'SIZE_EXCEEDED' } });
    await storedNothing(tight, 'services', 'big-svc', '1.0.0');

    const exact = await startHub(await tempDir(), [key], { maxUploadBytes: size });
    expect(await put(exact.url, 'services/big-svc/1.0.0/linux-x64', parts)).toMatchObject({ status: 201, body: { success: true } });
  });

  it('a model file over the limit → 413 SIZE_EXCEEDED, nothing stored', async () => {
    const r = await buildModelRelease(work, key, { id: 'big-model', version: '1.0.0', files: { 'weights.bin': 200 * 1024, 'config.json': 0 } });
    const tight = await startHub(await tempDir(), [key], { maxUploadBytes: 100 * 1024 });
    expect(await put(tight.url, 'models/big-model/1.0.0', await modelPartsOf(r))).toMatchObject({ status: 413, body: { error: 'SIZE_EXCEEDED' } });
    await storedNothing(tight, 'models', 'big-model', '1.0.0');
    const roomy = await startHub(await tempDir(), [key], { maxUploadBytes: 200 * 1024 });
    expect(await put(roomy.url, 'models/big-model/1.0.0', await modelPartsOf(r))).toMatchObject({ status: 201 });
  });
});

describe('model uploads whose files are not the signed ones', () => {
  let rel: BuiltRelease;
  const target = 'models/up-model/1.0.0';

  beforeAll(async () => {
    rel = await buildModelRelease(work, key, { id: 'up-model', version: '1.0.0', files: { 'model.bin': 4096, 'tokenizer/vocab.txt': 512, 'config.json': 0 } });
  });

  it('a missing file → 422 MANIFEST_INVALID naming it', async () => {
    const parts = (await modelPartsOf(rel)).filter((p) => p.name !== 'file:tokenizer/vocab.txt');
    const r = await put(hub.url, target, parts);
    expect(r).toMatchObject({ status: 422, body: { success: false, error: 'MANIFEST_INVALID' } });
    expect(String(r.body.message)).toContain('tokenizer/vocab.txt');
    await storedNothing(hub, 'models', 'up-model', '1.0.0');
  });

  it('an extra file → 422 MANIFEST_INVALID naming it', async () => {
    const r = await put(hub.url, target, [...(await modelPartsOf(rel)), { name: 'file:extra/payload.bin', data: 'surprise' }]);
    expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    expect(String(r.body.message)).toContain('extra/payload.bin');
    await storedNothing(hub, 'models', 'up-model', '1.0.0');
  });

  it('a file with other bytes of the same size, or fewer → 422 CHECKSUM_MISMATCH; more → cut off at the signed size, 413 SIZE_EXCEEDED', async () => {
    const parts = await modelPartsOf(rel);
    const flip = parts.map((p) => {
      if (p.name !== 'file:model.bin') return p;
      const b = Buffer.from(p.data);
      b[100] = b[100]! ^ 0xff;
      return { ...p, data: b };
    });
    expect(await put(hub.url, target, flip)).toMatchObject({ status: 422, body: { error: 'CHECKSUM_MISMATCH' } });
    const shorter = parts.map((p) => (p.name === 'file:model.bin' ? { ...p, data: Buffer.from(p.data).subarray(1) } : p));
    expect(await put(hub.url, target, shorter)).toMatchObject({ status: 422, body: { error: 'CHECKSUM_MISMATCH' } });
    const longer = parts.map((p) => (p.name === 'file:model.bin' ? { ...p, data: Buffer.concat([Buffer.from(p.data), Buffer.from('x')]) } : p));
    expect(await put(hub.url, target, longer)).toMatchObject({ status: 413, body: { error: 'SIZE_EXCEEDED' } });
    await storedNothing(hub, 'models', 'up-model', '1.0.0');
  });

  it('an unsafe file path → 400 INVALID_REQUEST, nothing written anywhere', async () => {
    for (const evil of ['../escape.bin', '../../escape.bin', '/etc/escape.bin', 'a/../../escape.bin', 'a\\..\\..\\escape.bin', 'a/./b.bin', '']) {
      const r = await put(hub.url, target, [...(await modelPartsOf(rel)), { name: `file:${evil}`, data: 'evil' }]);
      expect(r, evil).toMatchObject({ status: 400, body: { success: false, error: 'INVALID_REQUEST' } });
      await storedNothing(hub, 'models', 'up-model', '1.0.0');
    }
    expect(existsSync(path.join(hub.layout.root, 'escape.bin'))).toBe(false);
    expect(existsSync(path.join(hub.layout.root, '..', 'escape.bin'))).toBe(false);
    expect(existsSync(path.join(hub.layout.incomingDir, '..', '..', 'escape.bin'))).toBe(false);
  });

  it('control: the signed files as they are → 201', async () => {
    expect(await put(hub.url, target, await modelPartsOf(rel))).toMatchObject({ status: 201, body: { success: true, id: 'up-model' } });
  });
});

describe('service uploads that are not a well-formed package', () => {
  let rel: BuiltRelease;

  beforeAll(async () => {
    rel = await buildServiceRelease(work, key, { id: 'form-svc', version: '1.0.0' });
  });

  it('a body that is not multipart → INVALID_REQUEST (JSON 400, other types 415), nothing stored', async () => {
    const url = `${hub.url}/api/admin/services/form-svc/1.0.0/linux-x64`;
    const auth = { authorization: `Bearer ${TEST_TOKEN}` };
    const asJson = await fetch(url, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ manifest: rel.manifestText }) });
    expect(asJson.status).toBe(400);
    expect(await asJson.json()).toMatchObject({ success: false, error: 'INVALID_REQUEST' });
    const zip = await readFile(path.join(rel.dir, 'service.zip'));
    const asZip = await fetch(url, { method: 'PUT', headers: { ...auth, 'content-type': 'application/zip' }, body: zip });
    expect(asZip.status).toBe(415);
    expect(await asZip.json()).toMatchObject({ success: false, error: 'INVALID_REQUEST' });
    const asText = await fetch(url, { method: 'PUT', headers: { ...auth, 'content-type': 'text/plain' }, body: 'hello' });
    expect(asText.status).toBeGreaterThanOrEqual(400);
    expect(asText.status).toBeLessThan(500);
    expect(await asText.json()).toMatchObject({ success: false, error: 'INVALID_REQUEST' });
    await storedNothing(hub, 'services', 'form-svc', '1.0.0');
  });

  it('a repeated field → 400 INVALID_REQUEST naming it, nothing stored', async () => {
    const parts = await servicePartsOf(rel);
    for (const field of ['manifest', 'signature', 'package']) {
      const twice = [...parts, parts.find((p) => p.name === field)!];
      const r = await put(hub.url, 'services/form-svc/1.0.0/linux-x64', twice);
      expect(r, field).toMatchObject({ status: 400, body: { error: 'INVALID_REQUEST' } });
      expect(String(r.body.message)).toContain(`"${field}"`);
      await storedNothing(hub, 'services', 'form-svc', '1.0.0');
    }
  });

  /** A package written by the raw zip writer, with a manifest signed for exactly its bytes. */
  async function rawRelease(version: string, entries: RawEntry[], pkg = rawZip(entries)): Promise<Part[]> {
    const base = JSON.parse(rel.manifestText) as Record<string, unknown> & { service: Record<string, unknown> };
    const service = { ...base.service, version };
    const files = entries.map((e) => {
      const data = typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0));
      return { path: String(e.name), sha256: sha256(data), size: data.length, mode: 0o644 };
    });
    const manifest = Buffer.from(JSON.stringify({ ...base, version, service, archive: { path: 'service.zip', sha256: sha256(pkg), size: pkg.length }, files }, null, 2));
    return [
      { name: 'manifest', data: manifest },
      { name: 'signature', data: await sign(manifest) },
      { name: 'package', data: pkg, filename: 'service.zip' },
    ];
  }

  const SERVER_JS = 'console.log("hi")\n';

  function entries(version: string, flags = 0x0800): RawEntry[] {
    const service = (JSON.parse(rel.manifestText) as { service: Record<string, unknown> }).service;
    return [
      { name: 'service.json', data: JSON.stringify({ ...service, version }) },
      {
        name: 'app/server.mjs',
        data: SERVER_JS,
        flags,
        unixMode: S_IFREG | 0o644,
        // An encrypted stored entry carries a 12-byte encryption header before its data (APPNOTE 6.1).
        ...((flags & 0x0001) !== 0 ? { rawData: Buffer.concat([Buffer.alloc(12, 0x5a), Buffer.from(SERVER_JS)]) } : {}),
      },
    ];
  }

  it('an encrypted entry (general-purpose bit 0) → 422 MANIFEST_INVALID, nothing stored', async () => {
    const r = await put(hub.url, 'services/form-svc/2.0.0/linux-x64', await rawRelease('2.0.0', entries('2.0.0', 0x0801)));
    expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    expect(String(r.body.message)).toContain('encrypted');
    await storedNothing(hub, 'services', 'form-svc', '2.0.0');
  });

  it('a package that is not a readable zip → 422 MANIFEST_INVALID, nothing stored', async () => {
    const good = rawZip(entries('2.1.0'));
    // The central directory's signature broken: the bytes are signed and their hash matches, but no zip reader opens them.
    const broken = Buffer.from(good);
    broken.writeUInt32LE(0xdeadbeef, broken.length - 22);
    const garbage = Buffer.from('PK\u0003\u0004 this is not a zip at all '.repeat(20));
    for (const [version, pkg] of [['2.1.0', broken], ['2.2.0', garbage]] as const) {
      const r = await put(hub.url, `services/form-svc/${version}/linux-x64`, await rawRelease(version, entries(version), pkg));
      expect(r, version).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
      expect(String(r.body.message)).toContain('not a readable zip');
      await storedNothing(hub, 'services', 'form-svc', version);
    }
  });

  it('control: the same raw package unencrypted and whole → 201', async () => {
    const r = await put(hub.url, 'services/form-svc/2.3.0/linux-x64', await rawRelease('2.3.0', entries('2.3.0')));
    expect(r, JSON.stringify(r.body)).toMatchObject({ status: 201, body: { success: true, version: '2.3.0' } });
  });
});

describe('two simultaneous publishes of one release', () => {
  /** A multipart body sent by hand, so the test decides when its second half goes out. */
  function startUpload(base: string, target: string, parts: Part[]): { sendRest: () => void; answer: Promise<Answer> } {
    const boundary = `----modelhub-test-${Math.random().toString(36).slice(2)}`;
    const chunks: Buffer[] = [];
    for (const p of parts) {
      chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.filename ?? p.name}"\r\nContent-Type: application/octet-stream\r\n\r\n`));
      chunks.push(Buffer.from(p.data));
      chunks.push(Buffer.from('\r\n'));
    }
    chunks.push(Buffer.from(`--${boundary}--\r\n`));
    const body = Buffer.concat(chunks);
    const u = new URL(`${base}/api/admin/${target}`);
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length },
    });
    const answer = new Promise<Answer>((resolve, reject) => {
      req.on('response', (res) => {
        const got: Buffer[] = [];
        res.on('data', (c: Buffer) => got.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(got).toString('utf8')) as Record<string, unknown> }));
      });
      req.on('error', reject);
    });
    const half = Math.floor(body.length / 2);
    req.write(body.subarray(0, half));
    return { sendRest: () => req.end(body.subarray(half)), answer };
  }

  it('exactly one 201 and one 409 ALREADY_EXISTS, and the one stored package is whole', async () => {
    const h = await startHub(await tempDir(), [key]);
    const rel = await buildServiceRelease(work, key, { id: 'race-svc', version: '1.0.0', modelBytes: 512 * 1024 });
    const parts = await servicePartsOf(rel);
    const a = startUpload(h.url, 'services/race-svc/1.0.0/linux-x64', parts);
    const b = startUpload(h.url, 'services/race-svc/1.0.0/linux-x64', parts);
    // Both requests are past the "already published?" check and receiving: two uploads in flight.
    const deadline = Date.now() + 30_000;
    while ((await readdir(h.layout.incomingDir).catch(() => [] as string[])).length < 2) {
      if (Date.now() > deadline) throw new Error('the two uploads never were in flight together');
      await new Promise((r) => setTimeout(r, 20));
    }
    a.sendRest();
    b.sendRest();
    const answers = await Promise.all([a.answer, b.answer]);
    expect(answers.map((x) => x.status).sort()).toEqual([201, 409]);
    expect(answers.find((x) => x.status === 409)!.body).toMatchObject({ success: false, error: 'ALREADY_EXISTS' });
    const detail = (await (await fetch(`${h.url}/api/services/race-svc`)).json()) as { versions: { version: string }[] };
    expect(detail.versions.map((v) => v.version)).toEqual(['1.0.0']);
    const zip = Buffer.from(await (await fetch(`${h.url}/storage/services/race-svc/1.0.0/linux-x64/service.zip`)).arrayBuffer());
    expect(zip.equals(parts.find((p) => p.name === 'package')!.data as Buffer)).toBe(true);
    expect(await readdir(h.layout.incomingDir)).toEqual([]);
  });
});

describe('marking a model stable', () => {
  it('works, and /api/models shows it as default_version', async () => {
    const h = await startHub(await tempDir(), [key]);
    for (const version of ['1.0.0', '1.1.0']) {
      const r = await buildModelRelease(work, key, { id: 'stable-model', version });
      expect(await put(h.url, `models/stable-model/${version}`, await modelPartsOf(r))).toMatchObject({ status: 201 });
    }
    const before = (await (await fetch(`${h.url}/api/models`)).json()) as { id: string; default_version: string }[];
    expect(before).toMatchObject([{ id: 'stable-model', default_version: '1.1.0' }]);

    const mark = await fetch(`${h.url}/api/admin/models/stable-model/1.0.0/stable`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(mark.status).toBe(200);
    expect(await mark.json()).toMatchObject({ success: true, kind: 'model', id: 'stable-model', version: '1.0.0', stable: true });

    const after = (await (await fetch(`${h.url}/api/models`)).json()) as { id: string; default_version: string; versions: { version: string; stable: boolean }[] }[];
    expect(after).toMatchObject([{ id: 'stable-model', default_version: '1.0.0' }]);
    expect(after[0]!.versions.find((v) => v.version === '1.0.0')).toMatchObject({ stable: true });
    expect(after[0]!.versions.find((v) => v.version === '1.1.0')).toMatchObject({ stable: false });
    expect(await (await fetch(`${h.url}/api/models/stable-model`)).json()).toMatchObject({ default_version: '1.0.0' });

    const unknown = await fetch(`${h.url}/api/admin/models/stable-model/9.9.9/stable`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ success: false, error: 'NOT_FOUND' });
    const noToken = await fetch(`${h.url}/api/admin/models/stable-model/1.1.0/stable`, { method: 'POST' });
    expect(noToken.status).toBe(401);
    expect(await (await fetch(`${h.url}/api/models/stable-model`)).json()).toMatchObject({ default_version: '1.0.0' });
  });
});

describe('an internal error', () => {
  it('answers 500 with the one envelope and no stack trace', async () => {
    const h = await startHub(await tempDir(), [key]);
    expect((await fetch(`${h.url}/api/models`)).status).toBe(200);
    await h.catalog.close();
    for (const p of ['/api/models', '/api/services?platform=linux-x64', '/api/models/anything', '/api/model-usage/ranking?limit=3']) {
      const res = await fetch(`${h.url}${p}`);
      const text = await res.text();
      expect(res.status, p).toBe(500);
      expect(res.headers.get('content-type')).toContain('application/json');
      const body = JSON.parse(text) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(['details', 'error', 'message', 'success', 'timestamp']);
      expect(body).toMatchObject({ success: false, error: 'INTERNAL', details: {} });
      expect(typeof body.message).toBe('string');
      expect(Number.isNaN(Date.parse(String(body.timestamp)))).toBe(false);
      // Nothing of the cause leaks: no stack frames, no source paths, not the database's own words.
      expect(text).not.toMatch(/\n\s+at |\.ts:\d|\.js:\d|node_modules|database connection|stack/i);
    }
  });
});
