// The CLI's mirrors (SPEC §12): --mirror URL (repeatable, in order) on the commands that
// download, else $MODELHUB_MIRRORS (comma-separated); a bad URL is bad usage (exit 2); a paused
// job resumed with a mirror takes its remaining bytes from there.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { sourceUseSchema } from '../../src/download/sources.js';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { copyStorage, refusedUrl, startStaticMirror, type StaticMirror } from '../helpers/static-mirror.js';
import { currentOf, makeBench, type Bench } from '../engine/fixture.js';

let b: Bench;
let good: StaticMirror;
let dead: string;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 3 * 1024 * 1024 });
  good = await startStaticMirror(await copyStorage(path.join(b.work, 'storage'), path.join(b.work, 'mirror')));
  dead = await refusedUrl();
}, 120_000);

function hubBlobBytes(): number {
  return [...b.proxy.bytes.entries()].filter(([p]) => p.startsWith('/storage/')).reduce((n, [, v]) => n + v, 0);
}

async function sourcesOf(home: string, jobId: unknown): Promise<{ url: string; served: number; failures: number }[]> {
  const r = await b.cli(home, ['events', String(jobId)]);
  const done = (r.result!.events as { type: string; payload: { output?: { sources?: unknown } } }[]).find((e) => e.type === 'xstate.done.actor.downloadArchive');
  return sourceUseSchema.array().parse(done?.payload.output?.sources);
}

describe('modelhub --mirror / $MODELHUB_MIRRORS', () => {
  it('$MODELHUB_MIRRORS, comma-separated and in order, serves the install', async () => {
    const home = await b.newHome();
    b.proxy.bytes.clear();
    const r = await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'], { MODELHUB_MIRRORS: `${dead}, ${good.url}` });
    expect(r.result).toMatchObject({ ok: true, current: '1.0.0' });
    expect(hubBlobBytes()).toBe(0);
    expect((await sourcesOf(home, r.result!.job_id)).map((s) => [s.url, s.served, s.failures])).toEqual([
      [dead, 0, 1],
      [good.url, 1, 0],
    ]);
  });

  it('--mirror flags replace $MODELHUB_MIRRORS', async () => {
    const home = await b.newHome();
    const r = await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--mirror', good.url], { MODELHUB_MIRRORS: dead });
    expect(r.result).toMatchObject({ ok: true });
    expect((await sourcesOf(home, r.result!.job_id)).map((s) => s.url)).toEqual([good.url]);
  });

  it.each([
    [['--mirror', 'ftp://mirror.example.com/'], {}, /--mirror: mirror "ftp:\/\/mirror.example.com\/" must be an http/],
    [['--mirror', 'http://user:secret@mirror.example.com/'], {}, /credentials/],
    [[], { MODELHUB_MIRRORS: 'http://ok.example.com/,nope' }, /\$MODELHUB_MIRRORS: mirror "nope" is not a URL/],
  ])('a bad mirror URL is bad usage: %j %j', async (flags, env, why) => {
    const home = path.join(b.work, `bad-usage-${Math.random().toString(36).slice(2)}`);
    const r = await runCli(['install', 'demo-echo@1.0.0', '--no-start', ...flags, '--home', home, '--hub', b.proxy.url, '--json'], env);
    expect(r.code).toBe(2);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(String((r.result!.error as { message: string }).message)).toMatch(why);
    await expect(stat(home)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('is offered by every command that downloads', async () => {
    for (const cmd of [['install'], ['models', 'pull'], ['resume'], ['recover'], ['ui']]) {
      const r = await runCli([...cmd, '--help']);
      expect(r.stdout, cmd.join(' ')).toMatch(/--mirror <url>/);
    }
  });

  it('a paused job resumed with --mirror fetches the rest from the mirror', async () => {
    const home = await b.newHome();
    const zip = '/storage/services/demo-echo/1.0.0/linux-x64/service.zip';
    b.proxy.hold(zip);
    // The install that started the job waits for its end, wherever it is resumed.
    const child = spawnCli(['install', 'demo-echo@1.0.0', '--no-start', '--home', home, '--hub', b.proxy.url, '--json']);
    const first = waitForLine(child, 'result', 120_000);
    first.catch(() => undefined);
    child.stderr?.resume();
    let jobId = '';
    try {
      for (const end = Date.now() + 60_000; b.proxy.held(zip) === 0; ) {
        if (Date.now() > end) throw new Error('the download never reached the hub');
        await new Promise((r) => setTimeout(r, 20));
      }
      jobId = String(((await b.cli(home, ['jobs'])).result!.jobs as { id: string }[])[0]!.id);
      expect((await b.cli(home, ['pause', jobId])).result).toMatchObject({ ok: true, state: 'paused' });
    } finally {
      b.proxy.release(zip);
    }
    b.proxy.bytes.clear();
    const r = await b.cli(home, ['resume', jobId, '--mirror', good.url]);
    expect(r.result).toMatchObject({ ok: true, current: '1.0.0' });
    expect(await first).toMatchObject({ ok: true, state: 'committed', job_id: jobId });
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    expect(hubBlobBytes()).toBe(0);
    expect((await sourcesOf(home, jobId)).map((s) => [s.url, s.served])).toEqual([[good.url, 1]]);
  });
});
