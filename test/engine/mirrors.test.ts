// Mirrors (SPEC §12, issue 10 §2) through the real CLI and engine: a real hub behind the counting
// proxy, and static copies of its storage folder as mirrors — a small Node file server, nginx
// when it is installed, one with flipped bytes, an empty one (404), refused ports. Packages
// and model files come from the first mirror that serves them right, else the hub; metadata
// only from the hub; the job's events (and the library's downloadSource hook) name the source.
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { ProgressEvent } from '../../src/engine/progress.js';
import { ModelhubError } from '../../src/errors.js';
import { downloadSourceSchema, sourceUseSchema, type SourceUse } from '../../src/download/sources.js';
import type { Manifest } from '../../src/schemas/manifest.js';
import { spawnCli, type CliResult } from '../helpers/cli.js';
import { nginx, startNginx } from '../helpers/nginx.js';
import type { BuiltRelease } from '../helpers/releases.js';
import { copyStorage, flipByte, refusedUrl, startStaticMirror, type StaticMirror } from '../helpers/static-mirror.js';
import { tempDir } from '../helpers/tmp.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

const MiB = 1024 * 1024;
const ZIP = (v: string): string => `services/demo-echo/${v}/linux-x64/service.zip`;

let b: Bench;
let copy: string;
let good: StaticMirror;
let tampered: StaticMirror;
let empty: StaticMirror;
let dead: string;
let model: BuiltRelease;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 2 * MiB });
  await b.publish({ version: '1.1.0', modelBytes: 4 * MiB });
  model = await b.publishModel({ id: 'mirror-model', version: '1.0.0', files: { 'weights/a.bin': 2 * MiB, 'weights/b.bin': MiB, 'vocab.txt': 4096 } });

  const storage = path.join(b.work, 'storage');
  copy = await copyStorage(storage, path.join(b.work, 'mirror-good'));
  good = await startStaticMirror(copy);
  // A tampered copy: one byte of 1.1.0's central directory (every file inside is intact: only
  // the package's signed hash tells) and one byte of a model file.
  const bad = await copyStorage(storage, path.join(b.work, 'mirror-tampered'));
  const zip = path.join(bad, ...ZIP('1.1.0').split('/'));
  await flipByte(zip, centralDirectoryOffset(await readFile(zip)) + 4);
  await flipByte(path.join(bad, 'models', 'mirror-model', '1.0.0', 'weights', 'b.bin'), 100);
  tampered = await startStaticMirror(bad);
  const none = path.join(b.work, 'mirror-empty');
  await mkdir(none, { recursive: true });
  empty = await startStaticMirror(none);
  dead = await refusedUrl();
}, 120_000);

/** Where a zip's central directory starts (from its end-of-central-directory record). */
function centralDirectoryOffset(zip: Buffer): number {
  for (let i = zip.length - 22; i >= 0; i--) if (zip.readUInt32LE(i) === 0x06054b50) return zip.readUInt32LE(i + 16);
  throw new Error('no end of central directory');
}

/** Package and model bytes the hub sent (through the proxy): what a mirror should have spared it. */
function hubBlobBytes(): number {
  return [...b.proxy.bytes.entries()].filter(([p]) => p.startsWith('/storage/')).reduce((n, [, v]) => n + v, 0);
}

function archiveSize(version: string): number {
  const m = b.releases.get(`demo-echo@${version}`)!.manifest;
  if (m.kind !== 'service') throw new Error('service');
  return m.archive.size;
}

interface LoggedEvent {
  type: string;
  payload: { output?: Record<string, unknown> };
}

async function doneOutput(home: string, jobId: unknown, actor: string): Promise<Record<string, unknown>> {
  const r = await b.cli(home, ['events', String(jobId)]);
  const e = (r.result!.events as LoggedEvent[]).find((x) => x.type === `xstate.done.actor.${actor}`);
  if (e?.payload.output === undefined) throw new Error(`no ${actor} done event in ${r.stdout}`);
  return e.payload.output;
}

