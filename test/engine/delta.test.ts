// Delta updates of services (src/delta), through the real CLI against a real hub behind the
// counting proxy: an update fetches only the entries the node lacks, by Range, and ends with the
// same version folder a full install gives; a hub that ignores Range, a tampered entry and a
// central directory that disagrees all end in the whole package (or a clean failure), never in
// a wrong file or a moved `current`.
import { readdirSync, statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDbReadOnly } from '../../src/engine/db.js';
import type { ServiceManifest } from '../../src/schemas/manifest.js';
import { spawnCli } from '../helpers/cli.js';
import { entryDataSpan, publishService, treeOf, type ServiceSpec } from '../helpers/delta.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import type { BuiltRelease } from '../helpers/releases.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;
const MiB = 1024 * 1024;
const releases = new Map<string, BuiltRelease>();
const zipOf = (version: string): string => `/storage/services/demo-echo/${version}/linux-x64/service.zip`;

async function publish(spec: ServiceSpec): Promise<void> {
  releases.set(spec.version, await publishService(b.work, b.key, { url: b.hub.url, token: TEST_TOKEN }, spec));
}

function manifestOf(version: string): ServiceManifest {
  const m = releases.get(version)?.manifest;
  if (m?.kind !== 'service') throw new Error(`no service release ${version}`);
  return m;
}

interface EventLine {
  type: string;
  payload: { type: string; output?: Record<string, unknown> };
}

/** The download step's output of a job, from its event log. */
async function downloadOutput(home: string, jobId: string): Promise<Record<string, unknown>> {
  const events = (await b.cli(home, ['events', jobId])).result!.events as EventLine[];
  const done = events.find((e) => e.type === 'xstate.done.actor.downloadArchive');
  expect(done, JSON.stringify(events.map((e) => e.type))).toBeDefined();
  return done!.payload.output!;
}

/** The folder holds exactly the manifest's files (and its `.modelhub/` proof), each with its signed hash. */
async function expectSigned(dir: string, m: ServiceManifest): Promise<void> {
  const tree = await treeOf(dir);
  const files = Object.entries(tree).filter(([p, e]) => e.sha256 !== null && !p.startsWith('.modelhub/'));
  expect(Object.fromEntries(files.map(([p, e]) => [p, e.sha256]))).toEqual(Object.fromEntries(m.files.map((f) => [f.path, f.sha256])));
}

async function install(home: string, version: string): Promise<Record<string, unknown>> {
  const r = await b.cli(home, ['install', `demo-echo@${version}`, '--no-start']);
  expect(r.result, r.stderr).toMatchObject({ ok: true, current: version });
  return r.result!;
}

beforeAll(async () => {
  b = await makeBench();
  const big = { 'data/weights.bin': { size: 8 * MiB, seed: 21 } };
  // 1.0.0 → 1.1.0: code only (and service.json, whose version changes); 1.2.0: most bytes change.
  await publish({ version: '1.0.0', modelBytes: 4 * MiB, files: big });
  await publish({ version: '1.1.0', modelBytes: 4 * MiB, files: big, code: 'a code change' });
  await publish({ version: '1.2.0', modelBytes: 4 * MiB, files: { 'data/weights.bin': { size: 8 * MiB, seed: 22 } }, code: 'another change' });
  // Two changed files of 2 MiB, so that a kill can land between them.
  await publish({ version: '1.3.0', modelBytes: 4 * MiB, files: { ...big, 'data/a.bin': { size: 2 * MiB, seed: 31 }, 'data/b.bin': { size: 2 * MiB, seed: 32 } } });
}, 180_000);

