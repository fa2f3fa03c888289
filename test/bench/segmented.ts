// Segments against a server that caps each connection (issue 8): through the test proxy at
// 8 MB/s per connection (in a process of its own, in front of the bench's hub), a 96 MiB package
// fetched by one connection (curl) and installed by the engine (`modelhub install --no-start`,
// fresh home), in alternating order. Goal: the install ≥ 4× the speed of one connection, with
// ≤ 1.05× the package's bytes served. Also the download phase alone (from the install's progress
// events), time per job state, the most connections open at once, and what hashing pieces that
// arrive out of order costs: the downloader in this process reports the bytes written ahead of
// the hash frontier and read back from disk, and the time that took.
//
// Env: BENCH_SEG_MB (96; --quick 48), BENCH_SEG_RUNS (3; --quick 1), BENCH_SEG_RATE (8000000 bytes/s).
import { spawn } from 'node:child_process';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { downloadFile } from '../../src/download/download.js';
import { exportLineSchema, type ExportLine } from '../../src/engine/export-format.js';
import { cli, cliOk, fmtMiB, fmtMs, heading, log, max, median, onCleanup, REPO, runOk, tempDir, type BenchOptions, type BenchReport, type Figure, type Fixtures, type PublishedService } from './lib.js';

const GOAL_SPEEDUP = 4;
const GOAL_SERVED = 1.05;

function envNum(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return n;
}

const mbps = (bytes: number, ms: number): string => `${((bytes / ms) * 1000 / 1e6).toFixed(1)} MB/s`;

interface Run {
  ms: number;
  served: number;
  /** Install only: the download phase, the most connections open at once, time per job state. */
  downloadMs?: number;
  peak?: number;
  phases?: Map<string, number>;
}

/** Wall time per job state from the event log; before the first event the CLI's start, after the last its exit. */
function phasesOf(lines: ExportLine[], startedAt: number, exitedAt: number): Map<string, number> {
  const phases = new Map<string, number>();
  let prev = { ts: startedAt, state: '(cli start)' };
  for (const l of lines) {
    const ts = typeof l.ts === 'number' ? l.ts : Date.parse(l.ts);
    phases.set(prev.state, (phases.get(prev.state) ?? 0) + ts - prev.ts);
    prev = { ts, state: l.state };
  }
  phases.set('(cli exit)', exitedAt - prev.ts);
  return phases;
}

/** Reads the first `bytes` of a file (from the page cache) 1 MiB at a time, as the catch-up does. */
async function timeReads(file: string, bytes: number): Promise<number> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024);
    const t0 = performance.now();
    for (let pos = 0; pos < bytes; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - pos), pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
    }
    return performance.now() - t0;
  } finally {
    await fh.close();
  }
}

/** The test proxy (test/helpers/proxy-server.ts) in a child process, driven over IPC. */
interface RemoteProxy {
  url: string;
  /** Counters back to zero. */
  reset(): Promise<void>;
  /** Package bytes served per path since the reset, and the most responses open at once. */
  stats(): Promise<{ served: Record<string, number>; peak: number }>;
}

interface ProxyReply {
  id: number;
  url: string;
  served: Record<string, number>;
  peak: number;
}

