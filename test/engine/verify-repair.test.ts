// `modelhub verify [ID[@V]] [--repair]` (SPEC §13): installed files re-hashed against the signed
// manifest each version keeps; modified, missing and extra files named; exit 1 on damage.
// `--repair` fetches only the damaged files — single zip entries by Range where the hub serves
// them, else the whole package; a model's damaged files one by one — counted by the proxy, and
// restores them byte for byte without switching `current`.
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ServiceManifest } from '../../src/schemas/manifest.js';
import { runCli } from '../helpers/cli.js';
import type { BuiltRelease } from '../helpers/releases.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;
let service: BuiltRelease;
let model: BuiltRelease;
const MiB = 1024 * 1024;

beforeAll(async () => {
  b = await makeBench();
  service = await b.publish({ version: '1.0.0', modelBytes: 8 * MiB });
  model = await b.publishModel({ id: 'vr-model', version: '1.0.0', files: { 'weights.bin': 4 * MiB, 'extra/vocab.txt': 50_000, 'config.json': 10 } });
}, 120_000);

const zip = '/storage/services/demo-echo/1.0.0/linux-x64/service.zip';
const packageSize = (): number => (service.manifest as ServiceManifest).archive.size;

/** Every file below a folder (but the proof folder), with its bytes. */
async function snapshot(dir: string, rel = ''): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (p === '.modelhub') continue;
    if (e.isDirectory()) for (const [k, v] of await snapshot(dir, p)) out.set(k, v);
    else out.set(p, await readFile(path.join(dir, p)));
  }
  return out;
}

async function installed(start = false): Promise<{ home: string; svc: string; mdl: string }> {
  const home = await b.newHome();
  expect((await b.cli(home, ['install', 'demo-echo@1.0.0', ...(start ? [] : ['--no-start'])])).result).toMatchObject({ ok: true });
  expect((await b.cli(home, ['models', 'pull', 'vr-model@1.0.0'])).result).toMatchObject({ ok: true });
  return { home, svc: path.join(home, 'services', 'demo-echo', '1.0.0'), mdl: path.join(home, 'models', 'vr-model', '1.0.0') };
}

/** Modifies one file, removes another and adds an extra one, in the service and in the model. */
async function damage(svc: string, mdl: string): Promise<void> {
  await writeFile(path.join(svc, 'app', 'server.mjs'), '// not the signed server\n');
  await rm(path.join(svc, 'app', 'behavior.txt'));
  await writeFile(path.join(svc, 'written-by-the-service.log'), 'hello\n');
  const w = await readFile(path.join(mdl, 'weights.bin'));
  w.writeUInt8(w.readUInt8(1000) ^ 0xff, 1000); // one flipped byte, same size
  await writeFile(path.join(mdl, 'weights.bin'), w);
  await rm(path.join(mdl, 'extra', 'vocab.txt'));
  await mkdir(path.join(mdl, 'cache'), { recursive: true });
  await writeFile(path.join(mdl, 'cache', 'x.bin'), 'x');
}

describe('modelhub verify', () => {
  it('names modified, missing and extra files; exit 1 only for modified or missing', async () => {
    const { home, svc, mdl } = await installed();
    const clean = await b.cli(home, ['verify']);
    expect(clean.code).toBe(0);
    expect(clean.result).toMatchObject({
      ok: true,
      services: [{ id: 'demo-echo', version: '1.0.0', ok: true, modified: [], missing: [], extra: [], proof: 'signed' }],
      models: [{ id: 'vr-model', version: '1.0.0', ok: true, modified: [], missing: [], extra: [] }],
    });

    // Extra files alone (the service writes its own) are reported, not damage.
    await writeFile(path.join(svc, 'written-by-the-service.log'), 'hello\n');
    const extraOnly = await b.cli(home, ['verify', 'demo-echo']);
    expect(extraOnly.code).toBe(0);
    expect(extraOnly.result).toMatchObject({ ok: true, services: [{ ok: true, extra: ['written-by-the-service.log'] }], models: [] });

    await damage(svc, mdl);
    const r = await b.cli(home, ['verify']);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({
      ok: false,
      error: { code: 'CHECKSUM_MISMATCH' },
      services: [{ id: 'demo-echo', version: '1.0.0', ok: false, modified: ['app/server.mjs'], missing: ['app/behavior.txt'], extra: ['written-by-the-service.log'] }],
      models: [{ id: 'vr-model', version: '1.0.0', ok: false, modified: ['weights.bin'], missing: ['extra/vocab.txt'], extra: ['cache/x.bin'] }],
    });
    // One version only; and a target that names nothing installed.
    expect((await b.cli(home, ['verify', 'vr-model@1.0.0'])).result).toMatchObject({ ok: false, services: [], models: [{ id: 'vr-model' }] });
    const none = await b.cli(home, ['verify', 'nothing-here']);
    expect(none.code).toBe(1);
    expect(none.result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    // Without --json: one line per version.
    const text = await runCli(['verify', '--home', home]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('service demo-echo 1.0.0  DAMAGED  modified: app/server.mjs; missing: app/behavior.txt; extra: written-by-the-service.log');
  });

  it('a proof that does not verify is damage; a version from before proofs is checked against the recorded manifest', async () => {
    const { home, svc, mdl } = await installed();
    await writeFile(path.join(svc, '.modelhub', 'manifest.json'), (await readFile(path.join(svc, '.modelhub', 'manifest.json'), 'utf8')).replace('"1.0.0"', '"1.0.0" '));
    await rm(path.join(mdl, '.modelhub'), { recursive: true });
    const r = await b.cli(home, ['verify']);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ services: [{ ok: false, proof: 'invalid', modified: [], missing: [] }], models: [{ ok: true, proof: 'registry' }] });
    // A repair writes both proofs again (from the hub's signed manifests); nothing else is fetched.
    b.proxy.bytes.clear();
    const fixed = await b.cli(home, ['verify', '--repair']);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.result).toMatchObject({ services: [{ ok: true, proof: 'signed' }], models: [{ ok: true, proof: 'signed' }] });
    expect([...b.proxy.bytes.keys()].filter((k) => k.startsWith('/storage/'))).toEqual([]);
  });
});

