// Admin: the token, rate limiting of failures, and every rejected upload storing nothing.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

let work: string;
let hub: Hub;
let key: TestKey;
let stranger: TestKey;
let rel: BuiltRelease;

interface Parts {
  manifest: Buffer;
  signature: string;
  pkg: Buffer;
}

async function partsOf(r: BuiltRelease): Promise<Parts> {
  return {
    manifest: await readFile(path.join(r.dir, 'manifest.json')),
    signature: await readFile(path.join(r.dir, 'manifest.json.minisig'), 'utf8'),
    pkg: await readFile(path.join(r.dir, 'service.zip')),
  };
}

async function upload(p: Parts, target = 'demo-echo/1.0.0/linux-x64', token = TEST_TOKEN): Promise<{ status: number; body: Record<string, unknown> }> {
  const form = new FormData();
  form.append('manifest', new Blob([p.manifest]), 'manifest.json');
  form.append('signature', new Blob([p.signature]), 'manifest.json.minisig');
  form.append('package', new Blob([p.pkg]), 'service.zip');
  const res = await fetch(`${hub.url}/api/admin/services/${target}`, { method: 'PUT', body: form, headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function resign(manifest: Buffer, k: TestKey): Promise<string> {
  return formatSignature(signBytes(manifest, await readSecretKeyFile(k.key)));
}

async function storedNothing(version: string): Promise<void> {
  const dir = path.join(work, 'storage', 'services', 'demo-echo');
  const versions = await readdir(dir).catch(() => [] as string[]);
  expect(versions).not.toContain(version);
  const incoming = await readdir(path.join(work, 'storage', '.incoming')).catch(() => [] as string[]);
  expect(incoming).toEqual([]);
  const r = await fetch(`${hub.url}/api/services/demo-echo/${version}/checksum?platform=linux-x64`);
  expect(r.status).toBe(404);
}

beforeAll(async () => {
  work = await tempDir();
  key = await makeKey(work);
  stranger = await makeKey(work, 'stranger');
  hub = await startHub(work, [key]);
  rel = await buildServiceRelease(work, key, { version: '1.0.0' });
});

describe('rejected uploads store nothing', () => {
  it('a flipped signature byte → 400 SIGNATURE_INVALID', async () => {
    const p = await partsOf(rel);
    const lines = p.signature.split('\n');
    const sig = Buffer.from(lines[1]!, 'base64');
    sig[20] = sig[20]! ^ 0x01;
    lines[1] = sig.toString('base64');
    const r = await upload({ ...p, signature: lines.join('\n') });
    expect(r).toMatchObject({ status: 400, body: { success: false, error: 'SIGNATURE_INVALID' } });
    await storedNothing('1.0.0');
  });

  it('a key the hub does not know → 403 UNTRUSTED_KEY', async () => {
    const p = await partsOf(rel);
    const r = await upload({ ...p, signature: await resign(p.manifest, stranger) });
    expect(r).toMatchObject({ status: 403, body: { error: 'UNTRUSTED_KEY' } });
    await storedNothing('1.0.0');
  });

  it('a manifest changed after signing → 400 SIGNATURE_INVALID', async () => {
    const p = await partsOf(rel);
    const tampered = Buffer.from(p.manifest.toString('utf8').replace('"description": "', '"description": "evil '));
    expect(tampered.equals(p.manifest)).toBe(false);
    const r = await upload({ ...p, manifest: tampered });
    expect(r).toMatchObject({ status: 400, body: { error: 'SIGNATURE_INVALID' } });
    await storedNothing('1.0.0');
  });

  it('a package that is not the signed one → 422 CHECKSUM_MISMATCH; one longer than signed → 413 SIZE_EXCEEDED', async () => {
    const p = await partsOf(rel);
    const other = Buffer.from(p.pkg);
    other[10] = other[10]! ^ 0xff;
    expect(await upload({ ...p, pkg: other })).toMatchObject({ status: 422, body: { error: 'CHECKSUM_MISMATCH' } });
    expect(await upload({ ...p, pkg: p.pkg.subarray(1) })).toMatchObject({ status: 422, body: { error: 'CHECKSUM_MISMATCH' } });
    expect(await upload({ ...p, pkg: Buffer.concat([p.pkg, Buffer.from('x')]) })).toMatchObject({ status: 413, body: { error: 'SIZE_EXCEEDED' } });
    await storedNothing('1.0.0');
  });

  it('a URL that disagrees with the manifest → 422 MANIFEST_INVALID', async () => {
    const p = await partsOf(rel);
    expect(await upload(p, 'demo-echo/2.0.0/linux-x64')).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    expect(await upload(p, 'demo-echo/1.0.0/windows-x64')).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    expect(await upload(p, 'other-svc/1.0.0/linux-x64')).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    await storedNothing('2.0.0');
  });

  it("a zip whose entries are not the manifest's files → 422 MANIFEST_INVALID", async () => {
    const p = await partsOf(rel);
    const m = JSON.parse(p.manifest.toString('utf8')) as { files: { path: string }[] };
    m.files = m.files.filter((f) => f.path !== 'app/behavior.txt');
    const manifest = Buffer.from(JSON.stringify(m, null, 2) + '\n');
    const r = await upload({ ...p, manifest, signature: await resign(manifest, key) });
    expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    expect(String(r.body.message)).toContain('app/behavior.txt');
    await storedNothing('1.0.0');
  });

  it('a signed manifest that is not a manifest → 422 MANIFEST_INVALID naming the field', async () => {
    const p = await partsOf(rel);
    const m = JSON.parse(p.manifest.toString('utf8')) as Record<string, unknown>;
    delete m.archive;
    const manifest = Buffer.from(JSON.stringify(m));
    const r = await upload({ ...p, manifest, signature: await resign(manifest, key) });
    expect(r).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    expect(String(r.body.message)).toContain('archive');
    const junk = Buffer.from('not json');
    expect(await upload({ ...p, manifest: junk, signature: await resign(junk, key) })).toMatchObject({ status: 422, body: { error: 'MANIFEST_INVALID' } });
    await storedNothing('1.0.0');
  });

  it('a missing part → 400 INVALID_REQUEST', async () => {
    const form = new FormData();
    form.append('manifest', new Blob([(await partsOf(rel)).manifest]), 'manifest.json');
    const res = await fetch(`${hub.url}/api/admin/services/demo-echo/1.0.0/linux-x64`, { method: 'PUT', body: form, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'INVALID_REQUEST' });
    await storedNothing('1.0.0');
  });

  it('the good upload → 201, then the same version again → 409 ALREADY_EXISTS', async () => {
    const p = await partsOf(rel);
    const ok = await upload(p);
    expect(ok).toMatchObject({ status: 201, body: { success: true, id: 'demo-echo', version: '1.0.0', platform: 'linux-x64', key_id: key.keyId } });
    const again = await upload(p);
    expect(again).toMatchObject({ status: 409, body: { error: 'ALREADY_EXISTS' } });
    await expect(publishDir(rel.dir, { hub: hub.url, token: TEST_TOKEN })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    const zip = await fetch(`${hub.url}/storage/services/demo-echo/1.0.0/linux-x64/service.zip`);
    expect(Buffer.from(await zip.arrayBuffer()).equals(p.pkg)).toBe(true);
  });
});

describe('admin token and rate limiting', () => {
  it('no token or a wrong token → 401 UNAUTHORIZED', async () => {
    const none = await fetch(`${hub.url}/api/admin/services/demo-echo/1.0.0/stable`, { method: 'POST' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(await none.json()).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
    const wrong = await fetch(`${hub.url}/api/admin/services/demo-echo/1.0.0/stable`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}x` } });
    expect(wrong.status).toBe(401);
    const prefix = await fetch(`${hub.url}/api/admin/services/demo-echo/1.0.0/stable`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN.slice(0, -1)}` } });
    expect(prefix.status).toBe(401);
  });

  it('repeated failures → 429 RATE_LIMITED, while the right token still works', async () => {
    const limited = await startHub(await tempDir(), [key], { authFailureLimit: 3, authFailureWindowMs: 60_000 });
    const attempt = (token: string): Promise<Response> =>
      fetch(`${limited.url}/api/admin/services/demo-echo/1.0.0/stable`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await attempt('guess-' + i)).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    const blocked = await attempt('guess-x');
    expect(await blocked.json()).toMatchObject({ success: false, error: 'RATE_LIMITED' });
    expect(blocked.headers.get('retry-after')).not.toBeNull();
    // The valid token is not counted and not blocked: 404 because nothing is published there.
    const good = await attempt(TEST_TOKEN);
    expect(good.status).toBe(404);
  });

  it('a hub without a token refuses every admin call', async () => {
    const closed = await startHub(await tempDir(), [key], { adminToken: undefined });
    const r = await fetch(`${closed.url}/api/admin/services/demo-echo/1.0.0/stable`, { method: 'POST', headers: { authorization: 'Bearer ' } });
    expect(r.status).toBe(401);
  });
});
