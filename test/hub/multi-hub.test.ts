// Several hubs on one PostgreSQL catalog and one storage folder (SPEC §12, issue 10 part 1):
// what one publishes the others serve at once; a publish race gives one 201 and one 409 and
// leaves the winner's files intact; a hub (re)starting while another publishes touches none of
// its files; a hub killed mid-publish — mid-upload, or between moving the files into place and
// its commit — leaves nothing any hub lists or serves; a node installs through the other hub;
// range requests spread over both hubs all succeed.
import { postgres } from '../helpers/postgres.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, readdir, readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { REPO, runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function target(r: BuiltRelease): string {
  if (r.manifest.kind !== 'service') throw new Error('a service release expected');
  return `/api/admin/services/${r.manifest.id}/${r.manifest.version}/${r.manifest.platform}`;
}

async function put(base: string, r: BuiltRelease): Promise<Answer> {
  const form = new FormData();
  for (const [name, file] of [['manifest', 'manifest.json'], ['signature', 'manifest.json.minisig'], ['package', 'service.zip']] as const) {
    form.append(name, new Blob([await readFile(path.join(r.dir, file))]), file);
  }
  const res = await fetch(`${base}${target(r)}`, { method: 'PUT', body: form, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not reached: ${what}`);
}

/**
 * A publish sent by hand: the manifest, its signature and half the package now; finish() sends
 * the rest and answers the hub's response.
 */
async function startUpload(base: string, r: BuiltRelease): Promise<{ finish: () => Promise<Answer>; abort: () => void }> {
  const boundary = 'modelhubmultihubboundary';
  const pkg = await readFile(path.join(r.dir, 'service.zip'));
  const u = new URL(base);
  const req = http.request({
    host: u.hostname,
    port: u.port,
    method: 'PUT',
    path: target(r),
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
  });
  req.on('error', () => undefined);
  const response = new Promise<Answer>((resolve, reject) => {
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
      res.on('error', reject);
    });
    req.once('error', reject);
  });
  response.catch(() => undefined);
  for (const [name, file] of [['manifest', 'manifest.json'], ['signature', 'manifest.json.minisig']] as const) {
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${file}"\r\n\r\n`);
    req.write(await readFile(path.join(r.dir, file)));
    req.write('\r\n');
  }
  req.write(`--${boundary}\r\nContent-Disposition: form-data; name="package"; filename="service.zip"\r\nContent-Type: application/zip\r\n\r\n`);
  req.write(pkg.subarray(0, pkg.length >> 1));
  return {
    finish: () => {
      req.end(Buffer.concat([pkg.subarray(pkg.length >> 1), Buffer.from(`\r\n--${boundary}--\r\n`)]));
      return response;
    },
    abort: () => req.destroy(),
  };
}

/** The upload folders in <storage>/.incoming holding some package bytes already. */
async function uploadsInFlight(storage: string): Promise<string[]> {
  const incoming = path.join(storage, '.incoming');
  const names = await readdir(incoming).catch(() => [] as string[]);
  const out: string[] = [];
  for (const n of names) {
    const s = await stat(path.join(incoming, n, 'service.zip')).catch(() => null);
    if (s !== null && s.size > 0) out.push(n);
  }
  return out;
}

