// One job per target across processes: ten CLIs asking for the same install make one job and
// one download; different services install side by side.
//
// Overlap is made, not hoped for: the package download waits at the test proxy's barrier until
// every CLI has joined the job (each prints a progress line naming it), or until both jobs are
// downloading, and only then is let through. How fast the machine starts ten CLIs changes
// nothing but how long the barrier stays closed.
import type { ChildProcess } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnCli, type CliResult } from '../helpers/cli.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 2 * 1024 * 1024 });
  await b.publish({ id: 'other-svc', version: '1.0.0', modelBytes: 2 * 1024 * 1024 });
});

const zipOf = (id: string): string => `/storage/services/${id}/1.0.0/linux-x64/service.zip`;
/** The job's requests to the hub, in the order it makes them: release detail, manifest, package. */
/** What a job asks the hub for, in order: the signed metadata (key statements first), the manifest, the package. */
const jobPathsOf = (id: string): string[] => ['/api/keys/statements', `/api/services/${id}/1.0.0/linux-x64/manifest`, zipOf(id)];
/**
 * How long one request may be held: below the engine's 30 s request and stall timeouts, so that
 * a held request is never abandoned and asked for again (which would be a second download).
 */
const BARRIER_MS = 25_000;

interface RunningCli {
  child: ChildProcess;
  /** The job id of the first progress line: set once this CLI runs or has attached to a job. */
  jobId: () => string | null;
  done: Promise<CliResult>;
  /** What it printed so far, for a failure message. */
  output: () => string;
}

/** The real CLI against the bench's proxy, its JSON lines read as they come. */
function startCli(home: string, args: string[]): RunningCli {
  const child = spawnCli([...args, '--home', home, '--hub', b.proxy.url, '--json']);
  let stdout = '';
  let stderr = '';
  let jobId: string | null = null;
  const lines: Record<string, unknown>[] = [];
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    pending += chunk.toString('utf8');
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (line.trim() === '') continue;
      const v = JSON.parse(line) as Record<string, unknown>;
      lines.push(v);
      // A progress line names its job: `jobId` (the library's ProgressEvent; `job_id` before it).
      const named = v.jobId ?? v.job_id;
      if (jobId === null && v.type === 'progress' && typeof named === 'string') jobId = named;
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const done = new Promise<CliResult>((resolve) => {
    child.once('exit', (code) => resolve({ code: code ?? 1, stdout, stderr, lines, result: lines.find((l) => l.type === 'result') }));
  });
  return { child, jobId: () => jobId, done, output: () => stdout + stderr };
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

/**
 * Holds the job's requests one after the other until `joined()`: each at most BARRIER_MS, so a
 * slow machine gets that long per request (three of them) to bring every CLI in. True when the
 * package request was waiting at the barrier with `joined()` holding.
 */
async function barrier(paths: string[], joined: () => boolean): Promise<boolean> {
  for (const p of paths) b.proxy.hold(p);
  try {
    for (const p of paths) {
      if (!(await until(() => b.proxy.held(p) > 0, 60_000))) return false; // the job never asked
      await until(joined, BARRIER_MS);
      if (p !== paths.at(-1)) b.proxy.release(p);
    }
    return joined() && b.proxy.held(paths.at(-1)!) === 1;
  } finally {
    for (const p of paths) b.proxy.release(p);
  }
}

describe('one job per target', () => {
  it('ten concurrent installs of the same release → one job, one download, ten results', async () => {
    const home = await b.newHome();
    b.proxy.requests.clear();
    b.proxy.bytes.clear();
    const zipPath = zipOf('demo-echo');
    const clis = Array.from({ length: 10 }, () => startCli(home, ['install', 'demo-echo@1.0.0', '--no-start']));
    // The package is let through only with all ten CLIs in on the job (and the job is held
    // until then at each of its requests): none can come after the job has ended.
    const paths = jobPathsOf('demo-echo');
    const joined = await barrier(paths, () => clis.every((c) => c.jobId() !== null));
    const seen = `joined ${clis.filter((c) => c.jobId() !== null).length} of 10, held ${paths.map((p) => b.proxy.held(p)).join('/')}; first CLI: ${clis[0]!.output()}`;
    expect(joined, seen).toBe(true);
    expect(new Set(clis.map((c) => c.jobId())).size).toBe(1);
    const results = await Promise.all(clis.map((c) => c.done));
    for (const r of results) expect(r.result, r.stderr).toMatchObject({ ok: true, current: '1.0.0' });
    const jobIds = new Set(results.map((r) => r.result!.job_id));
    expect(jobIds.size).toBe(1);
    expect(jobIds.has(clis[0]!.jobId())).toBe(true);
    expect(results.filter((r) => r.result!.attached === false)).toHaveLength(1);
    const jobs = await b.cli(home, ['jobs']);
    expect(jobs.result!.jobs).toHaveLength(1);
    expect(b.proxy.requests.get(zipPath)).toBe(1);
    const rel = b.releases.get('demo-echo@1.0.0')!;
    if (rel.manifest.kind !== 'service') throw new Error('service');
    expect(b.proxy.bytes.get(zipPath)).toBe(rel.manifest.archive.size);
  });

  it('two different services install in parallel', async () => {
    const home = await b.newHome();
    const zips = [zipOf('demo-echo'), zipOf('other-svc')];
    for (const z of zips) b.proxy.hold(z);
    let runs: RunningCli[] = [];
    try {
      runs = [startCli(home, ['install', 'demo-echo@1.0.0', '--no-start']), startCli(home, ['install', 'other-svc@1.0.0', '--no-start'])];
      // Both jobs are downloading at once (neither can finish while held): neither waits for the other.
      const both = await until(() => zips.every((z) => b.proxy.held(z) === 1), BARRIER_MS);
      expect(both, `within ${BARRIER_MS} ms: held ${zips.map((z) => b.proxy.held(z)).join(', ')}; ${runs.map((r) => r.output()).join('\n')}`).toBe(true);
    } finally {
      for (const z of zips) b.proxy.release(z);
    }
    const [a, c] = await Promise.all(runs.map((r) => r.done));
    expect(a!.result, a!.stderr).toMatchObject({ ok: true });
    expect(c!.result, c!.stderr).toMatchObject({ ok: true });
    const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { started_at: string; ended_at: string }[];
    expect(jobs).toHaveLength(2);
    const [j1, j2] = jobs.map((j) => ({ s: Date.parse(j.started_at), e: Date.parse(j.ended_at) }));
    // Overlapping lifetimes: neither waited for the other.
    expect(j1!.s).toBeLessThan(j2!.e);
    expect(j2!.s).toBeLessThan(j1!.e);
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    expect(await currentOf(home, 'other-svc')).toBe('1.0.0');
  });
});
