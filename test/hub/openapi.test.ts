// The OpenAPI document against the hub itself: the checked-in docs/openapi.json is what the
// code generates (regenerate with `npm run build && node dist/scripts/openapi.js`), every route
// fastify registered is documented and nothing else is, and real answers of a real hub — every
// operation, its failures included — have a status, headers and a body the document lists,
// parsed with the same strict zod schemas the document was generated from.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { packageVersion } from '../../src/meta/package.js';
import { buildOpenApiDocument } from '../../hub/openapi/document.js';
import { errorEnvelopeSchema, HUB_SCHEMAS, hubIndexSchema } from '../../hub/openapi/schemas.js';
import { openApiText } from '../../hub/openapi/text.js';
import type { Hub } from '../../hub/server.js';
import { openApiFile } from '../../scripts/openapi.js';
import { delegationDocument, revocationDocument, rotationDocument } from '../../src/metadata/statements.js';
import { modelManifestSchema, serviceManifestSchema, type Manifest } from '../../src/schemas/manifest.js';
import { readPublicKeyFile, readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

type Json = Record<string, unknown>;
interface DocResponse {
  headers?: Record<string, unknown>;
  content?: Record<string, { schema?: Json }>;
}
interface DocOperation {
  operationId: string;
  responses: Record<string, DocResponse>;
}

const doc = buildOpenApiDocument(packageVersion());
const paths = doc.paths as unknown as Record<string, Record<string, DocOperation>>;
const SCHEMAS: Record<string, z.ZodType> = { ...HUB_SCHEMAS, ServiceManifest: serviceManifestSchema, ModelManifest: modelManifestSchema };

let work: string;
let key: TestKey;
let hub: Hub;
let v1: BuiltRelease;
let v2: BuiltRelease;
let win: BuiltRelease;
let model: BuiltRelease;
/** operationId → statuses seen from the real hub. */
const exercised = new Map<string, Set<string>>();

/** fastify's `/a/:id/*` → OpenAPI's `/a/{id}/{path}`. */
function openApiPathOf(url: string): string {
  return url.replace(/:(\w+)/g, '{$1}').replace(/\*$/, '{path}');
}

function templateRegex(template: string): RegExp {
  const escaped = template.replace(/[.+?^$()|[\]\\]/g, '\\$&');
  return new RegExp('^' + escaped.replace(/\{path\}/g, '.+').replace(/\{\w+\}/g, '[^/]+') + '$');
}

function operationFor(method: string, pathname: string): DocOperation {
  const m = method.toLowerCase();
  const found = Object.entries(paths).filter(([template, item]) => item[m] !== undefined && templateRegex(template).test(pathname));
  expect(found.map(([t]) => t), `${method} ${pathname} matches one documented path`).toHaveLength(1);
  return found[0]![1][m]!;
}

function refName(schema: Json): string {
  const ref = schema.$ref;
  if (typeof ref !== 'string' || !ref.startsWith('#/components/schemas/')) throw new Error(`not a component ref: ${JSON.stringify(schema)}`);
  return ref.slice('#/components/schemas/'.length);
}

/** Parses a JSON body with the zod schema behind a documented response schema. */
function expectMatches(schema: Json, value: unknown, where: string): void {
  if (Array.isArray(schema.allOf)) {
    // An error envelope narrowed to the codes this answer may carry.
    const [base, narrow] = schema.allOf as [Json, { properties: { error: { enum: string[] } } }];
    expectMatches(base, value, where);
    expect(narrow.properties.error.enum, `${where}: error code is documented`).toContain((value as { error: string }).error);
    return;
  }
  const result = SCHEMAS[refName(schema)]!.safeParse(value);
  expect(result.success ? [] : result.error.issues, `${where}: body matches ${refName(schema)}`).toEqual([]);
}

interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
  json: () => unknown;
}

