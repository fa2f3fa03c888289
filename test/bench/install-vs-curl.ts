// Install vs curl+sha256+unzip: an end-to-end `modelhub install ID@VER --no-start` (fresh home
// per run) against `curl -o && openssl dgst -sha256 && unzip -q` from the same hub, in paired
// runs of alternating order. Ratio = time(install) / time(pipeline): bar ≤ 0.80, goal 0.65.
// Nothing is warmed for either side: no untimed first run, no reading the hub's file into the
// page cache — a user's install meets whatever cache the machine happens to have, and so does
// the pipeline. Also the installer's peak RSS (bar ≤ 200 MB, goal 150 MB, at any size; measured
// at a small and a large size, since memory must not grow with the package) and the number of
// event-log rows one install writes.
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { exportLineSchema, type ExportLine } from '../../src/engine/export-format.js';
import {
  cli,
  cliOk,
  findExecutable,
  fmtGBps,
  fmtMB,
  fmtMs,
  heading,
  isExecutable,
  log,
  max,
  median,
  pad,
  padLeft,
  runTimed,
  syncDisks,
  tempDir,
  type BenchOptions,
  type BenchReport,
  type Figure,
  type Fixtures,
  type PublishedService,
} from './lib.js';

const BAR_RATIO = 0.8;
const GOAL_RATIO = 0.65;
const BAR_RSS_MB = 200;
const GOAL_RSS_MB = 150;
const MEGABYTE = 1e6;
const LARGE_RUNS = 2;

/** How peak RSS is measured: GNU time's %M (max RSS of the child, KiB), else polling VmHWM. */
type RssMethod = { kind: 'gnu-time'; bin: string } | { kind: 'proc-vmhwm' };

async function rssMethod(): Promise<RssMethod> {
  const bin = '/usr/bin/time';
  if (await isExecutable(bin)) {
    const r = await runTimed(bin, ['-f', '%M', 'true']);
    if (r.code === 0 && /^\d+\s*$/.test(r.stderr.trim().split('\n').pop() ?? '')) return { kind: 'gnu-time', bin };
  }
  return { kind: 'proc-vmhwm' };
}

function describe(m: RssMethod): string {
  return m.kind === 'gnu-time' ? `${m.bin} -f %M (max resident set of the installer process)` : 'VmHWM from /proc/<pid>/status, polled every 10 ms';
}

async function readVmHwmKiB(pid: number): Promise<number | null> {
  try {
    const s = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(s);
    return m?.[1] === undefined ? null : Number(m[1]);
  } catch {
    return null;
  }
}

interface InstallRun {
  ms: number;
  rssBytes: number;
  rows: number;
  /** Wall time per machine state (from the event log), plus the CLI's startup and exit. */
  phases: Map<string, number>;
}

interface PipelineRun {
  ms: number;
  /** curl, openssl, unzip. */
  steps: Map<string, number>;
}

/**
 * Time spent in each state: the interval between two events belongs to the state the first
 * one led to; before the first event is the CLI's start (module loading, opening the home),
 * after the last its exit.
 */
function phasesOf(lines: ExportLine[], startedAt: number, exitedAt: number): Map<string, number> {
  const phases = new Map<string, number>();
  const add = (k: string, ms: number): void => {
    phases.set(k, (phases.get(k) ?? 0) + ms);
  };
  let prevTs = startedAt;
  let prevState = '(cli start)';
  for (const l of lines) {
    const ts = typeof l.ts === 'number' ? l.ts : Date.parse(l.ts);
    add(prevState, ts - prevTs);
    prevTs = ts;
    prevState = l.state;
  }
  add('(cli exit)', exitedAt - prevTs);
  return phases;
}

/** Median per key over runs, keys in first-seen order. */
function medianPhases(runs: Map<string, number>[]): [string, number][] {
  const keys: string[] = [];
  for (const r of runs) for (const k of r.keys()) if (!keys.includes(k)) keys.push(k);
  return keys.map((k) => [k, median(runs.map((r) => r.get(k) ?? 0))]);
}

function fmtPhases(p: [string, number][]): string {
  return p.map(([k, ms]) => `${k} ${Math.round(ms)}`).join(' | ');
}