/** The download's record in the event log, through its zod schemas. */
async function downloadRecord(home: string, r: CliResult): Promise<{ source: { kind: string; url: string | null }; sources: SourceUse[]; prestaged: unknown }> {
  const out = await doneOutput(home, r.result!.job_id, 'downloadArchive');
  return { source: downloadSourceSchema.parse(out.source), sources: sourceUseSchema.array().parse(out.sources), prestaged: out.prestaged };
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Every installed file is the signed one. */
async function expectAsSigned(dir: string, manifest: Manifest): Promise<void> {
  for (const f of manifest.files) expect(sha256(await readFile(path.join(dir, ...f.path.split('/')))), f.path).toBe(f.sha256);
}

async function install(home: string, target: string, mirrors: string[], extra: string[] = []): Promise<CliResult> {
  b.proxy.bytes.clear();
  return b.cli(home, ['install', target, '--no-start', ...mirrors.flatMap((m) => ['--mirror', m]), ...extra]);
}

describe('a mirror serves the bytes', () => {
  it('install: every package byte from the mirror, none from the hub; the events and progress name it', async () => {
    const home = await b.newHome();
    const before = good.bytes(ZIP('1.0.0'));
    const r = await install(home, 'demo-echo@1.0.0', [good.url]);
    expect(r.result).toMatchObject({ ok: true, current: '1.0.0', rolled_back: false });
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    expect(hubBlobBytes()).toBe(0);
    expect(good.bytes(ZIP('1.0.0')) - before).toBe(archiveSize('1.0.0'));
    const rec = await downloadRecord(home, r);
    expect(rec.source).toEqual({ kind: 'mirror', url: good.url });
    expect(rec.sources).toEqual([{ kind: 'mirror', url: good.url, bytes: archiveSize('1.0.0'), served: 1, failures: 0, last_error: null }]);
    expect(rec.prestaged).toBe(true); // staged while downloading, from the mirror's (verified) bytes
  });

  it('models pull: every file from the mirror, none from the hub', async () => {
    const home = await b.newHome();
    b.proxy.bytes.clear();
    const r = await b.cli(home, ['models', 'pull', 'mirror-model@1.0.0', '--mirror', good.url]);
    expect(r.result).toMatchObject({ ok: true, version: '1.0.0' });
    expect(hubBlobBytes()).toBe(0);
    await expectAsSigned(path.join(home, 'models', 'mirror-model', '1.0.0'), model.manifest);
    const out = await doneOutput(home, r.result!.job_id, 'downloadModelFiles');
    const total = model.manifest.files.reduce((n, f) => n + f.size, 0);
    expect(sourceUseSchema.array().parse(out.sources)).toEqual([{ kind: 'mirror', url: good.url, bytes: total, served: 3, failures: 0, last_error: null }]);
  });

  it('a mirror that dies mid-package: the hub resumes the part where it stopped', async () => {
    const home = await b.newHome();
    const mirror = await startStaticMirror(copy);
    const N = MiB + 4321;
    mirror.dieAfter(N);
    b.proxy.log.length = 0;
    const r = await install(home, 'demo-echo@1.1.0', [mirror.url]);
    expect(r.result).toMatchObject({ ok: true, current: '1.1.0' });
    const hubAsks = b.proxy.log.filter((e) => e.path === `/storage/${ZIP('1.1.0')}`);
    expect(hubAsks.map((e) => e.range)).toEqual([`bytes=${N}-`]);
    expect(hubBlobBytes()).toBe(archiveSize('1.1.0') - N);
    const rec = await downloadRecord(home, r);
    expect(rec.source.kind).toBe('hub');
    expect(rec.sources).toMatchObject([
      { kind: 'mirror', url: mirror.url, bytes: N, served: 0, failures: 1 },
      { kind: 'hub', bytes: archiveSize('1.1.0') - N, served: 1 },
    ]);
    await expectAsSigned(path.join(home, 'services', 'demo-echo', '1.1.0'), b.releases.get('demo-echo@1.1.0')!.manifest);
  });

  describe.skipIf(!nginx.available)('nginx as the mirror', () => {
    it('serves the install and the model pull; the hub serves no blob byte', async () => {
      const server = await startNginx({ root: copy });
      const url = `${server.url}/`;
      const home = await b.newHome();
      const r = await install(home, 'demo-echo@1.1.0', [url]);
      expect(r.result, await server.errorLog()).toMatchObject({ ok: true, current: '1.1.0' });
      expect(hubBlobBytes()).toBe(0);
      expect((await downloadRecord(home, r)).source).toEqual({ kind: 'mirror', url });
      b.proxy.bytes.clear();
      const m = await b.cli(home, ['models', 'pull', 'mirror-model@1.0.0', '--mirror', url]);
      expect(m.result).toMatchObject({ ok: true });
      expect(hubBlobBytes()).toBe(0);
      await expectAsSigned(path.join(home, 'models', 'mirror-model', '1.0.0'), model.manifest);
    });
  });
});

describe('a mirror that fails is passed over', () => {
  it('flipped bytes in the package: the next mirror serves it; nothing staged from the bad bytes is used', async () => {
    const home = await b.newHome();
    const r = await install(home, 'demo-echo@1.1.0', [tampered.url, good.url]);
    expect(r.result).toMatchObject({ ok: true, current: '1.1.0', rolled_back: false });
    expect(hubBlobBytes()).toBe(0);
    const rec = await downloadRecord(home, r);
    expect(rec.source).toEqual({ kind: 'mirror', url: good.url });
    expect(rec.sources).toMatchObject([
      { url: tampered.url, served: 0, failures: 1, last_error: { code: 'CHECKSUM_MISMATCH' } },
      { url: good.url, served: 1, failures: 0 },
    ]);
    // The prestager had followed the tampered bytes: the stage step staged the good package itself.
    expect(rec.prestaged).toBe(false);
    await expectAsSigned(path.join(home, 'services', 'demo-echo', '1.1.0'), b.releases.get('demo-echo@1.1.0')!.manifest);
  });

  it('flipped bytes and no other mirror: the hub serves the package, the install succeeds', async () => {
    const home = await b.newHome();
    const r = await install(home, 'demo-echo@1.1.0', [tampered.url]);
    expect(r.result).toMatchObject({ ok: true, current: '1.1.0' });
    expect(await currentOf(home, 'demo-echo')).toBe('1.1.0');
    expect(hubBlobBytes()).toBe(archiveSize('1.1.0'));
    const rec = await downloadRecord(home, r);
    expect(rec.source.kind).toBe('hub');
    expect(rec.prestaged).toBe(false);
    await expectAsSigned(path.join(home, 'services', 'demo-echo', '1.1.0'), b.releases.get('demo-echo@1.1.0')!.manifest);
  });

  it('a flipped model file: that file from the hub, the others from the mirror', async () => {
    const home = await b.newHome();
    b.proxy.bytes.clear();
    const r = await b.cli(home, ['models', 'pull', 'mirror-model@1.0.0', '--mirror', tampered.url]);
    expect(r.result).toMatchObject({ ok: true });
    await expectAsSigned(path.join(home, 'models', 'mirror-model', '1.0.0'), model.manifest);
    expect(b.proxy.bytes.get('/storage/models/mirror-model/1.0.0/weights/b.bin')).toBe(MiB);
    expect(hubBlobBytes()).toBe(MiB);
    const uses = sourceUseSchema.array().parse((await doneOutput(home, r.result!.job_id, 'downloadModelFiles')).sources);
    expect(uses).toMatchObject([
      { kind: 'mirror', url: tampered.url, served: 2, failures: 1, last_error: { code: 'CHECKSUM_MISMATCH' } },
      { kind: 'hub', served: 1, bytes: MiB },
    ]);
  });

  it('a refused mirror is passed over at once, with no wait for the network', async () => {
    const home = await b.newHome();
    const t0 = Date.now();
    const r = await install(home, 'demo-echo@1.0.0', [dead]);
    expect(r.result).toMatchObject({ ok: true, current: '1.0.0' });
    expect(Date.now() - t0).toBeLessThan(20_000); // a network wait would be 30 minutes
    expect(r.lines.some((l) => l.type === 'progress' && l.phase === 'waiting_for_network')).toBe(false);
    const rec = await downloadRecord(home, r);
    expect(rec.source.kind).toBe('hub');
    expect(rec.sources[0]).toMatchObject({ kind: 'mirror', url: dead, failures: 1, last_error: { code: 'NETWORK_ERROR' } });
  });

  it('a mirror without the file (404), then a dead one: the hub serves it', async () => {
    const home = await b.newHome();
    const r = await install(home, 'demo-echo@1.0.0', [empty.url, dead]);
    expect(r.result).toMatchObject({ ok: true, current: '1.0.0' });
    expect(hubBlobBytes()).toBe(archiveSize('1.0.0'));
    const rec = await downloadRecord(home, r);
    expect(rec.source.kind).toBe('hub');
    expect(rec.sources.map((s) => [s.url, s.last_error?.code ?? null])).toEqual([
      [empty.url, 'NOT_FOUND'],
      [dead, 'NETWORK_ERROR'],
      [b.proxy.url, null],
    ]);
  });

  it('no source answers (dead mirrors, the hub away): the job waits for the network, then finishes', async () => {
    const home = await b.newHome();
    const zipPath = `/storage/${ZIP('1.0.0')}`;
    b.proxy.hold(zipPath);
    const child = spawnCli(['install', 'demo-echo@1.0.0', '--no-start', '--mirror', dead, '--home', home, '--hub', b.proxy.url, '--json']);
    const lines: Record<string, unknown>[] = [];
    let buf = '';
    child.stdout?.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
    });
    child.stderr?.resume();
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      for (const end = Date.now() + 60_000; b.proxy.held(zipPath) === 0; ) {
        if (Date.now() > end) throw new Error('the download never reached the hub');
        await new Promise((r) => setTimeout(r, 20));
      }
      b.proxy.blackout(2_500, 'refuse');
      b.proxy.release(zipPath);
      await exited;
    } finally {
      b.proxy.release(zipPath);
    }
    const result = lines.find((l) => l.type === 'result');
    expect(result).toMatchObject({ ok: true, current: '1.0.0' });
    expect(lines.some((l) => l.type === 'progress' && l.phase === 'waiting_for_network')).toBe(true);
    expect((await downloadRecord(home, { result } as CliResult)).source.kind).toBe('hub');
  });
});

