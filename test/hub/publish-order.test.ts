// The hub checks the signed manifest before it stores a byte of the package: the `manifest` and
// `signature` fields come first and are checked at once (signature, manifest, URL, free disk),
// a package field that comes before them is refused, and a package longer than its signed size
// is cut off at that size. Each upload here is a slow, hand-written multipart body that never
// ends on its own, and the storage's .incoming area is watched while it is sent.
import { readdir, readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

let work: string;
let hub: Hub;
let key: TestKey;
let stranger: TestKey;
let rel: BuiltRelease;
let manifest: Buffer;
let signature: Buffer;
let pkg: Buffer;

const BOUNDARY = 'modelhub-order-test-boundary';
const CHUNK = 64 * 1024;
/** A bound against a hang only: every loop below ends on an event, long before this (and
 * before the test's own timeout, so that a hang fails with what was seen, not a bare timeout). */
const HANG_GUARD_MS = 40_000;
/** More than the manifest and its signature together: anything beyond is package bytes. */
const FEW_KB = 16 * 1024;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function partHead(name: string, filename: string): Buffer {
  return Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
}

function whole(name: string, filename: string, data: Buffer): Buffer {
  return Buffer.concat([partHead(name, filename), data, Buffer.from('\r\n')]);
}

/** A chunked PUT that stays open: the caller writes the body piece by piece. */
function openUpload(h: Hub, target: string): { req: http.ClientRequest; answer: Promise<Answer>; answered: () => boolean } {
  const u = new URL(`${h.url}/api/admin/${target}`);
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'PUT',
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
  });
  let done = false;
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      const got: Buffer[] = [];
      res.on('data', (c: Buffer) => got.push(c));
      res.on('end', () => {
        done = true;
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(got).toString('utf8')) as Record<string, unknown> });
      });
    });
    // The hub closes the connection after answering early; writes after that fail, harmlessly.
    req.on('error', (err) => {
      if (!done) reject(err);
    });
  });
  void answer.catch(() => undefined);
  return { req, answer, answered: () => done };
}

/** Every file under .incoming with its size. */
async function incoming(h: Hub): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  async function walk(dir: string, rel: string): Promise<void> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const abs = path.join(dir, n);
      const s = await stat(abs).catch(() => null);
      if (s === null) continue;
      if (s.isDirectory()) await walk(abs, `${rel}${n}/`);
      else out.set(`${rel}${n}`, s.size);
    }
  }
  await walk(h.layout.incomingDir, '');
  return out;
}

function total(files: Map<string, number>): number {
  return [...files.values()].reduce((a, b) => a + b, 0);
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Sends `head`, then `body` (package bytes) a chunk at a time, watching .incoming between
 * chunks, until the hub answers, the body runs out (then the request is left open), or
 * `stopWhen` says what was seen is already a failure. The request is never ended by the test.
 */
async function trickle(
  h: Hub,
  target: string,
  head: Buffer,
  body: Buffer,
  stopWhen: (seen: Map<string, number>) => boolean,
): Promise<{ answer: Answer | null; maxIncoming: number; maxPackage: number; sent: number }> {
  const up = openUpload(h, target);
  up.req.write(head);
  let sent = 0;
  let maxIncoming = 0;
  let maxPackage = 0;
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!up.answered() && Date.now() < deadline) {
    const seen = await incoming(h);
    maxIncoming = Math.max(maxIncoming, total(seen));
    // Package bytes: any file of the upload but the manifest and its signature.
    for (const [name, size] of seen) if (!/\/manifest\.json(\.minisig)?$/.test(name)) maxPackage = Math.max(maxPackage, size);
    if (stopWhen(seen)) break;
    if (sent < body.length && !up.req.destroyed) {
      up.req.write(body.subarray(sent, sent + CHUNK));
      sent = Math.min(body.length, sent + CHUNK);
    }
    await pause(10);
  }
  const answer = up.answered() ? await up.answer : null;
  up.req.destroy();
  return { answer, maxIncoming, maxPackage, sent };
}

/** The manifest and its signature, as the hub wants them first, then the package part's head. */
function signedUploadHead(): Buffer {
  return Buffer.concat([whole('manifest', 'manifest.json', manifest), whole('signature', 'manifest.json.minisig', signature), partHead('package', 'service.zip')]);
}

async function nothingStored(h: Hub, version: string): Promise<void> {
  // The hub's cleanup of a refused upload finishes right after its answer.
  for (let i = 0; i < 100 && (await incoming(h)).size > 0; i++) await pause(20);
  expect([...(await incoming(h)).keys()]).toEqual([]);
  await expect(stat(path.join(h.layout.root, 'services', 'demo-echo', version))).rejects.toMatchObject({ code: 'ENOENT' });
}

async function resign(bytes: Buffer, k: TestKey): Promise<Buffer> {
  return Buffer.from(formatSignature(signBytes(bytes, await readSecretKeyFile(k.key))));
}

