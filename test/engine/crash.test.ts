// kill -9 of the real CLI at random moments of an update, then `recover`: `current` is always
// a complete old or new version, no job is left in flight, and resuming means the package is
// not fetched again from the start. And a kill during the health check rolls back to the
// version that was running.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ServiceManifest } from '../../src/schemas/manifest.js';
import { spawnCli } from '../helpers/cli.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;
const PACKAGE_MODEL_BYTES = 16 * 1024 * 1024;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: PACKAGE_MODEL_BYTES });
  await b.publish({ version: '1.1.0', modelBytes: PACKAGE_MODEL_BYTES + 1 });
  await b.publish({ version: '1.2.0', extra: { health_check: { type: 'http', endpoint: '/health', startup_grace_ms: 4000, interval_ms: 100, timeout_ms: 10_000 } } });
});

function manifestOf(version: string): ServiceManifest {
  const m = b.releases.get(`demo-echo@${version}`)!.manifest;
  if (m.kind !== 'service') throw new Error('service');
  return m;
}

/** Every file of the version `current` points to is there, whole. */
async function assertCompleteCurrent(home: string): Promise<string> {
  const current = await currentOf(home, 'demo-echo');
  expect(current === '1.0.0' || current === '1.1.0').toBe(true);
  const dir = path.join(home, 'services', 'demo-echo', 'current');
  const svc = JSON.parse(await readFile(path.join(dir, 'service.json'), 'utf8')) as { version: string };
  expect(svc.version).toBe(current);
  for (const f of manifestOf(current!).files) expect((await stat(path.join(dir, f.path))).size).toBe(f.size);
  return current!;
}

function killAfter(args: string[], home: string, ms: number): Promise<number | null> {
  const child = spawnCli([...args, '--home', home, '--hub', b.proxy.url, '--json']);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

describe('kill -9 during an update, then recover', () => {
  it('always ends at a complete old or new version with nothing in flight', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true });
    const zip = '/storage/services/demo-echo/1.1.0/linux-x64/service.zip';
    const size = manifestOf('1.1.0').archive.size;
    b.proxy.rate = 24 * 1024 * 1024;
    const outcomes: string[] = [];
    try {
      // Deterministic "random" moments spread over resolve, download, stage and switch.
      const delays = [150, 350, 500, 650, 800, 950, 1100, 1400];
      for (const delay of delays) {
        b.proxy.bytes.delete(zip);
        const code = await killAfter(['install', 'demo-echo@1.1.0', '--no-start'], home, delay);
        const rec = await b.cli(home, ['recover']);
        expect(rec.code, rec.stderr).toBe(0);
        const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { state: string }[];
        for (const j of jobs) expect(['committed', 'failed', 'rolled_back', 'cancelled']).toContain(j.state);
        const current = await assertCompleteCurrent(home);
        outcomes.push(`${delay}ms: exit ${code} → ${current}`);
        if (current === '1.0.0') {
          // Interrupted before the switch: finishing the update must not start over.
          const fin = await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start']);
          expect(fin.result).toMatchObject({ ok: true, current: '1.1.0' });
        }
        await assertCompleteCurrent(home);
        expect(b.proxy.bytes.get(zip) ?? 0).toBeLessThan(1.25 * size);
        // Back to 1.0.0 for the next round.
        expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--allow-downgrade'])).result).toMatchObject({ ok: true });
      }
    } finally {
      b.proxy.rate = 0;
    }
    expect(outcomes).toHaveLength(8);
  });

  it('a kill during the health check rolls back, and the previous version runs again', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.1.0'])).result).toMatchObject({ ok: true, current: '1.1.0' });
    const child = spawnCli(['install', 'demo-echo@1.2.0', '--home', home, '--hub', b.proxy.url, '--json']);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    // Wait until the job is health checking (read-only polling), then kill -9.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { target: string; state: string }[];
      if (jobs.some((j) => j.target === 'demo-echo@1.2.0' && j.state === 'health_checking')) break;
      if (Date.now() > deadline) throw new Error('never reached health_checking');
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    await exited;
    const rec = await b.cli(home, ['recover']);
    expect(rec.result).toMatchObject({ ok: true, recovered: [{ from: 'health_checking', state: 'rolled_back' }] });
    expect(await currentOf(home, 'demo-echo')).toBe('1.1.0');
    const status = (await b.cli(home, ['status'])).result!.services as { version: string; healthy: boolean; port: number }[];
    expect(status).toEqual([expect.objectContaining({ version: '1.1.0', healthy: true })]);
    const res = await fetch(`http://127.0.0.1:${status[0]!.port}/`);
    expect(await res.json()).toMatchObject({ version: '1.1.0' });
    await b.cli(home, ['uninstall', 'demo-echo']);
  });
});
