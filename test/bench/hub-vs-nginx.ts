// Hub vs nginx: one package downloaded by curl from three servers, all reading the same file of
// one storage folder: the hub sending the bytes itself, nginx alone (deploy/nginx/mirror.conf,
// sendfile on), and nginx in front of a hub started with --accel-redirect
// (deploy/nginx/modelhub.conf: the hub checks, nginx sends). Each comparison is BENCH_RUNS pairs
// in alternating order, and the figure is the median of the pair ratios. Goals: the hub alone
// ≥ 0.45× nginx alone; hub behind nginx ≥ 0.9× nginx alone.
//
// Page cache: the package was just published (written) by the hub, so every contender reads it
// from memory alike; there is no warm-up beyond one untimed download per server, which checks
// that it serves the whole file.
import { createHub } from '../../hub/server.js';
import { deployConfig, nginxBinary, startNginxProcess, type RunningNginx } from '../helpers/nginx-process.js';
import {
  envInt,
  fmtGBps,
  isExecutable,
  heading,
  log,
  median,
  pad,
  padLeft,
  runTimed,
  onCleanup,
  type BenchOptions,
  type BenchReport,
  type Fixtures,
} from './lib.js';

const GOAL_HUB = 0.45;
const GOAL_FRONT = 0.9;
const ACCEL_PREFIX = '/_modelhub_storage';

interface Download {
  bytes: number;
  seconds: number;
}

