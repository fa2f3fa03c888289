// One job per target across processes: ten CLIs asking for the same install make one job and
// one download; different services install side by side.
import { beforeAll, describe, expect, it } from 'vitest';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 2 * 1024 * 1024 });
  await b.publish({ id: 'other-svc', version: '1.0.0', modelBytes: 2 * 1024 * 1024 });
});

describe('one job per target', () => {
  it('ten concurrent installs of the same release → one job, one download, ten results', async () => {
    const home = await b.newHome();
    b.proxy.requests.clear();
    b.proxy.bytes.clear();
    b.proxy.rate = 512 * 1024; // slow enough (about 4 s) that all ten start while it runs
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])));
      for (const r of results) expect(r.result, r.stderr).toMatchObject({ ok: true, current: '1.0.0' });
      const jobIds = new Set(results.map((r) => r.result!.job_id));
      expect(jobIds.size).toBe(1);
      expect(results.filter((r) => r.result!.attached === false)).toHaveLength(1);
      const jobs = await b.cli(home, ['jobs']);
      expect(jobs.result!.jobs).toHaveLength(1);
      const zipPath = '/storage/services/demo-echo/1.0.0/linux-x64/service.zip';
      expect(b.proxy.requests.get(zipPath)).toBe(1);
      const rel = b.releases.get('demo-echo@1.0.0')!;
      if (rel.manifest.kind !== 'service') throw new Error('service');
      expect(b.proxy.bytes.get(zipPath)).toBe(rel.manifest.archive.size);
    } finally {
      b.proxy.rate = 0;
    }
  });

  it('two different services install in parallel', async () => {
    const home = await b.newHome();
    b.proxy.rate = 1024 * 1024; // about 2 s each, so that both are surely running at once
    try {
      const [a, c] = await Promise.all([b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start']), b.cli(home, ['install', 'other-svc@1.0.0', '--no-start'])]);
      expect(a.result).toMatchObject({ ok: true });
      expect(c.result).toMatchObject({ ok: true });
      const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { started_at: string; ended_at: string }[];
      expect(jobs).toHaveLength(2);
      const [j1, j2] = jobs.map((j) => ({ s: Date.parse(j.started_at), e: Date.parse(j.ended_at) }));
      // Overlapping lifetimes: neither waited for the other.
      expect(j1!.s).toBeLessThan(j2!.e);
      expect(j2!.s).toBeLessThan(j1!.e);
      expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
      expect(await currentOf(home, 'other-svc')).toBe('1.0.0');
    } finally {
      b.proxy.rate = 0;
    }
  });
});