describe('modelhub verify --repair', () => {
  it('restores the damaged files byte for byte, fetching only them (single entries by Range)', async () => {
    const { home, svc, mdl } = await installed();
    const before = { svc: await snapshot(svc), mdl: await snapshot(mdl) };
    await damage(svc, mdl);
    b.proxy.bytes.clear();
    const r = await b.cli(home, ['verify', '--repair']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.result).toMatchObject({
      ok: true,
      services: [{ id: 'demo-echo', ok: true, modified: [], missing: [], extra: ['written-by-the-service.log'] }],
      models: [{ id: 'vr-model', ok: true, modified: [], missing: [], extra: ['cache/x.bin'] }],
      repairs: [
        { kind: 'service', id: 'demo-echo', version: '1.0.0', state: 'committed', method: 'range', repaired: ['app/behavior.txt', 'app/server.mjs'] },
        { kind: 'model', id: 'vr-model', version: '1.0.0', state: 'committed', method: 'files', repaired: ['extra/vocab.txt', 'weights.bin'] },
      ],
    });
    const after = { svc: await snapshot(svc), mdl: await snapshot(mdl) };
    for (const [p, bytes] of before.svc) expect(after.svc.get(p)?.equals(bytes), p).toBe(true);
    for (const [p, bytes] of before.mdl) expect(after.mdl.get(p)?.equals(bytes), p).toBe(true);
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    // The model's repaired files are the store's blobs again, not second copies.
    for (const f of model.manifest.files.filter((x) => x.path !== 'config.json')) {
      expect((await stat(path.join(mdl, f.path))).ino, f.path).toBe((await stat(path.join(home, 'blobs', 'sha256', f.sha256))).ino);
    }

    // Bytes: the service's two small entries and the zip's directory, not its 8 MiB. The model:
    // the modified file exactly; the removed one is whole in the model store (src/store) and is
    // linked back from it without a byte fetched.
    const zipBytes = b.proxy.bytes.get(zip) ?? 0;
    const repairs = r.result!.repairs as { bytes_fetched: number }[];
    console.log(`repair: service ${zipBytes} bytes by Range of a ${packageSize()}-byte package; model ${repairs[1]!.bytes_fetched} bytes`);
    expect(zipBytes).toBeGreaterThan(0);
    expect(zipBytes).toBeLessThan(256 * 1024);
    expect(repairs[0]!.bytes_fetched).toBe(zipBytes);
    expect(b.proxy.bytes.get('/storage/models/vr-model/1.0.0/weights.bin')).toBe(4 * MiB);
    expect(b.proxy.bytes.get('/storage/models/vr-model/1.0.0/extra/vocab.txt') ?? 0).toBe(0);
    expect(repairs[1]!.bytes_fetched).toBe(4 * MiB);
    expect(b.proxy.bytes.get('/storage/models/vr-model/1.0.0/config.json') ?? 0).toBe(0);

    // Each repair is a job in the event log, and replays.
    const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { id: string; kind: string; target: string; state: string }[];
    const repairJobs = jobs.filter((j) => j.kind === 'repair');
    expect(repairJobs.map((j) => [j.target, j.state])).toEqual([['demo-echo@1.0.0', 'committed'], ['vr-model@1.0.0', 'committed']]);
    const exported = path.join(home, 'repair.jsonl');
    expect((await b.cli(home, ['events', repairJobs[0]!.id, '--export', exported])).result).toMatchObject({ ok: true });
    expect((await b.cli(home, ['replay', exported])).result).toMatchObject({ ok: true, diverged_at: null });
    // Nothing left behind in downloads/.
    expect((await readdir(path.join(home, 'downloads'))).filter((n) => n.startsWith('repair-'))).toEqual([]);
  });

  it('without ranges: the whole package, verified, and only the damaged entries out of it', async () => {
    const { home, svc, mdl } = await installed();
    const before = await snapshot(svc);
    await damage(svc, mdl);
    b.proxy.bytes.clear();
    const r = await b.cli(home, ['verify', '--repair', 'demo-echo'], { MODELHUB_DELTA: '0' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.result).toMatchObject({ services: [{ ok: true }], models: [], repairs: [{ kind: 'service', method: 'package', state: 'committed' }] });
    expect(b.proxy.bytes.get(zip)).toBe(packageSize());
    const after = await snapshot(svc);
    for (const [p, bytes] of before) expect(after.get(p)?.equals(bytes), p).toBe(true);
  });

  it('repairing the running version never switches current; the service keeps running', async () => {
    const { home, svc } = await installed(true);
    try {
      const status = (await b.cli(home, ['status'])).result!.services as { pid: number; healthy: boolean }[];
      expect(status[0]).toMatchObject({ healthy: true });
      await rm(path.join(svc, 'models', 'tiny.bin'));
      const r = await b.cli(home, ['verify', '--repair', 'demo-echo@1.0.0']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.result).toMatchObject({ services: [{ ok: true }], repairs: [{ repaired: ['models/tiny.bin'], state: 'committed' }] });
      expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
      const again = (await b.cli(home, ['status'])).result!.services as { pid: number; healthy: boolean }[];
      expect(again[0]).toMatchObject({ pid: status[0]!.pid, healthy: true });
    } finally {
      await b.cli(home, ['uninstall', 'demo-echo']);
    }
  });
});