/** One full download with curl, body discarded; curl's own size and total time. */
async function curlDownload(url: string, expectBytes: number): Promise<Download> {
  const r = await runTimed('curl', ['-s', '--noproxy', '*', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', url]);
  const [code, size, total] = r.stdout.trim().split(/\s+/);
  if (r.code !== 0 || code !== '200') throw new Error(`curl ${url}: exit ${r.code ?? r.signal ?? '?'}, HTTP ${code ?? '?'} ${r.stderr}`);
  const bytes = Number(size);
  const seconds = Number(total);
  if (bytes !== expectBytes) throw new Error(`curl ${url}: ${bytes} bytes, expected ${expectBytes}`);
  if (!(seconds > 0)) throw new Error(`curl ${url}: bad time_total "${total ?? ''}"`);
  return { bytes, seconds };
}

interface Pairs {
  /** Median throughputs, bytes/s. */
  contender: number;
  nginx: number;
  /** Median of the per-pair ratios contender/nginx. */
  ratio: number;
}

/** `runs` pairs, alternating which goes first; the ratio of throughputs is t_nginx / t_contender. */
async function pairs(name: string, contenderUrl: string, nginxUrl: string, size: number, runs: number): Promise<Pairs> {
  const rows: { c: Download; n: Download; ratio: number }[] = [];
  for (let i = 0; i < runs; i++) {
    const contenderFirst = i % 2 === 0;
    const first = await curlDownload(contenderFirst ? contenderUrl : nginxUrl, size);
    const second = await curlDownload(contenderFirst ? nginxUrl : contenderUrl, size);
    const [c, n] = contenderFirst ? [first, second] : [second, first];
    const row = { c, n, ratio: n.seconds / c.seconds };
    rows.push(row);
    log(
      `  pair ${padLeft(String(i + 1), 2)} (${pad(contenderFirst ? `${name}→nginx` : `nginx→${name}`, 19)})  ${name} ${padLeft(fmtGBps(c.bytes, c.seconds), 10)}  ` +
        `nginx ${padLeft(fmtGBps(n.bytes, n.seconds), 10)}  ratio ${row.ratio.toFixed(3)}`,
    );
  }
  return {
    contender: median(rows.map((r) => r.c.bytes / r.c.seconds)),
    nginx: median(rows.map((r) => r.n.bytes / r.n.seconds)),
    ratio: median(rows.map((r) => r.ratio)),
  };
}

export async function benchHubVsNginx(o: BenchOptions, fx: Fixtures): Promise<BenchReport> {
  const mb = envInt('BENCH_HUB_MB', o.quick ? 32 : 256);
  heading(`hub vs nginx: ${mb} MiB download, ${o.runs} alternating pairs per comparison (curl, body to /dev/null)`);
  const report: BenchReport = { title: 'hub vs nginx', figures: [] };
  if ((await runTimed('curl', ['--version'])).code !== 0) {
    report.skipped = 'curl not found on PATH';
    log(`  SKIPPED: ${report.skipped}`);
    return report;
  }
  const envNginx = process.env.BENCH_NGINX;
  const binary = envNginx !== undefined && envNginx !== '' ? envNginx : 'path' in nginxBinary ? nginxBinary.path : undefined;
  if (binary === undefined || !(await isExecutable(binary))) {
    report.skipped =
      binary === undefined
        ? `${'reason' in nginxBinary ? nginxBinary.reason : 'no nginx'} (or set BENCH_NGINX) — nginx comparison skipped`
        : `BENCH_NGINX=${binary} is not an executable — nginx comparison skipped`;
    log(`  SKIPPED: ${report.skipped}`);
    return report;
  }

  const hub = await fx.hub();
  const pkg = await fx.sizedPackage(mb);
  // A second hub on the same storage folder and catalog (as hubs behind one nginx share them).
  const accelHub = await createHub({ storage: hub.storageRoot, port: 0, publisherKeys: [], accelRedirect: ACCEL_PREFIX });
  onCleanup('close the --accel-redirect hub', () => accelHub.close());
  const start = async (label: string, config: string): Promise<RunningNginx> => {
    const n = await startNginxProcess({ binary, config });
    onCleanup(`stop ${label}`, () => n.stop());
    return n;
  };
  const alone = await start('nginx alone', await deployConfig('mirror.conf', { storage: hub.storageRoot }));
  const front = await start('nginx in front', await deployConfig('modelhub.conf', { hub: accelHub.url, storage: hub.storageRoot }));
  const storagePath = `/storage/${pkg.storageRel}`;
  const targets = { hub: pkg.url, nginx: `${alone.url}${storagePath}`, front: `${front.url}${storagePath}` };
  log(`  nginx:   ${binary} (deploy/nginx/*.conf: sendfile on, tcp_nopush on)`);
  log(`  hub:     ${targets.hub}`);
  log(`  nginx:   ${targets.nginx}   (alone, the storage folder as a static mirror)`);
  log(`  front:   ${targets.front}   (nginx → hub --accel-redirect ${ACCEL_PREFIX} → nginx sends)`);
  for (const url of Object.values(targets)) await curlDownload(url, pkg.size);

  log('  -- the hub sending the bytes itself vs nginx alone');
  const direct = await pairs('hub', targets.hub, targets.nginx, pkg.size, o.runs);
  log('  -- nginx in front of the hub (X-Accel-Redirect) vs nginx alone');
  const behind = await pairs('front', targets.front, targets.nginx, pkg.size, o.runs);

  const okHub = direct.ratio >= GOAL_HUB;
  const okFront = behind.ratio >= GOAL_FRONT;
  log(`  hub alone / nginx:    ${direct.ratio.toFixed(3)}×  (goal ≥ ${GOAL_HUB}) → ${okHub ? 'MEETS GOAL' : 'MISSES GOAL'}`);
  log(`  hub behind / nginx:   ${behind.ratio.toFixed(3)}×  (goal ≥ ${GOAL_FRONT}) → ${okFront ? 'MEETS GOAL' : 'MISSES GOAL'}`);
  report.figures.push(
    { name: `hub download (${mb} MiB), median`, value: fmtGBps(direct.contender, 1), verdict: 'info' },
    { name: `nginx download (${mb} MiB), median`, value: fmtGBps(direct.nginx, 1), verdict: 'info' },
    { name: 'hub/nginx throughput, median of pairs', value: `${direct.ratio.toFixed(3)}×`, verdict: okHub ? 'pass' : 'miss', note: `goal ≥ ${GOAL_HUB}` },
    { name: `hub behind nginx (${mb} MiB), median`, value: fmtGBps(behind.contender, 1), verdict: 'info' },
    { name: 'hub behind nginx/nginx, median of pairs', value: `${behind.ratio.toFixed(3)}×`, verdict: okFront ? 'pass' : 'miss', note: `goal ≥ ${GOAL_FRONT}` },
  );
  return report;
}