class Runner {
  private n = 0;

  constructor(
    private readonly work: string,
    private readonly hubUrl: string,
    private readonly pubKey: string,
    private readonly rss: RssMethod,
  ) {}

  /** One `modelhub install ID@VER --no-start` in a fresh home (trust added before the clock starts). */
  async install(pkg: PublishedService): Promise<InstallRun> {
    const home = path.join(this.work, `home-${++this.n}`);
    try {
      await cliOk(['trust', 'add', this.pubKey], home, this.hubUrl);
      const rssFile = path.join(this.work, `rss-${this.n}.txt`);
      let polled = 0;
      let poller: NodeJS.Timeout | undefined;
      const r = await cli(['install', `${pkg.id}@${pkg.version}`, '--no-start'], home, this.hubUrl, {
        wrap: this.rss.kind === 'gnu-time' ? [this.rss.bin, '-o', rssFile, '-f', '%M'] : [],
        onSpawn: (pid) => {
          if (this.rss.kind !== 'proc-vmhwm') return;
          poller = setInterval(() => {
            void readVmHwmKiB(pid).then((k) => {
              if (k !== null) polled = Math.max(polled, k);
            });
          }, 10);
        },
      });
      if (poller !== undefined) clearInterval(poller);
      if (r.code !== 0 || r.result?.ok !== true || r.result.current !== pkg.version) {
        throw new Error(`install ${pkg.id}@${pkg.version} failed (exit ${r.code ?? r.signal ?? '?'}): ${JSON.stringify(r.result)}\n${r.stderr.slice(-2000)}`);
      }
      const kib = this.rss.kind === 'gnu-time' ? Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop()) : polled;
      const jobId = r.result.job_id;
      if (typeof jobId !== 'string') throw new Error(`install result has no job_id: ${JSON.stringify(r.result)}`);
      const ev = await cliOk(['events', jobId], home, this.hubUrl);
      const events = ev.result?.events;
      if (!Array.isArray(events)) throw new Error(`events ${jobId}: no events in ${JSON.stringify(ev.result)}`);
      const lines = events.map((e) => exportLineSchema.parse(e));
      return { ms: r.ms, rssBytes: kib * 1024, rows: lines.length, phases: phasesOf(lines, r.startedAt, r.exitedAt) };
    } finally {
      await rm(home, { recursive: true, force: true });
      await syncDisks();
    }
  }

  /** `curl -o pkg.zip URL && openssl dgst -sha256 pkg.zip && unzip -q pkg.zip -d out`, timed as one sh -c. */
  async pipeline(pkg: PublishedService): Promise<PipelineRun> {
    const dir = path.join(this.work, `ref-${++this.n}`);
    await mkdir(dir, { recursive: true });
    try {
      // The step timestamps (`date`, ~1 ms each) only split the figure; the clock is the whole sh.
      const script =
        'a=$(date +%s%N) && curl -sf --noproxy "*" -o pkg.zip "$1" && b=$(date +%s%N) && openssl dgst -sha256 pkg.zip && ' +
        'c=$(date +%s%N) && unzip -q pkg.zip -d out && d=$(date +%s%N) && echo "steps $a $b $c $d" >&2';
      const r = await runTimed('sh', ['-c', script, 'sh', pkg.url], { cwd: dir });
      if (r.code !== 0) throw new Error(`reference pipeline failed (exit ${r.code ?? r.signal ?? '?'}): ${r.stderr.slice(-2000)}`);
      if (!r.stdout.toLowerCase().includes(pkg.sha256.toLowerCase())) throw new Error(`reference pipeline: sha256 mismatch: ${r.stdout}`);
      const ns = (/steps (\d+) (\d+) (\d+) (\d+)/.exec(r.stderr) ?? []).slice(1).map((x) => Number(x) / 1e6);
      const [a = 0, b = 0, c = 0, d = 0] = ns;
      return { ms: r.ms, steps: new Map([['curl', b - a], ['openssl', c - b], ['unzip', d - c]]) };
    } finally {
      await rm(dir, { recursive: true, force: true });
      await syncDisks();
    }
  }
}