/** One real request, checked against the document; the answer for further assertions. */
async function call(method: string, url: string, init: RequestInit = {}, base = hub.url): Promise<Answer> {
  const res = await fetch(base + url, { ...init, method });
  const body = Buffer.from(await res.arrayBuffer());
  const pathname = new URL(base + url).pathname;
  const where = `${method} ${url} → ${res.status}`;
  const op = operationFor(method, pathname);
  const documented = op.responses[String(res.status)];
  expect(documented, `${where}: status is documented`).toBeDefined();
  for (const name of Object.keys(documented!.headers ?? {})) expect(res.headers.has(name), `${where}: header ${name}`).toBe(true);
  const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
  if (documented!.content === undefined || method === 'HEAD') {
    expect(body.length, `${where}: no body`).toBe(0);
  } else {
    expect(Object.keys(documented!.content), `${where}: content type`).toContain(type);
    const schema = documented!.content[type]?.schema;
    if (type === 'application/json' && schema !== undefined) expectMatches(schema, JSON.parse(body.toString('utf8')), where);
  }
  const seen = exercised.get(op.operationId) ?? new Set<string>();
  exercised.set(op.operationId, seen.add(String(res.status)));
  return { status: res.status, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) as unknown };
}

const auth = (token = TEST_TOKEN): Record<string, string> => ({ authorization: `Bearer ${token}` });
const NODE_TOKEN = 'test-node-token-0123456789';

/** The multipart body of a publish; `bytes` replaces the package or the first model file. */
async function releaseForm(r: BuiltRelease, override: { manifest?: Buffer; signature?: string; bytes?: Buffer } = {}): Promise<FormData> {
  const form = new FormData();
  form.append('manifest', new Blob([override.manifest ?? (await readFile(path.join(r.dir, 'manifest.json')))]), 'manifest.json');
  form.append('signature', new Blob([override.signature ?? (await readFile(path.join(r.dir, 'manifest.json.minisig')))]), 'manifest.json.minisig');
  const m: Manifest = r.manifest;
  if (m.kind === 'service') {
    form.append('package', new Blob([override.bytes ?? (await readFile(path.join(r.dir, 'service.zip')))]), 'service.zip');
  } else {
    for (const [i, f] of m.files.entries()) {
      const bytes = i === 0 && override.bytes !== undefined ? override.bytes : await readFile(path.join(r.dir, f.path));
      form.append(`file:${f.path}`, new Blob([bytes]), path.posix.basename(f.path));
    }
  }
  return form;
}

function publishUrl(r: BuiltRelease): string {
  const m = r.manifest;
  return m.kind === 'service' ? `/api/admin/services/${m.id}/${m.version}/${m.platform}` : `/api/admin/models/${m.id}/${m.version}`;
}

beforeAll(async () => {
  work = await tempDir();
  key = await makeKey(work);
  hub = await startHub(work, [key], { nodeToken: NODE_TOKEN });
  v1 = await buildServiceRelease(work, key, { version: '1.0.0' });
  v2 = await buildServiceRelease(work, key, { version: '1.1.0' });
  win = await buildServiceRelease(work, key, { version: '1.1.0', platform: 'windows-x64' });
  model = await buildModelRelease(work, key, { version: '1.0.0' });
});

