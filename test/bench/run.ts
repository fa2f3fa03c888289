// `npm run bench` = `npm run build && node dist/test/bench/run.js [hub|install|rollback|scheduler|segmented|delta]… [--quick]`
//
//   hub       hub vs nginx: one 256 MiB package by curl from the hub, nginx alone and nginx in front of a
//             hub with --accel-redirect (goals: hub ≥ 0.45× nginx, hub behind nginx ≥ 0.9× nginx)
//   install   `modelhub install` vs curl+openssl+unzip, nothing warmed (bar ≤ 0.80, goal 0.65), peak RSS at
//             three sizes (goal ≤ 150 MB), log rows
//   rollback  failed health check → previous version healthy again
//   scheduler getModelPath() → MODEL_NOT_AVAILABLE → report received by a local scheduler, p50/p99
//             over 200 calls (goal p99 < 300 ms, aim < 20 ms)
//   segmented a 96 MiB package through a proxy capped at 8 MB/s per connection: one connection vs
//             `modelhub install` (goal ≥ 4×, ≤ 1.05× bytes served), and the out-of-order read-back cost
//   delta     a code-only update of a 200 MiB package (goal ≤ 2 % of it served) against a full
//             install; a second model version sharing a 100 MiB file (goal ≤ 2 % of the file
//             served, both versions ≤ 1.3× the disk of one)
//
// Sizes from the environment: BENCH_MB (400; --quick 32), BENCH_HUB_MB (256; 32), BENCH_RUNS (5; 2), BENCH_SMALL_MB (64; 8), BENCH_LARGE_MB (1024; 64),
// BENCH_ROLLBACK_RUNS (5; 2), BENCH_HEALTH_TIMEOUT_MS (2000), BENCH_NGINX (nginx binary),
// BENCH_SCHEDULER_CALLS (200), BENCH_SCHEDULER_CLI_RUNS (10; 5), BENCH_SEG_MB (96; 48),
// BENCH_SEG_RUNS (3; 1), BENCH_SEG_RATE (8000000), BENCH_DELTA_MB (200; 48), BENCH_SHARED_MB (100; 24).
// Benchmarks print figures; a missed goal does not fail the run, an error does (exit 1).
import { benchDelta } from './delta.js';
import { benchHubVsNginx } from './hub-vs-nginx.js';
import { benchInstall } from './install-vs-curl.js';
import { benchOptions, Fixtures, heading, interrupt, log, pad, runCleanups, type BenchOptions, type BenchReport } from './lib.js';
import { benchRollback } from './rollback.js';
import { benchScheduler } from './scheduler.js';
import { benchSegmented } from './segmented.js';

const BENCHES: Record<string, (o: BenchOptions, fx: Fixtures) => Promise<BenchReport>> = {
  hub: benchHubVsNginx,
  install: benchInstall,
  rollback: benchRollback,
  scheduler: benchScheduler,
  segmented: benchSegmented,
  delta: benchDelta,
};

function usage(): string {
  return (
    'usage: node dist/test/bench/run.js [hub|install|rollback|scheduler|segmented|delta]… [--quick]\n' +
    '  env: BENCH_MB, BENCH_HUB_MB, BENCH_RUNS, BENCH_SMALL_MB, BENCH_LARGE_MB, BENCH_ROLLBACK_RUNS, BENCH_HEALTH_TIMEOUT_MS, BENCH_NGINX, BENCH_SCHEDULER_CALLS, BENCH_SCHEDULER_CLI_RUNS, BENCH_SEG_MB, BENCH_SEG_RUNS, BENCH_SEG_RATE, BENCH_DELTA_MB, BENCH_SHARED_MB'
  );
}

function printSummary(o: BenchOptions, reports: BenchReport[], errors: { name: string; error: Error }[]): void {
  heading('SUMMARY');
  log(`  ${o.quick ? 'quick run; ' : ''}package ${o.mb} MiB, ${o.runs} paired runs, RSS sizes ${o.smallMb} and ${o.largeMb} MiB, ${o.rollbackRuns} rollbacks; node ${process.version}, ${process.platform}-${process.arch}`);
  const width = Math.max(40, ...reports.flatMap((r) => r.figures.map((f) => f.name.length)));
  for (const r of reports) {
    log(`  [${r.title}]`);
    if (r.skipped !== undefined) log(`    SKIPPED: ${r.skipped}`);
    for (const f of r.figures) {
      const mark = f.verdict === 'pass' ? 'OK  ' : f.verdict === 'miss' ? 'MISS' : '    ';
      log(`    ${mark} ${pad(f.name, width)}  ${f.value}${f.note === undefined ? '' : `   (${f.note})`}`);
    }
  }
  for (const e of errors) log(`  [${e.name}] ERROR: ${e.error.message.split('\n')[0] ?? ''}`);
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    log(usage());
    return 0;
  }
  const quick = args.includes('--quick');
  const names = args.filter((a) => !a.startsWith('-'));
  const unknown = names.filter((n) => !(n in BENCHES) && n !== 'all');
  const flags = args.filter((a) => a.startsWith('-') && a !== '--quick');
  if (unknown.length > 0 || flags.length > 0) {
    process.stderr.write(`unknown argument(s): ${[...unknown, ...flags].join(' ')}\n${usage()}\n`);
    return 2;
  }
  const selected = names.length === 0 || names.includes('all') ? Object.keys(BENCHES) : [...new Set(names)];
  const o = benchOptions(quick);
  log(`modelhub benchmarks: ${selected.join(', ')}${quick ? ' (--quick)' : ''}`);

  const fx = new Fixtures();
  const reports: BenchReport[] = [];
  const errors: { name: string; error: Error }[] = [];
  try {
    for (const name of selected) {
      const bench = BENCHES[name];
      if (bench === undefined) continue;
      try {
        reports.push(await bench(o, fx));
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        errors.push({ name, error });
        log(`  ERROR in ${name}: ${error.stack ?? error.message}`);
      }
    }
  } finally {
    await runCleanups();
  }
  printSummary(o, reports, errors);
  return errors.length > 0 ? 1 : 0;
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n${sig}: cleaning up …\n`);
    void interrupt()
      .then(runCleanups)
      .finally(() => process.exit(130));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await runCleanups();
    process.exitCode = 1;
  },
);