describe('metadata only from the hub', () => {
  it('a mirror offering a newer version and its own listings changes nothing: the hub latest is installed', async () => {
    const evilRoot = await copyStorage(path.join(b.work, 'storage'), path.join(b.work, 'mirror-evil'));
    // A "9.9.0" package (a copy of 1.0.0) and forged listings where a confused client might look.
    await cp(path.join(evilRoot, 'services', 'demo-echo', '1.0.0'), path.join(evilRoot, 'services', 'demo-echo', '9.9.0'), { recursive: true });
    await mkdir(path.join(evilRoot, 'api', 'services'), { recursive: true });
    await writeFile(path.join(evilRoot, 'api', 'services', 'demo-echo'), JSON.stringify({ service_id: 'demo-echo', latest_version: '9.9.0', versions: [{ version: '9.9.0' }] }));
    const evil = await startStaticMirror(evilRoot);
    const home = await b.newHome();
    const r = await install(home, 'demo-echo', [evil.url]);
    expect(r.result).toMatchObject({ ok: true, version: '1.1.0', current: '1.1.0' });
    // The mirror was asked for the chosen package only: no listing, manifest or key.
    expect([...new Set(evil.log.map((e) => e.path))]).toEqual([ZIP('1.1.0')]);
    expect(hubBlobBytes()).toBe(0);
  });
});