/** `hub serve` as its own process on the shared storage folder and catalog. */
async function hubProcess(storage: string, db: string, key: TestKey): Promise<{ url: string; child: ChildProcess; stop: (signal: NodeJS.Signals) => Promise<void> }> {
  const child = spawnCli(['hub', 'serve', '--storage', storage, '--db', db, '--port', '0', '--publisher-key', key.pub, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
  const ready = await waitForLine(child, 'ready');
  return {
    url: String(ready.url),
    child,
    stop: (signal) =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}

/**
 * A hub's publish as commit.ts runs it, in its own process, held inside its catalog transaction
 * once the files are in place: `go()` lets it commit, `kill()` kills it there (kill -9).
 */
function heldPublish(db: string, row: Record<string, unknown>, from: string, to: string): { placed: Promise<void>; go: () => Promise<number | null>; kill: () => Promise<void> } {
  const script = `
    import { mkdir, rename } from 'node:fs/promises';
    import path from 'node:path';
    const { PgCatalogStore } = await import(process.env.STORE);
    const store = await PgCatalogStore.open(process.env.DB);
    const go = new Promise((resolve) => process.stdin.once('data', resolve));
    const ok = await store.publish(JSON.parse(process.env.ROW), async () => {
      await mkdir(path.dirname(process.env.TO), { recursive: true });
      await rename(process.env.FROM, process.env.TO);
      process.stdout.write('placed\\n');
      await go;
    });
    await store.close();
    process.exit(ok ? 0 : 3);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, STORE: path.join(REPO, 'dist', 'hub', 'catalog', 'pg-store.js'), DB: db, ROW: JSON.stringify(row), FROM: from, TO: to },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const placed = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => {
      if (c.toString('utf8').includes('placed')) resolve();
    });
    void exited.then((code) => reject(new Error(`the publishing process exited (${code}) before placing: ${stderr}`)));
  });
  placed.catch(() => undefined);
  return {
    placed,
    go: () => {
      child.stdin?.write('go\n');
      return exited;
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** What the catalog holds for a built service release, as the hub would insert it. */
function rowOf(r: BuiltRelease, key: TestKey): Record<string, unknown> {
  if (r.manifest.kind !== 'service') throw new Error('a service release expected');
  return {
    kind: 'service',
    id: r.manifest.id,
    version: r.manifest.version,
    platform: r.manifest.platform,
    size_bytes: r.manifest.archive.size,
    sha256: r.manifest.archive.sha256,
    manifest: r.manifestText,
    key_id: key.keyId,
    stable: 0,
    created_at: r.manifest.created_at,
    published_at: new Date().toISOString(),
  };
}

async function bytesOf(url: string): Promise<{ status: number; bytes: Buffer }> {
  const res = await fetch(url);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

describe.skipIf(!postgres.available)('hubs sharing one PostgreSQL catalog and one storage folder', () => {
  let work: string;
  let storage: string;
  let db: string;
  let key: TestKey;
  let a: Hub;
  let b: Hub;

  beforeAll(async () => {
    db = await postgres.newDatabase();
    work = await tempDir();
    storage = path.join(work, 'storage');
    key = await makeKey(work);
    // One storage folder: both load its metadata.key, and the publisher certifies it for both.
    a = await startHub(work, [key], { db });
    b = await startHub(work, [key], { db });
  });

  it('what one hub publishes the other serves at once', async () => {
    const r = await buildServiceRelease(work, key, { id: 'seen-echo', version: '1.0.0' });
    expect((await put(a.url, r)).status).toBe(201);
    const zip = await readFile(path.join(r.dir, 'service.zip'));
    expect(await (await fetch(`${b.url}/api/services/seen-echo`)).json()).toMatchObject({ latest_version: '1.0.0' });
    expect((await bytesOf(`${b.url}/storage/services/seen-echo/1.0.0/linux-x64/service.zip`)).bytes.equals(zip)).toBe(true);
    expect(await (await fetch(`${b.url}/api/metadata/snapshot`)).text()).toContain('"seen-echo"');
    // Marked stable on B, seen on A.
    const stable = await fetch(`${b.url}/api/admin/services/seen-echo/1.0.0/stable`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(stable.status).toBe(200);
    expect(await (await fetch(`${a.url}/api/services/seen-echo`)).json()).toMatchObject({ stable_version: '1.0.0' });
  });

  it('a publish race: exactly one 201 and one 409 ALREADY_EXISTS, the winner intact and served by both hubs', async () => {
    for (const version of ['1.0.0', '1.0.1', '1.0.2']) {
      // Two different packages for one release, one sent to each hub at once.
      const one = await buildServiceRelease(work, key, { version, modelBytes: 2 << 20 });
      const two = await buildServiceRelease(work, key, { version, modelBytes: (2 << 20) + 1 });
      // Both uploads past the hubs' first check (the release is not there yet) and half sent,
      // then both finished at once: the catalog insert alone decides between them.
      const uploads = [await startUpload(a.url, one), await startUpload(b.url, two)] as const;
      await waitFor(async () => (await uploadsInFlight(storage)).length === 2, 'both uploads land in .incoming');
      const answers = await Promise.all([uploads[0].finish(), uploads[1].finish()]);
      expect(answers.map((x) => x.status).sort(), version).toEqual([201, 409]);
      const loser = answers.find((x) => x.status === 409)!;
      expect(loser.body).toMatchObject({ success: false, error: 'ALREADY_EXISTS', message: expect.stringContaining('releases are immutable') as unknown });
      const winner = answers[0].status === 201 ? one : two;
      const zip = await readFile(path.join(winner.dir, 'service.zip'));
      for (const hub of [a, b]) {
        const got = await bytesOf(`${hub.url}/storage/services/demo-echo/${version}/linux-x64/service.zip`);
        expect(got.status).toBe(200);
        expect(got.bytes.equals(zip), `${version} from ${hub.url}`).toBe(true);
        expect(await (await fetch(`${hub.url}/api/services/demo-echo/${version}/linux-x64/manifest`)).text()).toBe(winner.manifestText);
      }
      expect((await readFile(path.join(storage, 'services', 'demo-echo', version, 'linux-x64', 'service.zip'))).equals(zip)).toBe(true);
    }
    // Nothing left behind by the losers.
    expect(await uploadsInFlight(storage)).toEqual([]);
    await expect(stat(path.join(storage, '.orphans'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a hub (re)started during another hub’s publish touches none of its files; the publish succeeds', async () => {
    const r = await buildServiceRelease(work, key, { version: '2.0.0', modelBytes: 8 << 20 });
    const upload = await startUpload(a.url, r);
    await waitFor(async () => (await uploadsInFlight(storage)).length === 1, 'the upload lands in .incoming');
    const [inFlight] = await uploadsInFlight(storage);

    // Another hub process starts, is restarted, and starts again, all while the upload runs.
    let other = await hubProcess(storage, db, key);
    await other.stop('SIGTERM');
    other = await hubProcess(storage, db, key);
    try {
      expect(await uploadsInFlight(storage)).toEqual([inFlight]);
      expect((await fetch(`${other.url}/api/services/demo-echo/2.0.0/checksum?platform=linux-x64`)).status).toBe(404);

      const answer = await upload.finish();
      expect(answer.status, JSON.stringify(answer.body)).toBe(201);
      const zip = await readFile(path.join(r.dir, 'service.zip'));
      for (const url of [a.url, b.url, other.url]) {
        expect((await bytesOf(`${url}/storage/services/demo-echo/2.0.0/linux-x64/service.zip`)).bytes.equals(zip), url).toBe(true);
      }
      await expect(stat(path.join(storage, '.orphans'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await other.stop('SIGTERM');
    }

    // The narrowest window: files moved into place, the row not committed yet. A hub starting
    // then leaves the folder where it is (it has no row yet, like an orphan), and the commit lands.
    const next = await buildServiceRelease(work, key, { version: '2.1.0' });
    const staged = path.join(work, 'staged-2.1.0');
    await cp(next.dir, staged, { recursive: true });
    const finalDir = path.join(storage, 'services', 'demo-echo', '2.1.0', 'linux-x64');
    const held = heldPublish(db, rowOf(next, key), staged, finalDir);
    await held.placed;
    other = await hubProcess(storage, db, key);
    try {
      expect((await fetch(`${other.url}/storage/services/demo-echo/2.1.0/linux-x64/service.zip`)).status).toBe(404);
      expect((await stat(path.join(finalDir, 'service.zip'))).isFile()).toBe(true);
      expect(await held.go()).toBe(0);
      const zip = await readFile(path.join(next.dir, 'service.zip'));
      for (const url of [a.url, other.url]) {
        expect((await bytesOf(`${url}/storage/services/demo-echo/2.1.0/linux-x64/service.zip`)).bytes.equals(zip), url).toBe(true);
      }
      await expect(stat(path.join(storage, '.orphans'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await other.stop('SIGTERM');
    }
  });

  it('kill -9 of a hub mid-upload: the other hub lists and serves nothing of it, and the release can be published', async () => {
    const r = await buildServiceRelease(work, key, { version: '3.0.0', modelBytes: 8 << 20 });
    const doomed = await hubProcess(storage, db, key);
    const upload = await startUpload(doomed.url, r);
    await waitFor(async () => (await uploadsInFlight(storage)).length === 1, 'the upload lands in .incoming');
    await doomed.stop('SIGKILL');
    upload.abort();

    const versions = ((await (await fetch(`${a.url}/api/services/demo-echo`)).json()) as { versions: { version: string }[] }).versions.map((v) => v.version);
    expect(versions).not.toContain('3.0.0');
    expect(versions).toContain('2.0.0');
    expect(await (await fetch(`${b.url}/api/services/demo-echo/3.0.0/checksum?platform=linux-x64`)).json()).toMatchObject({ error: 'VERSION_NOT_FOUND' });
    expect((await fetch(`${b.url}/storage/services/demo-echo/3.0.0/linux-x64/service.zip`)).status).toBe(404);
    expect(await (await fetch(`${a.url}/api/metadata/snapshot`)).text()).not.toContain('"3.0.0"');
    await expect(stat(path.join(storage, 'services', 'demo-echo', '3.0.0'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await put(b.url, r)).status).toBe(201);
    expect((await bytesOf(`${a.url}/storage/services/demo-echo/3.0.0/linux-x64/service.zip`)).bytes.equals(await readFile(path.join(r.dir, 'service.zip')))).toBe(true);
  });

  it('kill -9 between moving the files into place and the commit: no hub lists it; `hub orphans --db` finds it; the release publishes after --quarantine', async () => {
    const r = await buildServiceRelease(work, key, { version: '4.0.0' });
    const staged = path.join(work, 'staged-4.0.0');
    await cp(r.dir, staged, { recursive: true });
    const finalDir = path.join(storage, 'services', 'demo-echo', '4.0.0', 'linux-x64');
    const held = heldPublish(db, rowOf(r, key), staged, finalDir);
    await held.placed;
    await held.kill();

    // The files are in place, the row never committed: listed and served by no hub.
    expect((await stat(path.join(finalDir, 'service.zip'))).isFile()).toBe(true);
    for (const hub of [a, b]) {
      const versions = ((await (await fetch(`${hub.url}/api/services/demo-echo`)).json()) as { versions: { version: string }[] }).versions.map((v) => v.version);
      expect(versions).not.toContain('4.0.0');
      expect((await fetch(`${hub.url}/storage/services/demo-echo/4.0.0/linux-x64/service.zip`)).status).toBe(404);
    }
    // A publish meanwhile is refused and replaces nothing.
    const refused = await put(a.url, r);
    expect(refused).toMatchObject({ status: 409, body: { error: 'ALREADY_EXISTS', details: { orphan: 'services/demo-echo/4.0.0/linux-x64' } } });
    expect((await stat(path.join(finalDir, 'service.zip'))).isFile()).toBe(true);

    // The operator's command, on the same catalog: listed, then moved aside, then published.
    const listed = await runCli(['hub', 'orphans', '--storage', storage, '--db', db, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.result).toMatchObject({ ok: true, orphans: [{ path: 'services/demo-echo/4.0.0/linux-x64' }] });
    const moved = await runCli(['hub', 'orphans', '--storage', storage, '--db', db, '--quarantine', '--json']);
    expect(moved.code, moved.stderr).toBe(0);
    const [stamp] = await readdir(path.join(storage, '.orphans'));
    expect(moved.result).toMatchObject({ orphans: [{ path: 'services/demo-echo/4.0.0/linux-x64', moved_to: `.orphans/${stamp!}/services/demo-echo/4.0.0/linux-x64` }] });
    expect((await put(a.url, r)).status).toBe(201);
    expect((await bytesOf(`${b.url}/storage/services/demo-echo/4.0.0/linux-x64/service.zip`)).bytes.equals(await readFile(path.join(r.dir, 'service.zip')))).toBe(true);
    expect((await runCli(['hub', 'orphans', '--storage', storage, '--db', db, '--json'])).result).toMatchObject({ ok: true, orphans: [] });
  });

  it('a node installs through the other hub what one hub published, and follows its next release', async () => {
    const home = path.join(await tempDir('modelhub-node-'), 'home');
    expect((await runCli(['trust', 'add', key.pub, '--home', home, '--json'])).code).toBe(0);
    const node = (args: string[]): ReturnType<typeof runCli> => runCli([...args, '--home', home, '--hub', b.url, '--json']);

    await publishDir((await buildServiceRelease(work, key, { id: 'shared-echo', version: '1.0.0' })).dir, { hub: a.url, token: TEST_TOKEN });
    expect((await node(['install', 'shared-echo', '--no-start'])).result).toMatchObject({ ok: true, id: 'shared-echo', version: '1.0.0', current: '1.0.0' });
    await publishDir((await buildServiceRelease(work, key, { id: 'shared-echo', version: '1.1.0' })).dir, { hub: a.url, token: TEST_TOKEN });
    expect((await node(['install', 'shared-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '1.1.0', current: '1.1.0' });

    await publishDir((await buildModelRelease(work, key, { id: 'shared-model', version: '1.0.0' })).dir, { hub: a.url, token: TEST_TOKEN });
    expect((await node(['models', 'pull', 'shared-model'])).result).toMatchObject({ ok: true });
    const where = await node(['models', 'path', 'shared-model']);
    expect(where.result).toMatchObject({ ok: true });
    expect((await stat(String(where.result!.path))).isDirectory()).toBe(true);
  });

  it('hubs with metadata keys of their own on one catalog: each is certified and serves its own delegation', async () => {
    const own = await makeKey(work, 'hub-c-metadata');
    const c = await startHub(work, [key], { db, metadataKeyFile: own.key });
    expect(c.metadata.keyId).not.toBe(a.metadata.keyId);
    for (const hub of [a, c]) {
      const text = await (await fetch(`${hub.url}/api/metadata/delegation`)).text();
      expect((JSON.parse(text) as { key_id: string }).key_id).toBe(hub.metadata.keyId);
    }
    // A node resolves "latest" through either one.
    const home = path.join(await tempDir('modelhub-node-'), 'home');
    expect((await runCli(['trust', 'add', key.pub, '--home', home, '--json'])).code).toBe(0);
    expect((await runCli(['install', 'seen-echo', '--no-start', '--home', home, '--hub', c.url, '--json'])).result).toMatchObject({ ok: true, version: '1.0.0' });
  });

  it('200 concurrent range requests spread over both hubs, every one answered 206 with the right bytes', async () => {
    const r = await buildModelRelease(work, key, { id: 'range-model', version: '1.0.0', files: { 'weights.bin': 3 << 20 } });
    await publishDir(r.dir, { hub: a.url, token: TEST_TOKEN });
    const whole = await readFile(path.join(r.dir, 'weights.bin'));
    const answers = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const hub = i % 2 === 0 ? a : b;
        const start = (i * 15_731) % whole.length;
        const end = Math.min(whole.length - 1, start + 1000 + ((i * 7919) % 200_000));
        const res = await fetch(`${hub.url}/storage/models/range-model/1.0.0/weights.bin`, { headers: { range: `bytes=${start}-${end}` } });
        const bytes = Buffer.from(await res.arrayBuffer());
        return { i, status: res.status, range: res.headers.get('content-range'), ok: bytes.equals(whole.subarray(start, end + 1)), want: `bytes ${start}-${end}/${whole.length}` };
      }),
    );
    expect(answers.filter((x) => x.status !== 206 || !x.ok || x.range !== x.want)).toEqual([]);
  });
});

