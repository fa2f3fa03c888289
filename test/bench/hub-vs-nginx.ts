// Hub vs nginx: the same package downloaded from the hub (/storage/services/…/service.zip) and
// from nginx serving the hub's storage directory (sendfile on), with the same client (curl),
// in paired runs of alternating order, after warming the page cache. Goal: hub ≥ 0.45× nginx.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  findExecutable,
  fmtGBps,
  freePort,
  isExecutable,
  heading,
  log,
  median,
  pad,
  padLeft,
  runTimed,
  sleep,
  spawnDaemon,
  tempDir,
  warmFile,
  killChild,
  onCleanup,
  type BenchOptions,
  type BenchReport,
  type Fixtures,
} from './lib.js';

const GOAL_RATIO = 0.45;

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

/** Temp-path directives for the modules this nginx was built with (so nothing lands in /var/lib/nginx). */
async function tempPathDirectives(nginx: string, dir: string): Promise<string[]> {
  const v = await runTimed(nginx, ['-V']);
  const text = v.stderr + v.stdout;
  const lines = [`client_body_temp_path ${path.join(dir, 'body')};`];
  for (const m of ['proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    if (!text.includes(`--without-http_${m}_module`)) lines.push(`${m}_temp_path ${path.join(dir, m)};`);
  }
  return lines;
}

interface Nginx {
  url: string;
  stop(): Promise<void>;
}

async function startNginx(nginx: string, root: string): Promise<Nginx> {
  const dir = await tempDir('nginx');
  const port = await freePort();
  const errorLog = path.join(dir, 'error.log');
  const conf = path.join(dir, 'nginx.conf');
  await mkdir(path.join(dir, 'logs'), { recursive: true });
  const config = [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${path.join(dir, 'nginx.pid')};`,
    `error_log ${errorLog} warn;`,
    'events { worker_connections 64; }',
    'http {',
    `  access_log ${path.join(dir, 'access.log')};`,
    ...(await tempPathDirectives(nginx, dir)).map((l) => '  ' + l),
    '  types { application/zip zip; }',
    '  default_type application/octet-stream;',
    '  sendfile on;',
    '  tcp_nopush on;',
    '  server {',
    `    listen 127.0.0.1:${port};`,
    `    root ${root};`,
    '    location / { }',
    '  }',
    '}',
    '',
  ].join('\n');
  await writeFile(conf, config);
  const child = spawnDaemon(nginx, ['-p', dir + '/', '-c', conf, '-e', errorLog]);
  const stop = async (): Promise<void> => killChild(child);
  onCleanup('stop nginx', stop);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    const r = await runTimed('curl', ['-s', '--noproxy', '*', '-o', '/dev/null', '-w', '%{http_code}', `${url}/`]);
    if (r.code === 0 && r.stdout.trim() !== '000') return { url, stop };
    await sleep(50);
  }
  const errors = await readFile(errorLog, 'utf8').catch(() => '');
  await stop();
  throw new Error(`nginx did not come up on ${url}:\n${errors.slice(-2000)}`);
}

export async function benchHubVsNginx(o: BenchOptions, fx: Fixtures): Promise<BenchReport> {
  heading(`hub vs nginx: ${o.mb} MiB download, ${o.runs} paired runs (curl, body to /dev/null)`);
  const report: BenchReport = { title: 'hub vs nginx', figures: [] };
  if ((await findExecutable('curl')) === null) {
    report.skipped = 'curl not found on PATH';
    log(`  SKIPPED: ${report.skipped}`);
    return report;
  }
  const envNginx = process.env.BENCH_NGINX;
  const nginxBin =
    envNginx !== undefined && envNginx !== ''
      ? (await isExecutable(envNginx))
        ? envNginx
        : null
      : await findExecutable('nginx', ['/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']);
  if (nginxBin === null) {
    report.skipped =
      envNginx !== undefined && envNginx !== ''
        ? `BENCH_NGINX=${envNginx} is not an executable — nginx comparison skipped`
        : 'nginx not found (PATH, /usr/sbin, /usr/local/sbin, /usr/local/nginx/sbin; or set BENCH_NGINX) — nginx comparison skipped (apt-get install nginx)';
    log(`  SKIPPED: ${report.skipped}`);
    return report;
  }

  const hub = await fx.hub();
  const pkg = await fx.sizedPackage(o.mb);
  let nginx: Nginx;
  try {
    nginx = await startNginx(nginxBin, hub.storageRoot);
  } catch (err) {
    report.skipped = `nginx failed to start — comparison skipped: ${(err as Error).message.split('\n')[0] ?? ''}`;
    log(`  SKIPPED: ${(err as Error).message}`);
    return report;
  }
  const targets = {
    hub: pkg.url,
    nginx: `${nginx.url}/${pkg.storageRel}`,
  };
  log(`  nginx:   ${nginxBin} (daemon off, master_process off, sendfile on, tcp_nopush on)`);
  log(`  hub:     ${targets.hub}`);
  log(`  nginx:   ${targets.nginx}`);

  // Warm the page cache and both servers; checks both serve the whole file.
  await warmFile(pkg.file);
  await curlDownload(targets.hub, pkg.size);
  await curlDownload(targets.nginx, pkg.size);

  const rows: { hub: Download; nginx: Download; ratio: number; order: string }[] = [];
  for (let i = 0; i < o.runs; i++) {
    const order: ('hub' | 'nginx')[] = i % 2 === 0 ? ['hub', 'nginx'] : ['nginx', 'hub'];
    const got: Partial<Record<'hub' | 'nginx', Download>> = {};
    for (const which of order) got[which] = await curlDownload(targets[which], pkg.size);
    const h = got.hub;
    const n = got.nginx;
    if (h === undefined || n === undefined) throw new Error('missing a download');
    // ratio of throughputs hub/nginx = t_nginx / t_hub
    const row = { hub: h, nginx: n, ratio: n.seconds / h.seconds, order: order.join('→') };
    rows.push(row);
    log(
      `  pair ${padLeft(String(i + 1), 2)} (${pad(row.order, 11)})  hub ${padLeft(fmtGBps(h.bytes, h.seconds), 10)}  ` +
        `nginx ${padLeft(fmtGBps(n.bytes, n.seconds), 10)}  ratio ${row.ratio.toFixed(3)}`,
    );
  }
  await nginx.stop();

  const hubMed = median(rows.map((r) => r.hub.bytes / r.hub.seconds));
  const ngxMed = median(rows.map((r) => r.nginx.bytes / r.nginx.seconds));
  const ratioMed = median(rows.map((r) => r.ratio));
  const ok = ratioMed >= GOAL_RATIO;
  log(`  median hub   ${fmtGBps(hubMed, 1)}`);
  log(`  median nginx ${fmtGBps(ngxMed, 1)}`);
  log(`  median of per-pair ratios hub/nginx: ${ratioMed.toFixed(3)}×  (goal ≥ ${GOAL_RATIO}) → ${ok ? 'MEETS GOAL' : 'MISSES GOAL'}`);
  report.figures.push(
    { name: `hub download (${o.mb} MiB), median`, value: fmtGBps(hubMed, 1), verdict: 'info' },
    { name: `nginx download (${o.mb} MiB), median`, value: fmtGBps(ngxMed, 1), verdict: 'info' },
    { name: 'hub/nginx throughput, median of pairs', value: `${ratioMed.toFixed(3)}×`, verdict: ok ? 'pass' : 'miss', note: `goal ≥ ${GOAL_RATIO}` },
  );
  return report;
}