describe('the library', () => {
  it('EngineOptions.mirrors: validated (INVALID_REQUEST), used, named by the downloadSource hook', async () => {
    const home = path.join(await tempDir(), 'home');
    let err: unknown;
    try {
      new Engine({ home, hub: b.proxy.url, mirrors: ['ftp://mirror.example.com/'] }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModelhubError);
    expect((err as ModelhubError).code).toBe('INVALID_REQUEST');

    const engine = new Engine({ home, hub: b.proxy.url, mirrors: [dead, good.url] });
    const asked: { kind: string; url: string }[] = [];
    engine.hooks.on('downloadSource', (e) => asked.push({ kind: e.kind, url: e.url }));
    const events: ProgressEvent[] = [];
    const sub = engine.progress$.subscribe((e) => events.push(e));
    try {
      await engine.trust.add(b.key.pub);
      b.proxy.bytes.clear();
      const r = await engine.install({ id: 'demo-echo', version: '1.0.0', start: false });
      expect(r).toMatchObject({ ok: true, current: '1.0.0' });
    } finally {
      sub.unsubscribe();
      engine.close();
    }
    expect(hubBlobBytes()).toBe(0);
    expect(asked).toEqual([
      { kind: 'mirror', url: dead },
      { kind: 'mirror', url: good.url },
    ]);
    // Progress keeps the shape of SPEC §9: the source is told by the hook and the job's events.
    expect(events.some((e) => e.phase === 'downloading')).toBe(true);
    for (const e of events) expect(Object.keys(e)).not.toContain('source');
  });
});