describe('delta updates', () => {
  it('an update fetches only the changed entries by Range and gives the folder a full install gives', async () => {
    const home = await b.newHome();
    await install(home, '1.0.0');
    b.proxy.bytes.delete(zipOf('1.1.0'));
    b.proxy.log.length = 0;
    const r = await install(home, '1.1.0');
    const size = manifestOf('1.1.0').archive.size;
    const served = b.proxy.bytes.get(zipOf('1.1.0')) ?? 0;
    // app/server.mjs and service.json, plus the end records and central directory.
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThan(0.02 * size);
    // Ranged requests only, every one answered 206.
    const requests = b.proxy.log.filter((l) => l.path === zipOf('1.1.0'));
    expect(requests.length).toBeGreaterThan(0);
    for (const l of requests) expect(l, JSON.stringify(l)).toMatchObject({ status: 206, range: expect.stringMatching(/^bytes=\d+-\d+$/) as unknown });

    const out = await downloadOutput(home, r.job_id as string);
    expect(out).toMatchObject({ delta: { bytesFetched: served, entriesFetched: 2, filesReused: manifestOf('1.1.0').files.length - 2, copied: 0 } });
    expect(out.deltaFallback).toBeUndefined();

    // The same folder as a full install of 1.1.0 on a node that had nothing.
    const fresh = await b.newHome();
    const full = await install(fresh, '1.1.0');
    expect((await downloadOutput(fresh, full.job_id as string)).deltaFallback).toMatchObject({ reason: 'nothing_to_reuse' });
    expect(await treeOf(path.join(home, 'services', 'demo-echo', '1.1.0'))).toEqual(await treeOf(path.join(fresh, 'services', 'demo-echo', '1.1.0')));
    // Unchanged files are hard links to the installed version's: no second copy on disk.
    const a = await stat(path.join(home, 'services', 'demo-echo', '1.0.0', 'data', 'weights.bin'));
    const c = await stat(path.join(home, 'services', 'demo-echo', '1.1.0', 'data', 'weights.bin'));
    expect(c.ino).toBe(a.ino);
    // Nothing left behind in downloads/.
    expect(await readdir(path.join(home, 'downloads'))).toEqual([]);
  }, 120_000);

  it('when most of the package changed, the whole package is downloaded and the job says why', async () => {
    const home = await b.newHome();
    await install(home, '1.0.0');
    b.proxy.bytes.delete(zipOf('1.2.0'));
    const r = await install(home, '1.2.0');
    const out = await downloadOutput(home, r.job_id as string);
    expect(out).toMatchObject({ deltaFallback: { reason: 'not_worth_it' } });
    const size = manifestOf('1.2.0').archive.size;
    // The whole package once, plus the central directory read that decided it.
    expect(b.proxy.bytes.get(zipOf('1.2.0'))).toBeGreaterThanOrEqual(size);
    expect(b.proxy.bytes.get(zipOf('1.2.0'))).toBeLessThan(size + 256 * 1024);
  }, 120_000);

  it('a hub that ignores Range: the whole package, and the update still works', async () => {
    const home = await b.newHome();
    await install(home, '1.0.0');
    b.proxy.mode = { kind: 'ignore-range' };
    try {
      const r = await install(home, '1.1.0');
      expect(await downloadOutput(home, r.job_id as string)).toMatchObject({ deltaFallback: { reason: 'range_ignored' } });
    } finally {
      b.proxy.mode = { kind: 'none' };
    }
    expect(await currentOf(home, 'demo-echo')).toBe('1.1.0');
  }, 120_000);

  it('a tampered entry is refused: the whole package once, or CHECKSUM_MISMATCH with current untouched', async () => {
    const zip = path.join(releases.get('1.1.0')!.dir, 'service.zip');
    const span = await entryDataSpan(zip, 'app/server.mjs');
    const at = Math.floor((span.start + span.end) / 2);

    // Flipped once (in the ranged read): refused, then the whole package, which is sound.
    const home = await b.newHome();
    await install(home, '1.0.0');
    b.proxy.mode = { kind: 'flip', at, once: true };
    try {
      const r = await install(home, '1.1.0');
      expect(await downloadOutput(home, r.job_id as string)).toMatchObject({ deltaFallback: { reason: 'entry_mismatch' } });
    } finally {
      b.proxy.mode = { kind: 'none' };
    }
    await expectSigned(path.join(home, 'services', 'demo-echo', '1.1.0'), manifestOf('1.1.0'));

    // Flipped every time: the ranged entry and the whole package are both wrong → failed, 1.0.0 stays.
    const home2 = await b.newHome();
    await install(home2, '1.0.0');
    b.proxy.mode = { kind: 'flip', at };
    try {
      const r = await b.cli(home2, ['install', 'demo-echo@1.1.0', '--no-start']);
      expect(r.result).toMatchObject({ ok: false, error: { code: 'CHECKSUM_MISMATCH' }, current: '1.0.0' });
    } finally {
      b.proxy.mode = { kind: 'none' };
    }
    expect(await currentOf(home2, 'demo-echo')).toBe('1.0.0');
    await expect(stat(path.join(home2, 'services', 'demo-echo', '1.1.0'))).rejects.toMatchObject({ code: 'ENOENT' });
    // The bad bytes were not kept: nothing of 1.1.0 is left in downloads/.
    expect(await readdir(path.join(home2, 'downloads'))).toEqual([]);
  }, 180_000);
});