export async function benchInstall(o: BenchOptions, fx: Fixtures): Promise<BenchReport> {
  heading(`install vs curl+openssl+unzip: ${o.mb} MiB package, ${o.runs} paired runs; peak RSS also at ${o.smallMb} and ${o.largeMb} MiB; nothing warmed`);
  const report: BenchReport = { title: 'install vs curl+sha256+unzip', figures: [] };
  const missing: string[] = [];
  for (const tool of ['curl', 'openssl', 'unzip']) if ((await findExecutable(tool)) === null) missing.push(tool);
  const withReference = missing.length === 0;
  if (!withReference) log(`  NOTE: ${missing.join(', ')} not found on PATH — the reference pipeline is skipped; installer figures only`);

  const hub = await fx.hub();
  const big = await fx.sizedPackage(o.mb);
  const small = await fx.sizedPackage(o.smallMb);
  const rss = await rssMethod();
  log(`  peak RSS: ${describe(rss)}`);
  log(`  install:  dist/cli/modelhub.js install ${big.id}@${big.version} --no-start --home <fresh> --hub ${hub.url} --json`);
  log('  pipeline: sh -c \'curl -sf -o pkg.zip URL && openssl dgst -sha256 pkg.zip && unzip -q pkg.zip -d out\'');
  log('  (homes and outputs are removed and `sync` run between runs, outside the clock)');

  const work = await tempDir('install');
  const runner = new Runner(work, hub.url, hub.pubKey, rss);

  const rows: { install: InstallRun; refMs: number; ref: PipelineRun | null; order: string }[] = [];
  for (let i = 0; i < o.runs; i++) {
    const installFirst = i % 2 === 0;
    let inst: InstallRun;
    let ref: PipelineRun | null = null;
    if (installFirst || !withReference) {
      inst = await runner.install(big);
      if (withReference) ref = await runner.pipeline(big);
    } else {
      ref = await runner.pipeline(big);
      inst = await runner.install(big);
    }
    const refMs = ref?.ms ?? Number.NaN;
    const row = { install: inst, refMs, ref, order: installFirst ? 'install→ref' : 'ref→install' };
    rows.push(row);
    log(
      `  pair ${padLeft(String(i + 1), 2)} (${pad(row.order, 11)})  install ${padLeft(fmtMs(inst.ms), 8)} (${fmtGBps(big.size, inst.ms / 1000)})  ` +
        (withReference ? `pipeline ${padLeft(fmtMs(refMs), 8)} (${fmtGBps(big.size, refMs / 1000)})  ratio ${(inst.ms / refMs).toFixed(3)}  ` : '') +
        `peak RSS ${fmtMB(inst.rssBytes)}  log rows ${inst.rows}`,
    );
  }

  log(`  second size, ${o.smallMb} MiB (installer only, peak RSS):`);
  const smallRuns: InstallRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    const r = await runner.install(small);
    smallRuns.push(r);
    log(`  run  ${padLeft(String(i + 1), 2)}  install ${padLeft(fmtMs(r.ms), 8)}  peak RSS ${fmtMB(r.rssBytes)}  log rows ${r.rows}`);
  }
  // Built only now, so that its gigabyte does not sit in the page cache during the timed pairs.
  const large = await fx.sizedPackage(o.largeMb);
  log(`  third size, ${o.largeMb} MiB (installer only, peak RSS, ${LARGE_RUNS} runs):`);
  const largeRuns: InstallRun[] = [];
  for (let i = 0; i < LARGE_RUNS; i++) {
    const r = await runner.install(large);
    largeRuns.push(r);
    log(`  run  ${padLeft(String(i + 1), 2)}  install ${padLeft(fmtMs(r.ms), 8)} (${fmtGBps(large.size, r.ms / 1000)})  peak RSS ${fmtMB(r.rssBytes)}  log rows ${r.rows}`);
  }

  const instMed = median(rows.map((r) => r.install.ms));
  const refMed = median(rows.map((r) => r.refMs));
  const ratioMed = median(rows.map((r) => r.install.ms / r.refMs));
  const rssBig = max(rows.map((r) => r.install.rssBytes));
  const rssSmall = max(smallRuns.map((r) => r.rssBytes));
  const rssLarge = max(largeRuns.map((r) => r.rssBytes));
  const rssMax = Math.max(rssBig, rssSmall, rssLarge);
  const rowCounts = [...new Set([...rows, ...[...smallRuns, ...largeRuns].map((install) => ({ install }))].map((r) => r.install.rows))].sort((a, b) => a - b);

  log(`  median install  ${fmtMs(instMed)} (${fmtGBps(big.size, instMed / 1000)})`);
  log(`    where it goes, ms (median per state from the event log; (cli start) = spawn → first event): ${fmtPhases(medianPhases(rows.map((r) => r.install.phases)))}`);
  log(`    at ${o.smallMb} MiB: ${fmtPhases(medianPhases(smallRuns.map((r) => r.phases)))}`);
  const figures: Figure[] = [{ name: `install ${o.mb} MiB, median`, value: `${fmtMs(instMed)} (${fmtGBps(big.size, instMed / 1000)})`, verdict: 'info' }];
  if (withReference) {
    const verdict = ratioMed <= BAR_RATIO ? 'pass' : 'miss';
    const goal = ratioMed <= GOAL_RATIO ? 'meets goal' : 'misses goal';
    log(`  median pipeline ${fmtMs(refMed)} (${fmtGBps(big.size, refMed / 1000)})`);
    log(`    where it goes, ms (median per step): ${fmtPhases(medianPhases(rows.flatMap((r) => (r.ref === null ? [] : [r.ref.steps]))))}`);
    log(`  median of per-pair ratios install/pipeline: ${ratioMed.toFixed(3)}  (bar ≤ ${BAR_RATIO}, goal ${GOAL_RATIO}) → ${verdict === 'pass' ? 'WITHIN BAR' : 'MISSES BAR'}, ${goal}`);
    figures.push(
      { name: `curl+openssl+unzip ${o.mb} MiB, median`, value: `${fmtMs(refMed)} (${fmtGBps(big.size, refMed / 1000)})`, verdict: 'info' },
      { name: 'install/pipeline time, median of pairs', value: ratioMed.toFixed(3), verdict, note: `bar ≤ ${BAR_RATIO}, goal ${GOAL_RATIO}: ${goal}` },
    );
  } else {
    figures.push({ name: 'install/pipeline time', value: 'skipped', verdict: 'info', note: `missing ${missing.join(', ')}` });
  }
  const rssMB = rssMax / MEGABYTE;
  const rssVerdict = rssMB <= BAR_RSS_MB ? 'pass' : 'miss';
  const rssGoal = rssMB <= GOAL_RSS_MB ? 'meets goal' : 'misses goal';
  log(
    `  installer peak RSS: max ${(rssBig / MEGABYTE).toFixed(1)} MB at ${o.mb} MiB, ${(rssSmall / MEGABYTE).toFixed(1)} MB at ${o.smallMb} MiB, ` +
      `${(rssLarge / MEGABYTE).toFixed(1)} MB at ${o.largeMb} MiB ` +
      `(bar ≤ ${BAR_RSS_MB} MB, goal ${GOAL_RSS_MB} MB) → ${rssVerdict === 'pass' ? 'WITHIN BAR' : 'MISSES BAR'}, ${rssGoal}`,
  );
  log(`  event-log rows per install: ${rowCounts.join(', ')}`);
  figures.push(
    {
      name: 'installer peak RSS, max',
      value: `${(rssMax / MEGABYTE).toFixed(1)} MB (${(rssSmall / MEGABYTE).toFixed(1)} @ ${o.smallMb} MiB, ${(rssBig / MEGABYTE).toFixed(1)} @ ${o.mb} MiB, ${(rssLarge / MEGABYTE).toFixed(1)} @ ${o.largeMb} MiB)`,
      verdict: rssVerdict,
      note: `bar ≤ ${BAR_RSS_MB} MB, goal ${GOAL_RSS_MB} MB: ${rssGoal}; ${rss.kind}`,
    },
    { name: 'event-log rows per install', value: rowCounts.join(', '), verdict: 'info' },
  );
  report.figures.push(...figures);
  return report;
}
