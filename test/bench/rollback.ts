// Rollback time: from a failed health check to the previous version healthy again. demo-echo
// 1.0.0 (healthy) is installed and running; 1.1.0 answers /health with 503 and has a short
// health timeout, so `install demo-echo@1.1.0` fails its health check and rolls back. From the
// job's exported event log: ts(xstate.done.actor.rollBack) − ts(xstate.error.actor.checkHealth).
// rollBack restarts the previous version and waits for it to be healthy before it completes.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { exportLineSchema, type ExportLine } from '../../src/engine/export-format.js';
import {
  cli,
  cliOk,
  fmtMs,
  heading,
  log,
  max,
  median,
  min,
  onCleanup,
  padLeft,
  parseJsonLines,
  tempDir,
  type BenchOptions,
  type BenchReport,
  type Fixtures,
} from './lib.js';

const ID = 'demo-echo';
const HEALTH_FAILED = 'xstate.error.actor.checkHealth';
const ROLLED_BACK = 'xstate.done.actor.rollBack';
const STARTED = 'xstate.done.actor.startService';

function tsOf(line: ExportLine): number {
  return typeof line.ts === 'number' ? line.ts : Date.parse(line.ts);
}

function find(lines: ExportLine[], type: string): ExportLine {
  const l = lines.find((x) => x.type === type);
  if (l === undefined) throw new Error(`no "${type}" event in the job's log (types: ${[...new Set(lines.map((x) => x.type))].join(', ')})`);
  return l;
}

interface StatusLine {
  id: string;
  version: string | null;
  pid: number | null;
  healthy: boolean | null;
}

function statusOf(result: Record<string, unknown> | undefined): StatusLine | undefined {
  const services = result?.services;
  if (!Array.isArray(services)) return undefined;
  return (services as StatusLine[]).find((s) => s.id === ID);
}

/**
 * Pids of processes started from this home (services get SERVICE_DIR=<home>/services/…), so a
 * service restarted by a job that was interrupted mid-way is found too. Linux /proc only.
 */
async function servicesUnder(home: string): Promise<number[]> {
  const found: number[] = [];
  const entries = await readdir('/proc').catch(() => [] as string[]);
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const env = await readFile(`/proc/${e}/environ`, 'utf8').catch(() => '');
    if (env.split('\0').some((v) => v.startsWith(`SERVICE_DIR=${home}${path.sep}`))) found.push(Number(e));
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function benchRollback(o: BenchOptions, fx: Fixtures): Promise<BenchReport> {
  heading(`rollback: failed health check → previous version healthy, ${o.rollbackRuns} runs (health timeout ${o.healthTimeoutMs} ms)`);
  const report: BenchReport = { title: 'rollback', figures: [] };
  const hub = await fx.hub();
  await hub.publishService({ id: ID, version: '1.0.0' });
  await hub.publishService({ id: ID, version: '1.1.0', behavior: 'unhealthy', healthTimeoutMs: o.healthTimeoutMs });
  const work = await tempDir('rollback');
  const home = path.join(work, 'home');
  await cliOk(['trust', 'add', hub.pubKey], home, hub.url);

  // Stop the service at the end, whatever happens; kill it if stop did not.
  const pids = new Set<number>();
  onCleanup('stop demo-echo', async () => {
    const st = await cli(['status', ID], home, hub.url, { cleanup: true }).catch(() => undefined);
    const pid = statusOf(st?.result)?.pid;
    if (typeof pid === 'number') pids.add(pid);
    await cli(['stop', ID], home, hub.url, { cleanup: true }).catch(() => undefined);
    for (const p of await servicesUnder(home)) pids.add(p);
    for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL');
  });

  const first = await cliOk(['install', `${ID}@1.0.0`], home, hub.url);
  log(`  installed and started ${ID}@1.0.0 in ${fmtMs(first.ms)}`);

  const rollbackMs: number[] = [];
  const budgetMs: number[] = [];
  const wallMs: number[] = [];
  for (let i = 0; i < o.rollbackRuns; i++) {
    const r = await cli(['install', `${ID}@1.1.0`], home, hub.url);
    const res = r.result;
    if (res?.ok !== false || res.rolled_back !== true || res.current !== '1.0.0') {
      throw new Error(`install ${ID}@1.1.0 was expected to fail and roll back to 1.0.0: ${JSON.stringify(res)}\n${r.stderr.slice(-2000)}`);
    }
    const jobId = res.job_id;
    if (typeof jobId !== 'string') throw new Error(`no job_id in ${JSON.stringify(res)}`);
    const file = path.join(work, `events-${i + 1}.jsonl`);
    await cliOk(['events', jobId, '--export', file], home, hub.url);
    const lines = parseJsonLines(await readFile(file, 'utf8')).map((l) => exportLineSchema.parse(l));
    const tFail = tsOf(find(lines, HEALTH_FAILED));
    const tBack = tsOf(find(lines, ROLLED_BACK));
    const tStarted = tsOf(find(lines, STARTED));
    const st = statusOf((await cliOk(['status', ID], home, hub.url)).result);
    if (typeof st?.pid === 'number') pids.add(st.pid);
    if (st?.version !== '1.0.0' || st.healthy !== true) throw new Error(`after the rollback ${ID} should run 1.0.0 healthy: ${JSON.stringify(st)}`);
    rollbackMs.push(tBack - tFail);
    budgetMs.push(tFail - tStarted);
    wallMs.push(r.ms);
    log(
      `  run ${padLeft(String(i + 1), 2)}  health failed → 1.0.0 healthy ${padLeft(fmtMs(tBack - tFail), 8)}   ` +
        `(1.1.0 start → health failed ${fmtMs(tFail - tStarted)}; whole failing install ${fmtMs(r.ms)}; ${lines.length} events; status: 1.0.0 pid ${st.pid ?? '?'} healthy)`,
    );
  }

  const med = median(rollbackMs);
  log(`  rollback time (health check failed → previous version healthy): median ${fmtMs(med)}, min ${fmtMs(min(rollbackMs))}, max ${fmtMs(max(rollbackMs))}`);
  report.figures.push(
    { name: 'rollback: health failed → previous healthy, median', value: fmtMs(med), verdict: 'info' },
    { name: 'rollback: health failed → previous healthy, max', value: fmtMs(max(rollbackMs)), verdict: 'info' },
    { name: 'failing update, whole install (median)', value: fmtMs(median(wallMs)), verdict: 'info', note: `health timeout ${o.healthTimeoutMs} ms; start → failure ${fmtMs(median(budgetMs))}` },
  );
  return report;
}