describe('a delta update killed midway', () => {
  /** The content folder's complete entries (named by their SHA-256) of exactly `size` bytes. */
  function completeEntries(home: string, size: number): number {
    const downloads = path.join(home, 'downloads');
    let n = 0;
    for (const d of readdirSync(downloads)) {
      if (!d.endsWith('.delta')) continue;
      for (const f of readdirSync(path.join(downloads, d))) if (/^[0-9a-f]{64}$/.test(f) && statSync(path.join(downloads, d, f)).size === size) n += 1;
    }
    return n;
  }

  it('kill -9 after the first changed entry: recover resumes, fetching only what is missing', async () => {
    const home = await b.newHome();
    await install(home, '1.0.0');
    b.proxy.bytes.delete(zipOf('1.3.0'));
    // About 4 s of ranged reads; killed once one of the two 2 MiB entries is complete.
    b.proxy.rate = 1 * MiB;
    const child = spawnCli(['install', 'demo-echo@1.3.0', '--no-start', '--home', home, '--hub', b.proxy.url, '--json'], { MODELHUB_PRESTAGE: '0' });
    const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let killedIn: string | null = null;
    const db = await waitForDb(home);
    try {
      const job = db.prepare("SELECT state, active FROM jobs WHERE target = 'demo-echo@1.3.0' ORDER BY started_at DESC LIMIT 1");
      const giveUp = Date.now() + 60_000;
      while (child.exitCode === null && Date.now() < giveUp) {
        const row = job.get() as { state: string; active: number } | undefined;
        if (row?.state === 'downloading' && completeEntries(home, 2 * MiB) >= 1) {
          child.kill('SIGKILL');
          killedIn = row.state;
          break;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      if (child.exitCode === null) child.kill('SIGKILL');
      await exit;
    } finally {
      db.close();
      b.proxy.rate = 0;
    }
    expect(killedIn).toBe('downloading');
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    const servedBefore = b.proxy.bytes.get(zipOf('1.3.0')) ?? 0;

    const rec = await b.cli(home, ['recover']);
    expect(rec.result, rec.stderr).toMatchObject({ ok: true, recovered: [{ from: 'downloading', state: 'committed' }] });
    expect(await currentOf(home, 'demo-echo')).toBe('1.3.0');
    await expectSigned(path.join(home, 'services', 'demo-echo', '1.3.0'), manifestOf('1.3.0'));
    const jobId = (rec.result!.recovered as { job_id: string }[])[0]!.job_id;
    const out = await downloadOutput(home, jobId);
    // Three entries changed (data/a.bin, data/b.bin, service.json); what was complete before the
    // kill was kept, so the resumed run fetched fewer.
    expect((out.delta as { entriesFetched: number }).entriesFetched).toBeGreaterThanOrEqual(1);
    expect((out.delta as { entriesFetched: number }).entriesFetched).toBeLessThan(3);
    const served = b.proxy.bytes.get(zipOf('1.3.0')) ?? 0;
    expect(served - servedBefore).toBeLessThan(3 * MiB);
    expect(served).toBeLessThan(0.5 * manifestOf('1.3.0').archive.size);
    expect(await readdir(path.join(home, 'downloads'))).toEqual([]);
  }, 120_000);
});

async function waitForDb(home: string): Promise<NonNullable<ReturnType<typeof openDbReadOnly>>> {
  for (;;) {
    const db = openDbReadOnly(path.join(home, 'engine.db'));
    if (db !== null) return db;
    await new Promise((r) => setTimeout(r, 20));
  }
}