describe('docs/openapi.json', () => {
  it('is what the code generates', async () => {
    const onDisk = await readFile(openApiFile(), 'utf8').catch(() => '(missing)');
    expect(onDisk, 'stale: run `npm run build && node dist/scripts/openapi.js`').toBe(openApiText(packageVersion()));
  });

  it('is OpenAPI 3.1 with this package version', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: 'modelhub hub', version: packageVersion() });
  });

  it('documents every route fastify registered, and no other', () => {
    const registered = new Set(hub.routes.map((r) => `${r.method} ${openApiPathOf(r.url)}`));
    const documented = new Set(Object.entries(paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`)));
    // fastify answers HEAD for every GET; the document spells HEAD out only for /storage files.
    const undocumented = [...registered].filter((r) => !documented.has(r) && !(r.startsWith('HEAD ') && documented.has(r.replace(/^HEAD /, 'GET '))));
    expect(undocumented).toEqual([]);
    expect([...documented].filter((d) => !registered.has(d))).toEqual([]);
    expect(hub.routes.length).toBeGreaterThan(20);
  });
});

describe('the hub answers as documented', () => {
  it('GET / is the index and /api/openapi.json the checked-in document', async () => {
    const index = await call('GET', '/');
    expect(hubIndexSchema.parse(index.json()).version).toBe(packageVersion());
    const served = await call('GET', '/api/openapi.json');
    expect(served.body.toString('utf8')).toBe(await readFile(openApiFile(), 'utf8'));
    await call('GET', '/health');
  });

  it('publish: 201 for each kind, then every refusal', async () => {
    const put = async (r: BuiltRelease, o: { url?: string; manifest?: Buffer; bytes?: Buffer; token?: string } = {}): Promise<number> =>
      (await call('PUT', o.url ?? publishUrl(r), { body: await releaseForm(r, o), headers: auth(o.token) })).status;
    for (const r of [v1, v2, win, model]) expect(await put(r)).toBe(201);
    const stranger = await makeKey(work, 'stranger');
    const fresh = [await buildServiceRelease(work, key, { version: '3.0.0' }), await buildModelRelease(work, key, { version: '3.0.0' })];
    const foreign = [await buildServiceRelease(work, stranger, { version: '4.0.0' }), await buildModelRelease(work, stranger, { version: '4.0.0' })];
    for (const [i, r] of fresh.entries()) {
      const tampered = Buffer.from(r.manifestText.replace('"3.0.0"', '"3.0.1"'));
      expect(await put(r, { manifest: tampered })).toBe(400);
      expect(await put(r, { bytes: Buffer.from('not the signed bytes') })).toBe(422);
      expect(await put(r, { url: publishUrl(r).replace('3.0.0', '3.0.2') })).toBe(422);
      expect(await put(foreign[i]!)).toBe(403);
      expect(await put(r, { token: 'wrong' })).toBe(401);
      expect(await put([v1, model][i]!)).toBe(409);
    }
    expect((await call('PUT', publishUrl(fresh[0]!), { body: 'x', headers: { ...auth(), 'content-type': 'text/plain' } })).status).toBe(400);
    // 507: a signed size beyond the free disk, refused before the package is read.
    const roomy = await startHub(await tempDir(), [key], { maxUploadBytes: Number.MAX_SAFE_INTEGER });
    const secret = await readSecretKeyFile(key.key);
    for (const r of fresh) {
      const m = JSON.parse(r.manifestText) as { archive?: { size: number }; files: { size: number }[] };
      if (m.archive !== undefined) m.archive.size = 2 ** 50;
      else m.files[0]!.size = 2 ** 50;
      const huge = Buffer.from(JSON.stringify(m));
      const body = await releaseForm(r, { manifest: huge, signature: formatSignature(signBytes(huge, secret)) });
      expect((await call('PUT', publishUrl(r), { body, headers: auth() }, roomy.url)).status).toBe(507);
    }
  });

  it('size limit, and the rate limit on failed authentications', async () => {
    const small = await startHub(await tempDir(), [key], { maxUploadBytes: 64, authFailureLimit: 1 });
    for (const r of [v1, model]) {
      expect((await call('PUT', publishUrl(r), { body: await releaseForm(r), headers: auth() }, small.url)).status).toBe(413);
    }
    type Init = (headers: Record<string, string>) => Promise<RequestInit>;
    const attempts: [string, string, Init][] = [
      ['PUT', publishUrl(v1), async (headers) => ({ body: await releaseForm(v1), headers })],
      ['PUT', publishUrl(model), async (headers) => ({ body: await releaseForm(model), headers })],
      ['POST', '/api/model-usage', async (headers) => ({ body: '{}', headers: { ...headers, 'content-type': 'application/json' } })],
      ['POST', '/api/admin/services/demo-echo/1.0.0/stable', async (headers) => ({ headers })],
      ['POST', '/api/admin/models/demo-tiny-nmt/1.0.0/stable', async (headers) => ({ headers })],
      ['PUT', '/api/admin/metadata/delegation', async (headers) => ({ body: '{}', headers: { ...headers, 'content-type': 'application/json' } })],
      ['POST', '/api/admin/services/demo-echo/1.0.0/rollout', async (headers) => ({ body: '{}', headers: { ...headers, 'content-type': 'application/json' } })],
      ['POST', '/api/admin/keys/statements', async (headers) => ({ body: '{}', headers: { ...headers, 'content-type': 'application/json' } })],
    ];
    // Counted per client and route: each route's first failure is 401, the next one 429.
    for (const [method, url, init] of attempts) {
      expect((await call(method, url, await init({}), small.url)).status).toBe(401);
      expect((await call(method, url, await init(auth('wrong')), small.url)).status).toBe(429);
    }
  });

  it('staged rollout', async () => {
    const post = (version: string, body: unknown, headers = auth()): Promise<Answer> =>
      call('POST', `/api/admin/services/demo-echo/${version}/rollout`, { body: JSON.stringify(body), headers: { ...headers, 'content-type': 'application/json' } });
    expect((await post('1.0.0', { percent: 30 })).json()).toEqual({ success: true, id: 'demo-echo', version: '1.0.0', rollout: 30 });
    expect((await post('1.0.0', { percent: 100 })).json()).toMatchObject({ rollout: 100 });
    expect((await post('1.0.0', { percent: 101 })).status).toBe(400);
    expect((await post('7.0.0', { percent: 10 })).status).toBe(404);
    expect((await post('1.0.0', { percent: 10 }, {})).status).toBe(401);
  });

  it('mark stable', async () => {
    for (const [kind, id] of [['services', 'demo-echo'], ['models', 'demo-tiny-nmt']] as const) {
      expect((await call('POST', `/api/admin/${kind}/${id}/1.0.0/stable`, { headers: auth() })).json()).toMatchObject({ stable: true });
      expect((await call('POST', `/api/admin/${kind}/${id}/7.0.0/stable`, { headers: auth() })).status).toBe(404);
      expect((await call('POST', `/api/admin/${kind}/${id}/latest/stable`, { headers: auth() })).status).toBe(400);
      expect((await call('POST', `/api/admin/${kind}/${id}/1.0.0/stable`)).status).toBe(401);
    }
  });

  it('model demand', async () => {
    const post = (body: string, type = 'application/json', token = TEST_TOKEN): Promise<Answer> =>
      call('POST', '/api/model-usage', { body, headers: { ...auth(token), 'content-type': type } });
    expect((await post(JSON.stringify({ model_id: 'whisper', count: 9 }))).json()).toEqual({ success: true, model_id: 'whisper', request_count: 9 });
    expect((await post(JSON.stringify({ model_id: 'marian' }))).status).toBe(200);
    expect((await post(JSON.stringify({ model_id: '../x', count: -1 }))).status).toBe(400);
    expect((await post('model_id=x', 'text/plain')).status).toBe(400);
    expect((await post('<x/>', 'application/xml')).status).toBe(415);
    expect((await post('{}', 'application/json', 'wrong')).status).toBe(401);
    expect((await call('GET', '/api/model-usage/ranking?limit=1')).json()).toEqual([{ model_id: 'whisper', request_count: 9, unavailable_count: 0, rank: 1 }]);
    expect((await call('GET', '/api/model-usage/ranking')).json()).toHaveLength(2);
    expect((await call('GET', '/api/model-usage/ranking?limit=0')).status).toBe(400);
  });

  it('node reports: unmet demand', async () => {
    const report = { type: 'model_unavailable', node_id: 'node-1', model_id: 'whisper', version: null, reason: 'not_installed', ts: new Date().toISOString() };
    const post = (body: string, o: { type?: string; token?: string; base?: string } = {}): Promise<Answer> =>
      call('POST', '/api/model-unavailable', { body, headers: { ...auth(o.token ?? NODE_TOKEN), 'content-type': o.type ?? 'application/json' } }, o.base);
    expect((await post(JSON.stringify(report))).json()).toEqual({ success: true });
    expect((await post(JSON.stringify({ ...report, reason: 'lost' }))).status).toBe(400);
    expect((await post('<x/>', { type: 'application/xml' })).status).toBe(415);
    expect((await post(JSON.stringify(report), { token: TEST_TOKEN })).status).toBe(401);
    const ranked = (await call('GET', '/api/model-usage/ranking')).json() as { model_id: string; unavailable_count: number }[];
    expect(ranked.find((r) => r.model_id === 'whisper')).toMatchObject({ unavailable_count: 1 });
    const limited = await startHub(await tempDir(), [key], { nodeToken: NODE_TOKEN, nodeReportLimit: 1 });
    expect((await post(JSON.stringify(report), { base: limited.url })).status).toBe(202);
    expect((await post(JSON.stringify(report), { base: limited.url })).status).toBe(429);
  });

  it('signed metadata: the key, the snapshot, the delegation and key statements', async () => {
    expect((await call('GET', '/api/metadata/key')).body.toString()).toContain('minisign public key');
    await call('HEAD', '/api/metadata/key');
    const snap = (await call('GET', '/api/metadata/snapshot')).json() as { serial: number };
    expect(snap.serial).toBeGreaterThan(0);
    expect((await call('GET', '/api/metadata/snapshot.minisig')).body.toString()).toContain('trusted comment:');
    const delegation = (await call('GET', '/api/metadata/delegation')).body.toString('utf8');
    const delegationSig = (await call('GET', '/api/metadata/delegation.minisig')).body.toString('utf8');
    expect((await call('GET', '/api/keys/statements')).json()).toEqual([]);
    const uncertified = await startHub(await tempDir(), [key], { certify: false });
    expect((await call('GET', '/api/metadata/delegation', {}, uncertified.url)).status).toBe(404);
    expect((await call('GET', '/api/metadata/delegation.minisig', {}, uncertified.url)).status).toBe(404);

    const put = (body: unknown, base = hub.url): Promise<Answer> =>
      call('PUT', '/api/admin/metadata/delegation', { body: JSON.stringify(body), headers: { ...auth(), 'content-type': 'application/json' } }, base);
    expect((await put({ text: delegation, signature: delegationSig })).json()).toMatchObject({ success: true });
    expect((await put({ text: delegation })).status).toBe(400);
    expect((await put({ text: delegation.replace('"metadata"', '"metadata" '), signature: delegationSig })).status).toBe(400);
    const stranger = await makeKey(await tempDir(), 'stranger');
    expect((await put(delegationDocument(hub.metadata.publicKey, await readSecretKeyFile(stranger.key), Date.now(), 86_400_000))).status).toBe(403);
    // A delegation of another hub's key is refused by this one.
    expect((await put(delegationDocument(uncertified.metadata.publicKey, await readSecretKeyFile(key.key), Date.now(), 86_400_000))).status).toBe(422);
    expect((await call('PUT', '/api/admin/metadata/delegation', { body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(401);

    // On the other hub: a rotation changes which keys it accepts.
    const post = (body: unknown): Promise<Answer> =>
      call('POST', '/api/admin/keys/statements', { body: JSON.stringify(body), headers: { ...auth(), 'content-type': 'application/json' } }, uncertified.url);
    const rotation = rotationDocument(await readSecretKeyFile(key.key), await readPublicKeyFile(stranger.pub), Date.now());
    expect((await post(rotation)).json()).toEqual({ success: true, kind: 'rotation', added: true });
    expect((await post(rotation)).json()).toEqual({ success: true, kind: 'rotation', added: false });
    expect((await post({ text: 'x' })).status).toBe(400);
    const other = await makeKey(await tempDir(), 'other');
    expect((await post(revocationDocument(stranger.keyId, await readSecretKeyFile(other.key), Date.now()))).status).toBe(403);
    expect((await post({ ...rotation, text: rotation.text.replace('rotation', 'rotatio') })).status).toBe(400);
    // Signed by the trusted key, but neither a rotation nor a revocation.
    expect((await post({ text: '{}', signature: formatSignature(signBytes(Buffer.from('{}'), await readSecretKeyFile(key.key))) })).status).toBe(422);
    expect((await call('POST', '/api/admin/keys/statements', { body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(401);
    expect(((await call('GET', '/api/keys/statements', {}, uncertified.url)).json() as unknown[]).length).toBe(1);
    // The rotated-to key is accepted for uploads now.
    expect(((await call('GET', '/api/keys', {}, uncertified.url)).json() as { key_id: string }[]).map((k) => k.key_id)).toContain(stranger.keyId);
  });

  it('catalog', async () => {
    expect((await call('GET', '/api/models')).json()).toHaveLength(1);
    await call('GET', '/api/models/demo-tiny-nmt');
    expect((await call('GET', '/api/models/ghost')).status).toBe(404);
    expect((await call('GET', '/api/services')).json()).toHaveLength(1);
    await call('GET', '/api/services?platform=windows-x64');
    expect((await call('GET', '/api/services?platform=amiga')).status).toBe(400);
    await call('GET', '/api/services/demo-echo');
    expect((await call('GET', '/api/services/ghost')).status).toBe(404);
    await call('GET', '/api/services/demo-echo/1.1.0/checksum?platform=windows-x64');
    await call('GET', '/api/services/demo-echo/1.0.0/checksum');
    for (const miss of ['ghost/1.0.0', 'demo-echo/9.9.9', 'demo-echo/1.0.0']) {
      const r = await call('GET', `/api/services/${miss}/checksum?platform=darwin-arm64`);
      expect(r.status).toBe(404);
    }
    const keys = await call('GET', '/api/keys');
    expect(keys.json()).toEqual([expect.objectContaining({ key_id: key.keyId.toUpperCase() })]);
  });

  it('signed manifests: whole, byte for byte, with an ETag', async () => {
    const manifests: [string, string, string | undefined][] = [
      ['/api/services/demo-echo/1.1.0/linux-x64/manifest', '/api/services/demo-echo/1.1.0/darwin-x64/manifest', v2.manifestText],
      ['/api/services/demo-echo/1.1.0/linux-x64/manifest.minisig', '/api/services/ghost/1.1.0/linux-x64/manifest.minisig', undefined],
      ['/api/models/demo-tiny-nmt/1.0.0/manifest', '/api/models/demo-tiny-nmt/2.0.0/manifest', model.manifestText],
      ['/api/models/demo-tiny-nmt/1.0.0/manifest.minisig', '/api/models/ghost/1.0.0/manifest.minisig', undefined],
    ];
    for (const [url, miss, text] of manifests) {
      const whole = await call('GET', url);
      expect(whole.status).toBe(200);
      if (text !== undefined) expect(whole.body.toString('utf8')).toBe(text);
      expect((await call('GET', url, { headers: { 'if-none-match': whole.headers.get('etag')! } })).status).toBe(304);
      expect((await call('GET', miss)).status).toBe(404);
    }
  });

  it('stored files: 200, HEAD, 206, 304, 416 and misses', async () => {
    const files = [
      '/storage/services/demo-echo/1.1.0/linux-x64/service.zip',
      '/storage/services/demo-echo/1.1.0.zip?platform=windows-x64',
      '/storage/models/demo-tiny-nmt/1.0.0/tokenizer/vocab.txt',
    ];
    for (const url of files) {
      const whole = await call('GET', url);
      expect(whole.status).toBe(200);
      const head = await call('HEAD', url);
      expect(head.headers.get('content-length')).toBe(String(whole.body.length));
      const part = await call('GET', url, { headers: { range: 'bytes=1-10' } });
      expect(part.status).toBe(206);
      expect(part.body.equals(whole.body.subarray(1, 11))).toBe(true);
      expect((await call('GET', url, { headers: { 'if-none-match': whole.headers.get('etag')! } })).status).toBe(304);
      expect((await call('GET', url, { headers: { range: `bytes=${whole.body.length + 5}-` } })).status).toBe(416);
    }
    await call('GET', '/storage/services/demo-echo/1.0.0.zip');
    expect((await call('GET', '/storage/services/demo-echo/9.0.0/linux-x64/service.zip')).status).toBe(404);
    expect((await call('GET', '/storage/services/demo-echo/1.0.0.zip?platform=windows-x64')).status).toBe(404);
    expect((await call('GET', '/storage/services/demo-echo/1.0.0.tar')).status).toBe(404);
    expect((await call('HEAD', '/storage/services/demo-echo/9.0.0/linux-x64/service.zip')).status).toBe(404);
    expect((await call('GET', '/storage/models/demo-tiny-nmt/1.0.0/nope.bin')).status).toBe(404);
    expect((await call('GET', '/storage/models/demo-tiny-nmt/3.0.0/model.bin')).status).toBe(404);
    // A malformed percent-encoding: fastify refuses it before routing, still in the envelope.
    expect((await call('GET', '/storage/models/demo-tiny-nmt/1.0.0/%E0%A4%A')).status).toBe(400);
  });

  it('unknown routes answer the error envelope', async () => {
    const res = await fetch(hub.url + '/api/nothing-here');
    expect(res.status).toBe(404);
    expect(errorEnvelopeSchema.parse(await res.json())).toMatchObject({ error: 'NOT_FOUND', details: {} });
  });

  it('every documented operation was exercised with each documented status', () => {
    // 500 falls under `default`; HEAD shares its GET's handler, so GET is enough.
    const missing = Object.values(paths).flatMap((item) =>
      Object.entries(item).filter(([method]) => method !== 'head').flatMap(([, op]) =>
        Object.keys(op.responses)
          .filter((status) => status !== 'default' && !(exercised.get(op.operationId)?.has(status) ?? false))
          .map((status) => `${op.operationId} ${status}`),
      ),
    );
    expect(missing).toEqual([]);
  });
});
