// Jobs the user controls, through the real CLI, across processes (SPEC §10): pause stops the
// bytes and releases the job, a paused job survives recover, resume continues from the .part
// files, cancel leaves `current` as it was and nothing in downloads/, gc sweeps what no job owns.
import type { ChildProcess } from 'node:child_process';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDbReadOnly } from '../../src/engine/db.js';
import { JobsStore } from '../../src/engine/jobs-store.js';
import { spawnCli, waitForLine } from '../helpers/cli.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;
const SIZE_MB = 12;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0' });
  await b.publish({ version: '2.0.0', modelBytes: SIZE_MB * 1024 * 1024 });
  await b.publishModel({ id: 'ctl-model', version: '1.0.0', files: { 'a.bin': 6 * 1024 * 1024, 'b.bin': 6 * 1024 * 1024 } });
});

function jobsOf(home: string) {
  const db = openDbReadOnly(path.join(home, 'engine.db'));
  if (db === null) return [];
  try {
    return new JobsStore(db).allJobs();
  } catch {
    return []; // created a moment ago, before its tables
  } finally {
    db.close();
  }
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ceilingMs = 30_000): Promise<T> {
  const deadline = Date.now() + ceilingMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts a command in the background (its output read as it comes, so it never blocks on a full pipe) and waits until its job is downloading with some bytes. */
async function startDownloading(home: string, args: string[]): Promise<{ child: ChildProcess; jobId: string; result: Promise<Record<string, unknown>> }> {
  const child = spawnCli([...args, '--home', home, '--hub', b.proxy.url, '--json']);
  const result = waitForLine(child, 'result', 120_000);
  result.catch(() => undefined);
  const jobId = await waitFor('a downloading job', () => jobsOf(home).find((j) => j.state === 'downloading' && j.progress !== null)?.id);
  return { child, jobId, result };
}

function bytesServed(): number {
  return [...b.proxy.bytes.entries()].filter(([p]) => p.startsWith('/storage/')).reduce((n, [, v]) => n + v, 0);
}

describe('pause, resume, cancel', () => {
  it('pause stops the bytes within a second, survives recover, and resume commits with ≤ 1.10× the package served', async () => {
    const home = await b.newHome();
    const pkg = b.releases.get('demo-echo@2.0.0')!.manifest as { archive: { size: number } };
    b.proxy.bytes.clear();
    // Slow enough that the job is still downloading when a pause CLI started on a busy machine acts.
    b.proxy.rate = 1024 * 1024;
    let holder: ChildProcess | undefined;
    try {
      const started = await startDownloading(home, ['install', 'demo-echo@2.0.0', '--no-start']);
      holder = started.child;
      const paused = await b.cli(home, ['pause', started.jobId]);
      expect(paused.code, paused.stdout + paused.stderr).toBe(0);
      expect(paused.result).toMatchObject({ ok: true, job_id: started.jobId, state: 'paused' });
      // No bytes flow while paused (the holder released the job and stopped its download).
      const before = bytesServed();
      await new Promise((r) => setTimeout(r, 2000));
      expect(bytesServed()).toBe(before);
      expect(before).toBeLessThan(pkg.archive.size);

      // A paused job is left alone by recover and by an engine starting (restart rule "hold").
      const recovered = await b.cli(home, ['recover']);
      expect(recovered.result).toMatchObject({ ok: true, recovered: [], paused: [started.jobId] });
      expect(jobsOf(home).find((j) => j.id === started.jobId)?.state).toBe('paused');
      expect(await readdir(path.join(home, 'downloads'))).not.toEqual([]);

      b.proxy.rate = 0;
      const resumed = await b.cli(home, ['resume', started.jobId]);
      expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
      expect(resumed.result).toMatchObject({ ok: true, job_id: started.jobId, kind: 'install', state: 'committed', current: '2.0.0' });
      expect(bytesServed()).toBeLessThanOrEqual(pkg.archive.size * 1.1);
      expect(await currentOf(home, 'demo-echo')).toBe('2.0.0');
      // The install that was paused under it saw the job end, and says so.
      expect(await started.result).toMatchObject({ ok: true, state: 'committed', job_id: started.jobId });
    } finally {
      b.proxy.rate = 0;
      holder?.kill('SIGKILL');
    }
  });

  it('cancel from another process: current stays, nothing is left in downloads/ or staging', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).code).toBe(0);
    b.proxy.rate = 1024 * 1024;
    let holder: ChildProcess | undefined;
    try {
      const started = await startDownloading(home, ['install', 'demo-echo@2.0.0', '--no-start']);
      holder = started.child;
      const cancelled = await b.cli(home, ['cancel', started.jobId]);
      expect(cancelled.result).toMatchObject({ ok: true, job_id: started.jobId, state: 'cancelled' });
      expect(await started.result).toMatchObject({ ok: false, state: 'cancelled' });
    } finally {
      b.proxy.rate = 0;
      holder?.kill('SIGKILL');
    }
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    expect(await readdir(path.join(home, 'downloads'))).toEqual([]);
    expect((await readdir(path.join(home, 'services', 'demo-echo'))).sort()).toEqual(['1.0.0', 'current']);
    const again = await b.cli(home, ['cancel', jobsOf(home).find((j) => j.state === 'committed')!.id]);
    expect(again.result).toMatchObject({ ok: false, error: { code: 'CANCEL_TOO_LATE' } });
  });

  it('a paused model pull is cancelled from its partial files; a malformed or unknown job id is refused', async () => {
    const home = await b.newHome();
    // Two files flow in parallel, each at this rate: 12 s of download, so a pause CLI that
    // starts slowly on a busy machine still finds the job downloading.
    b.proxy.rate = 512 * 1024;
    let holder: ChildProcess | undefined;
    try {
      const started = await startDownloading(home, ['models', 'pull', 'ctl-model']);
      holder = started.child;
      expect((await b.cli(home, ['pause', started.jobId])).result).toMatchObject({ ok: true, state: 'paused' });
      expect(await readdir(path.join(home, 'models', 'ctl-model'))).toEqual(['.partial-1.0.0']);
      expect((await b.cli(home, ['cancel', started.jobId])).result).toMatchObject({ ok: true, state: 'cancelled' });
      expect(await readdir(path.join(home, 'models', 'ctl-model'))).toEqual([]);
      expect(await started.result).toMatchObject({ ok: false, state: 'cancelled' });
    } finally {
      b.proxy.rate = 0;
      holder?.kill('SIGKILL');
    }
    expect((await b.cli(home, ['pause', 'nope'])).code).toBe(2);
    expect((await b.cli(home, ['resume', '00000000-0000-4000-8000-000000000000'])).result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  });

  it('gc removes what no job owns and keeps a paused job\u2019s files', async () => {
    const home = await b.newHome();
    b.proxy.rate = 1024 * 1024;
    let holder: ChildProcess | undefined;
    try {
      const started = await startDownloading(home, ['install', 'demo-echo@2.0.0', '--no-start']);
      holder = started.child;
      expect((await b.cli(home, ['pause', started.jobId])).result).toMatchObject({ ok: true, state: 'paused' });
    } finally {
      b.proxy.rate = 0;
    }
    const owned = (await readdir(path.join(home, 'downloads'))).sort();
    expect(owned.some((n) => n.endsWith('.part'))).toBe(true);
    // Debris of jobs long gone: an abandoned download, a model partial, staging, a pointer temp.
    const old = new Date(Date.now() - 3600_000);
    const debris = [
      path.join(home, 'downloads', 'gone-1.0.0-linux-x64-0123456789abcdef.zip.part'),
      path.join(home, 'downloads', 'gone-1.0.0-linux-x64-0123456789abcdef.zip.part.json'),
      path.join(home, 'models', 'gone', '.partial-1.0.0', 'w.bin.part'),
      path.join(home, 'services', 'demo-echo', '.staging-00000000-0000-4000-8000-000000000000', 'app', 'x.js'),
      path.join(home, 'services', 'demo-echo', '.current.4242.abcdef.tmp'),
    ];
    for (const f of debris) {
      await mkdir(path.dirname(f), { recursive: true });
      await writeFile(f, Buffer.alloc(1000));
      await utimes(f, old, old);
      await utimes(path.dirname(f), old, old);
    }
    for (const d of [path.join(home, 'services', 'demo-echo', '.staging-00000000-0000-4000-8000-000000000000'), path.join(home, 'models', 'gone', '.partial-1.0.0')]) await utimes(d, old, old);
    const gc = await b.cli(home, ['gc']);
    expect(gc.code, gc.stdout + gc.stderr).toBe(0);
    const removed = (gc.result?.removed as string[]).sort();
    expect(removed).toEqual(
      [
        'downloads/gone-1.0.0-linux-x64-0123456789abcdef.zip.part',
        'downloads/gone-1.0.0-linux-x64-0123456789abcdef.zip.part.json',
        'models/gone/.partial-1.0.0',
        'services/demo-echo/.current.4242.abcdef.tmp',
        'services/demo-echo/.staging-00000000-0000-4000-8000-000000000000',
      ].sort(),
    );
    expect(gc.result?.bytes_freed).toBe(5000);
    // The paused job's partial download is untouched, and it still completes.
    expect((await readdir(path.join(home, 'downloads'))).sort()).toEqual(owned);
    const jobId = jobsOf(home).find((j) => j.state === 'paused')!.id;
    expect((await b.cli(home, ['resume', jobId])).result).toMatchObject({ ok: true, state: 'committed' });
    holder?.kill('SIGKILL');
  });
});