async function startRemoteProxy(target: string, rate: number): Promise<RemoteProxy> {
  const mod = pathToFileURL(path.join(REPO, 'dist', 'test', 'helpers', 'proxy-server.js')).href;
  const code = `
    const { startProxyServer } = await import(${JSON.stringify(mod)});
    const p = await startProxyServer(${JSON.stringify(target)});
    p.rate = ${rate};
    const reply = (id) => process.send({ id, url: p.url, served: Object.fromEntries(p.bytes), peak: p.peak });
    process.on('message', (m) => {
      if (m.op === 'reset') { p.bytes.clear(); p.peak = 0; p.log = []; }
      reply(m.id);
    });
    process.on('disconnect', () => void p.close().then(() => process.exit(0)));
    reply(0);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  onCleanup('stop the proxy', () => {
    if (child.connected) child.disconnect();
    if (child.exitCode === null) child.kill();
  });
  const waiting = new Map<number, (r: ProxyReply) => void>();
  child.on('message', (m: ProxyReply) => waiting.get(m.id)?.(m));
  let next = 1;
  const call = (op: string): Promise<ProxyReply> =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      child.send({ id, op });
    });
  const first = await new Promise<ProxyReply>((resolve, reject) => {
    waiting.set(0, resolve);
    child.once('exit', (c) => reject(new Error(`the proxy process exited (${c ?? '?'})`)));
  });
  return {
    url: first.url,
    reset: async () => void (await call('reset')),
    stats: async () => {
      const r = await call('stats');
      return { served: r.served, peak: r.peak };
    },
  };
}

async function servedOf(proxy: RemoteProxy, pkg: PublishedService): Promise<number> {
  return (await proxy.stats()).served[`/storage/${pkg.storageRel}`] ?? 0;
}

async function oneConnection(proxy: RemoteProxy, pkg: PublishedService, work: string, n: number): Promise<Run> {
  const out = path.join(work, `curl-${n}.zip`);
  await proxy.reset();
  const r = await runOk('curl', ['-sS', '--fail', '-o', out, `${proxy.url}/storage/${pkg.storageRel}`]);
  await rm(out, { force: true });
  return { ms: r.ms, served: await servedOf(proxy, pkg) };
}

async function install(proxy: RemoteProxy, pkg: PublishedService, work: string, pubKey: string, n: number): Promise<Run> {
  const home = path.join(work, `home-${n}`);
  await cliOk(['trust', 'add', pubKey], home, proxy.url);
  await proxy.reset();
  const r = await cli(['install', `${pkg.id}@${pkg.version}`, '--no-start'], home, proxy.url);
  if (r.code !== 0 || r.result?.ok !== true) throw new Error(`install failed: ${JSON.stringify(r.result)}\n${r.stderr.slice(-2000)}`);
  const dl = r.lines.filter((l) => l.type === 'progress' && l.phase === 'downloading') as unknown as { ts: number; bytesDone: number }[];
  const first = dl[0];
  const done = dl.find((e) => e.bytesDone >= pkg.size);
  const ev = await cliOk(['events', String(r.result.job_id)], home, proxy.url);
  const events = Array.isArray(ev.result?.events) ? ev.result.events.map((e) => exportLineSchema.parse(e)) : [];
  await rm(home, { recursive: true, force: true });
  const stats = await proxy.stats();
  return {
    ms: r.ms,
    served: stats.served[`/storage/${pkg.storageRel}`] ?? 0,
    downloadMs: first !== undefined && done !== undefined ? done.ts - first.ts : undefined,
    peak: stats.peak,
    phases: phasesOf(events, r.startedAt, r.exitedAt),
  };
}

export async function benchSegmented(o: BenchOptions, fx: Fixtures): Promise<BenchReport> {
  const mb = envNum('BENCH_SEG_MB', o.quick ? 48 : 96);
  const runs = Math.round(envNum('BENCH_SEG_RUNS', o.quick ? 1 : 3));
  const rate = envNum('BENCH_SEG_RATE', 8e6);
  heading(`Segments: a ${mb} MiB package through a proxy capped at ${(rate / 1e6).toFixed(1)} MB/s per connection`);
  const hub = await fx.hub();
  const pkg = await fx.sizedPackage(mb);
  const proxy = await startRemoteProxy(hub.url, rate);
  const work = await tempDir('segmented');

  const single: Run[] = [];
  const engine: Run[] = [];
  for (let i = 0; i < runs; i++) {
    // Alternating order, so that neither side always runs on a warmer machine.
    const order = i % 2 === 0 ? (['curl', 'install'] as const) : (['install', 'curl'] as const);
    for (const side of order) {
      if (side === 'curl') {
        const r = await oneConnection(proxy, pkg, work, i);
        single.push(r);
        log(`  run ${i + 1}: one connection (curl)   ${fmtMs(r.ms)}  ${mbps(pkg.size, r.ms)}  served ${(r.served / pkg.size).toFixed(3)}×`);
      } else {
        const r = await install(proxy, pkg, work, hub.pubKey, i);
        engine.push(r);
        log(
          `  run ${i + 1}: modelhub install        ${fmtMs(r.ms)}  ${mbps(pkg.size, r.ms)}  download ${r.downloadMs === undefined ? '?' : fmtMs(r.downloadMs)}  served ${(r.served / pkg.size).toFixed(3)}×  connections ≤ ${r.peak ?? '?'}`,
        );
      }
    }
  }

  // The downloader in this process, for what the engine's CLI does not print: how many bytes
  // came ahead of the hash frontier and had to be read back from disk, and what that cost. The
  // hashing is paid anyway (from memory had the bytes come in order); the reads are the extra,
  // so they are timed once more on their own, from the page cache, with nothing else running.
  await proxy.reset();
  const libFile = path.join(work, 'lib.zip');
  const t0 = performance.now();
  const lib = await downloadFile({ url: `${proxy.url}/storage/${pkg.storageRel}`, dest: libFile, expectedSize: pkg.size, expectedSha256: pkg.sha256, durable: false });
  const libMs = performance.now() - t0;
  const pureReadMs = await timeReads(libFile, lib.readBack.bytes);
  await rm(libFile, { force: true });
  const rb = lib.readBack;
  log(
    `  downloader in-process: ${fmtMs(libMs)}, ${lib.connections} connections, ${lib.splits} splits; read back ${fmtMiB(rb.bytes)} (${((rb.bytes / pkg.size) * 100).toFixed(0)}% of the file): waiting for reads ${fmtMs(rb.readMs)}, hashing ${fmtMs(rb.hashMs)}; the same reads alone ${fmtMs(pureReadMs)}`,
  );

  const keys = [...new Set(engine.flatMap((r) => [...(r.phases?.keys() ?? [])]))];
  log(`  install, median ms per state: ${keys.map((k) => `${k} ${Math.round(median(engine.map((r) => r.phases?.get(k) ?? 0)))}`).join(' | ')}`);
  const oneMs = median(single.map((r) => r.ms));
  const engMs = median(engine.map((r) => r.ms));
  const dlMs = median(engine.map((r) => r.downloadMs ?? Number.NaN));
  const speedup = oneMs / engMs;
  const dlSpeedup = oneMs / dlMs;
  const worstServed = max(engine.map((r) => r.served / pkg.size));
  const figures: Figure[] = [
    { name: 'one connection (curl), median', value: `${fmtMs(oneMs)} (${mbps(pkg.size, oneMs)})`, verdict: 'info' },
    { name: 'modelhub install, median', value: `${fmtMs(engMs)} (${mbps(pkg.size, engMs)})`, verdict: 'info' },
    { name: `install speed vs one connection (goal ≥ ${GOAL_SPEEDUP}×)`, value: `${speedup.toFixed(2)}×`, verdict: speedup >= GOAL_SPEEDUP ? 'pass' : 'miss', note: 'end to end, CLI start to exit' },
    { name: 'download phase vs one connection', value: `${dlSpeedup.toFixed(2)}×`, verdict: 'info', note: `download ${fmtMs(dlMs)}` },
    { name: `bytes served / package, worst run (goal ≤ ${GOAL_SERVED})`, value: `${worstServed.toFixed(3)}×`, verdict: worstServed <= GOAL_SERVED ? 'pass' : 'miss' },
    { name: 'connections open at once, most', value: String(max(engine.map((r) => r.peak ?? 0))), verdict: 'info' },
    {
      name: 'out-of-order read-back (in-process)',
      value: `${fmtMiB(rb.bytes)} (${((rb.bytes / pkg.size) * 100).toFixed(0)}% of the file)`,
      verdict: 'info',
      note: `reads ${fmtMs(pureReadMs)} alone (${fmtMs(rb.readMs)} waited while downloading), hashing ${fmtMs(rb.hashMs)} (paid anyway), in a ${fmtMs(libMs)} download`,
    },
  ];
  return { title: 'segmented', figures };
}