beforeAll(async () => {
  work = await tempDir();
  key = await makeKey(work);
  stranger = await makeKey(work, 'stranger');
  hub = await startHub(work, [key]);
  rel = await buildServiceRelease(work, key, { version: '1.0.0', modelBytes: 4 << 20 });
  manifest = await readFile(path.join(rel.dir, 'manifest.json'));
  signature = await readFile(path.join(rel.dir, 'manifest.json.minisig'));
  pkg = await readFile(path.join(rel.dir, 'service.zip'));
  expect(pkg.length).toBeGreaterThan(40 * CHUNK);
});

describe('a refused signature or manifest: refused before any package byte is stored', () => {
  const TARGET = 'services/demo-echo/1.0.0/linux-x64';
  const cases: { name: string; status: number; code: string; head: () => Promise<Buffer>; target?: string }[] = [
    {
      name: 'a flipped byte in the signature',
      status: 400,
      code: 'SIGNATURE_INVALID',
      head: async () => {
        const lines = signature.toString('utf8').split('\n');
        const sig = Buffer.from(lines[1]!, 'base64');
        sig[20] = sig[20]! ^ 0x01;
        lines[1] = sig.toString('base64');
        return Buffer.concat([whole('manifest', 'manifest.json', manifest), whole('signature', 'manifest.json.minisig', Buffer.from(lines.join('\n')))]);
      },
    },
    {
      name: 'a key the hub does not know',
      status: 403,
      code: 'UNTRUSTED_KEY',
      head: async () => Buffer.concat([whole('manifest', 'manifest.json', manifest), whole('signature', 'manifest.json.minisig', await resign(manifest, stranger))]),
    },
    {
      name: 'the signature first, then a manifest changed after signing',
      status: 400,
      code: 'SIGNATURE_INVALID',
      head: async () => {
        const tampered = Buffer.from(manifest.toString('utf8').replace('"description": "', '"description": "evil '));
        return Buffer.concat([whole('signature', 'manifest.json.minisig', signature), whole('manifest', 'manifest.json', tampered)]);
      },
    },
    {
      name: 'a validly signed manifest for another URL',
      status: 422,
      code: 'MANIFEST_INVALID',
      target: 'services/demo-echo/1.0.1/linux-x64',
      head: async () => Buffer.concat([whole('manifest', 'manifest.json', manifest), whole('signature', 'manifest.json.minisig', signature)]),
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.status} ${c.code}, answered while the package still streams, nothing of it in .incoming`, async () => {
      const head = Buffer.concat([await c.head(), partHead('package', 'service.zip')]);
      const r = await trickle(hub, c.target ?? TARGET, head, pkg, (seen) => total(seen) > FEW_KB);
      expect(r.answer, `no answer; .incoming held up to ${r.maxIncoming} bytes`).not.toBeNull();
      expect(r.answer).toMatchObject({ status: c.status, body: { success: false, error: c.code } });
      expect(r.maxIncoming).toBeLessThanOrEqual(FEW_KB);
      expect(r.maxPackage).toBe(0);
      // Answered before the package was through: the hub did not wait for it.
      expect(r.sent).toBeLessThan(pkg.length);
      await nothingStored(hub, c.target === undefined ? '1.0.0' : '1.0.1');
    });
  }
});

describe('field order', () => {
  it('a package before the manifest and signature → 400 INVALID_REQUEST naming the order, nothing stored', async () => {
    const r = await trickle(hub, 'services/demo-echo/1.0.0/linux-x64', partHead('package', 'service.zip'), pkg, (seen) => total(seen) > FEW_KB);
    expect(r.answer).toMatchObject({ status: 400, body: { success: false, error: 'INVALID_REQUEST' } });
    const message = String(r.answer!.body.message);
    expect(message).toContain('"package"');
    expect(message).toMatch(/manifest.*signature.*first/);
    expect(r.maxPackage).toBe(0);
    await nothingStored(hub, '1.0.0');
  });

  it('a package between the manifest and its signature → 400 INVALID_REQUEST, nothing stored', async () => {
    const head = Buffer.concat([whole('manifest', 'manifest.json', manifest), partHead('package', 'service.zip')]);
    const r = await trickle(hub, 'services/demo-echo/1.0.0/linux-x64', head, pkg, (seen) => total(seen) > FEW_KB);
    expect(r.answer).toMatchObject({ status: 400, body: { error: 'INVALID_REQUEST' } });
    expect(String(r.answer!.body.message)).toContain('"signature"');
    expect(r.maxPackage).toBe(0);
    await nothingStored(hub, '1.0.0');
  });
});

describe('a package longer than its signed size', () => {
  it('is cut off at the signed size → 413 SIZE_EXCEEDED, nothing kept', async () => {
    const signedSize = pkg.length;
    const longer = Buffer.concat([pkg, Buffer.alloc(16 * CHUNK, 0x5a)]);
    const head = signedUploadHead();
    const r = await trickle(hub, 'services/demo-echo/1.0.0/linux-x64', head, longer, (seen) => [...seen.values()].some((s) => s > signedSize));
    expect(r.answer, `no answer; the package grew to ${r.maxPackage} bytes`).toMatchObject({ status: 413, body: { success: false, error: 'SIZE_EXCEEDED' } });
    expect(r.maxPackage).toBeLessThanOrEqual(signedSize);
    await nothingStored(hub, '1.0.0');
  });
});

describe('an early answer reaches a client that is slow to read (lingering close)', () => {
  it('the 413 arrives even when the client reads nothing until long after it, still sending meanwhile', async () => {
    const head = signedUploadHead();
    const body = Buffer.concat([head, pkg, Buffer.alloc(32 * CHUNK, 0x5a)]);
    const u = new URL(hub.url);
    const sock = net.connect(Number(u.port), u.hostname);
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    sock.pause(); // nothing is read until the end: what arrives waits in the kernel
    const got: Buffer[] = [];
    let failed: Error | null = null;
    sock.on('error', (err) => (failed = err));
    sock.write(
      `PUT /api/admin/services/demo-echo/1.0.0/linux-x64 HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${TEST_TOKEN}\r\n` +
        `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: ${body.length + 64 * CHUNK}\r\n\r\n`,
    );
    // All of it, then more for a while: past the signed size the hub answers and closes; these
    // sends would meet an RST if it closed at once.
    for (let off = 0; off < body.length && !sock.destroyed; off += CHUNK) {
      sock.write(body.subarray(off, off + CHUNK));
      await pause(2);
    }
    const until = Date.now() + 1_000;
    while (Date.now() < until && !sock.destroyed) {
      sock.write(Buffer.alloc(CHUNK, 0x5a));
      await pause(20);
    }
    sock.on('data', (c: Buffer) => got.push(c));
    sock.resume();
    await new Promise<void>((resolve) => {
      sock.once('close', () => resolve());
      setTimeout(resolve, 10_000).unref();
    });
    sock.destroy();
    const text = Buffer.concat(got).toString('utf8');
    expect(text, `nothing read (${String(failed)})`).toMatch(/^HTTP\/1\.1 413 /);
    expect(text).toContain('SIZE_EXCEEDED');
    await nothingStored(hub, '1.0.0');
  });
});

describe('free disk is checked against the signed size before anything is accepted', () => {
  it('a signed size beyond the free space → 507 INSUFFICIENT_DISK, nothing stored', async () => {
    const roomy = await startHub(await tempDir(), [key], { maxUploadBytes: Number.MAX_SAFE_INTEGER });
    const m = JSON.parse(manifest.toString('utf8')) as { archive: { size: number } };
    m.archive.size = 2 ** 50; // a pebibyte
    const huge = Buffer.from(`${JSON.stringify(m, null, 2)}\n`);
    const head = Buffer.concat([whole('manifest', 'manifest.json', huge), whole('signature', 'manifest.json.minisig', await resign(huge, key)), partHead('package', 'service.zip')]);
    const r = await trickle(roomy, 'services/demo-echo/1.0.0/linux-x64', head, pkg, (seen) => total(seen) > FEW_KB);
    expect(r.answer).toMatchObject({ status: 507, body: { success: false, error: 'INSUFFICIENT_DISK' } });
    expect(r.maxPackage).toBe(0);
    await nothingStored(roomy, '1.0.0');
  });
});

describe('`modelhub publish` sends the manifest and its signature first', () => {
  async function fieldsSent(r: BuiltRelease): Promise<string[]> {
    let fields: string[] = [];
    const capture: typeof fetch = async (_url, init) => {
      const body = init?.body;
      if (!(body instanceof FormData)) throw new Error('expected a FormData body');
      fields = [...body.keys()];
      return new Response(JSON.stringify({ sha256: '0'.repeat(64), size_bytes: 0, key_id: key.keyId }), { status: 201 });
    };
    await publishDir(r.dir, { hub: 'http://hub.invalid', token: TEST_TOKEN, fetch: capture });
    return fields;
  }

  it('for a service and for a model; and the real hub accepts both', async () => {
    expect(await fieldsSent(rel)).toEqual(['manifest', 'signature', 'package']);
    const model = await buildModelRelease(work, key, { id: 'order-model', version: '1.0.0', files: { 'a.bin': 1000, 'b/c.bin': 10 } });
    const modelFields = await fieldsSent(model);
    expect(modelFields.slice(0, 2)).toEqual(['manifest', 'signature']);
    expect(modelFields.slice(2).sort()).toEqual(['file:a.bin', 'file:b/c.bin']);
    await expect(publishDir(rel.dir, { hub: hub.url, token: TEST_TOKEN })).resolves.toMatchObject({ id: 'demo-echo', version: '1.0.0' });
    await expect(publishDir(model.dir, { hub: hub.url, token: TEST_TOKEN })).resolves.toMatchObject({ id: 'order-model', version: '1.0.0' });
  });
});
