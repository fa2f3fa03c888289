// Node commands: install, uninstall, list, recover, jobs, events, replay, trust, start, stop,
// status. Read-only commands open engine.db read-only and never create or change anything.
import type { Command } from 'commander';
import os from 'node:os';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../fs/durable.js';
import type { Engine } from '../../engine/engine.js';
import { openDbReadOnly } from '../../engine/db.js';
import { toExportLine } from '../../engine/export-format.js';
import { Home } from '../../engine/home.js';
import { JobsStore, type JobRow } from '../../engine/jobs-store.js';
import { Registry } from '../../engine/registry.js';
import { recordsNeedRebuild, recordsNotice } from '../../engine/records.js';
import { modelPath, ModelNotAvailableError } from '../../engine/model-path.js';
import { HubClient } from '../../engine/hub-client.js';
import { defaultFetch } from '../../download/fetch-like.js';
import type { ProgressEvent } from '../../engine/progress.js';
import { ModelhubError, type ErrorCode } from '../../errors.js';
import { platformAdapter } from '../../platform/adapter.js';
import { serviceStatuses } from '../../engine/status.js';
import { platformSchema, versionSchema } from '../../schemas/common.js';
import type { Output } from '../output.js';
import { addDownloadOptions, downloadOptionsOf } from '../download-options.js';
import { action, EXIT_FAILED, globalsOf, UsageError } from '../run.js';

export function homeOf(cmd: Command): string {
  return globalsOf(cmd).home ?? process.env.MODELHUB_HOME ?? platformAdapter.defaultHome(process.env, os.homedir());
}

function hubOf(cmd: Command): string | undefined {
  const h = globalsOf(cmd).hub ?? process.env.MODELHUB_HUB;
  return h === '' ? undefined : h;
}

/**
 * The scheduler of `models path` (SPEC §10): `--scheduler URL`, else $MODELHUB_SCHEDULER, with
 * `--node-token`, else $MODELHUB_NODE_TOKEN, as its bearer token. Returns how to report a
 * MODEL_NOT_AVAILABLE answer there — resolving within 200 ms whatever the scheduler does — or null
 * when none is set. A bad URL is bad usage. Loaded on use: other commands do not pay for http.
 */
async function schedulerReporterOf(cmd: Command): Promise<((err: ModelNotAvailableError) => Promise<void>) | null> {
  const o = cmd.opts<{ scheduler?: string; nodeToken?: string }>();
  const url = o.scheduler ?? process.env.MODELHUB_SCHEDULER;
  if (url === undefined || url === '') return null;
  const { CLI_REPORT_BUDGET_MS, postReport, schedulerTargetOf } = await import('../../engine/scheduler-report.js');
  const { nodeIdForReadOnly } = await import('../../engine/node-id.js');
  const { reportOf } = await import('../../engine/model-path.js');
  let target;
  try {
    target = schedulerTargetOf(url, o.nodeToken ?? process.env.MODELHUB_NODE_TOKEN);
  } catch (err) {
    throw new UsageError(`--scheduler: ${(err as Error).message}`);
  }
  if (target === null) return null;
  const home = homeOf(cmd);
  return async (err) => {
    const outcome = await postReport(target, reportOf(err, nodeIdForReadOnly(home)), CLI_REPORT_BUDGET_MS);
    if (outcome.delivered) return;
    process.stderr.write(`warning: the scheduler was not told (${outcome.error})\n`);
    // The request is destroyed; only a name lookup still in the resolver could hold the process
    // past its budget. Exit regardless, shortly after (the answer was printed long before).
    setTimeout(() => process.exit(), 20).unref();
  };
}

/** ID or ID@VERSION. */
export function parseTarget(text: string): { id: string; version: string | null } {
  const at = text.indexOf('@');
  const id = at < 0 ? text : text.slice(0, at);
  const version = at < 0 ? null : text.slice(at + 1);
  if (id === '' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) throw new UsageError(`"${text}" is not ID or ID@VERSION`);
  if (version !== null && !versionSchema.safeParse(version).success) throw new UsageError(`"${version}" is not a SemVer version`);
  return { id, version };
}

function requireHub(cmd: Command): void {
  if (hubOf(cmd) === undefined) throw new UsageError('no hub: pass --hub URL or set MODELHUB_HUB');
}

/**
 * $MODELHUB_LEASE_TTL_MS: how long a job's holder on another host (a home on a shared disk)
 * may stay silent before its job is taken over; default 15 s.
 */
function leaseTtlOf(env: NodeJS.ProcessEnv): { leaseTtlMs?: number } {
  const ms = Number(env.MODELHUB_LEASE_TTL_MS);
  return env.MODELHUB_LEASE_TTL_MS !== undefined && Number.isInteger(ms) && ms >= 100 ? { leaseTtlMs: ms } : {};
}

/** The engine and the trust store are loaded on use: read-only commands start faster. */
async function openEngine(cmd: Command): Promise<Engine> {
  const { Engine } = await import('../../engine/engine.js');
  return new Engine({ home: homeOf(cmd), hub: hubOf(cmd), ...downloadOptionsOf(cmd), ...leaseTtlOf(process.env) });
}

/** Runs `body` with an engine that is closed afterwards, whatever happens. */
export async function withEngine<T>(cmd: Command, body: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = await openEngine(cmd);
  try {
    return await body(engine);
  } finally {
    engine.close();
  }
}

async function trustStore(cmd: Command) {
  const { TrustStore } = await import('../../trust/store.js');
  return new TrustStore(new Home(homeOf(cmd)).trust);
}

export function progressLine(out: Output): (p: ProgressEvent) => void {
  return (p) => out.progress(p);
}

/** A finished job's result line: ok, or the job's error with the same fields beside it. */
export function reportJob(out: Output, r: { ok: boolean; state: string; error: { code: ErrorCode; message: string } | null }, fields: Record<string, unknown>, human: string): number | undefined {
  if (r.ok) {
    out.result(fields, human);
    return undefined;
  }
  out.failure(new ModelhubError(r.error?.code ?? 'INTERNAL', r.error?.message ?? `job ended in ${r.state}`), fields);
  return EXIT_FAILED;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function jobLine(j: JobRow): Record<string, unknown> {
  return { id: j.id, kind: j.kind, target: j.target, state: j.state, started_at: iso(j.started_at), ended_at: iso(j.ended_at), restores: j.restores };
}


/**
 * The read-only view; null when the home has no engine.db yet. Records that were lost (engine.db
 * missing beside installed versions, or unreadable) or half rebuilt are rebuilt first: the one
 * write a read-only command makes, since its answer would otherwise be wrong (SPEC §13).
 */
async function readOnly(cmd: Command): Promise<{ jobs: JobsStore; registry: Registry; close: () => void; home: Home } | null> {
  const home = new Home(homeOf(cmd));
  if (recordsNeedRebuild(home)) await withEngine(cmd, (engine) => engine.restoreRecords());
  const db = openDbReadOnly(home.db);
  if (db === null) return null;
  return { jobs: new JobsStore(db), registry: new Registry(db), close: () => db.close(), home };
}

export function registerNodeCommands(program: Command): void {
  addDownloadOptions(
    program
      .command('install')
      .description('install or update a service: download, verify, stage, switch, start, health-check, commit — or roll back')
      .argument('<target>', 'ID or ID@VERSION')
      .option('--platform <p>', 'release platform (default: this machine)')
      .option('--allow-downgrade', 'install a version lower than the current one')
      .option('--no-start', 'install and commit without running the service'),
  ).action(
      action(async (out, cmd, targetText: string) => {
        const o = cmd.opts<{ platform?: string; allowDowngrade?: boolean; start: boolean }>();
        const target = parseTarget(targetText);
        requireHub(cmd);
        const platform = o.platform === undefined ? undefined : platformSchema.safeParse(o.platform);
        if (platform !== undefined && !platform.success) throw new UsageError(`--platform: unknown platform "${o.platform}"`);
        return withEngine(cmd, async (engine) => {
          const r = await engine.install(
            { id: target.id, version: target.version, allowDowngrade: o.allowDowngrade === true, start: o.start, platform: platform?.data },
            progressLine(out),
          );
          const fields = { id: r.id, version: r.version, current: r.current, rolled_back: r.rolled_back, job_id: r.jobId, state: r.state, attached: r.attached };
          const code = reportJob(out, r, fields, `${r.id} ${r.version ?? ''} installed; current ${r.current ?? 'none'}`);
          if (code !== undefined && !out.json) process.stderr.write(`${r.rolled_back ? 'rolled back; ' : ''}current: ${r.current ?? 'none'}\n`);
          return code;
        });
      }),
    );

  program
    .command('uninstall')
    .description('stop and remove a service, or one of its versions; or remove a model (or one version) and the stored files no other version uses')
    .argument('<target>', 'ID or ID@VERSION')
    .action(
      action(async (out, cmd, targetText: string) => {
        const target = parseTarget(targetText);
        return withEngine(cmd, async (engine) => {
          const r = await engine.uninstall({ id: target.id, version: target.version });
          const fields = { id: target.id, removed: r.removed, current: r.current, job_id: r.jobId, state: r.state };
          return reportJob(out, r, fields, `${target.id}: removed ${r.removed.join(', ') || 'nothing'}`);
        });
      }),
    );

  program
    .command('list')
    .description('installed services and models, with the current version of each')
    .action(
      action(async (out, cmd) => {
        const view = await readOnly(cmd);
        const services = view?.registry.services().map((s) => ({ id: s.id, current: s.current, versions: s.versions, running: s.running })) ?? [];
        const models = view?.registry.models() ?? [];
        view?.close();
        const human = [
          ...services.map((s) => `service ${s.id}  current ${s.current ?? '-'}  versions ${s.versions.join(', ')}${s.running ? '  (running)' : ''}`),
          ...models.map((m) => `model ${m.id}  versions ${m.versions.join(', ')}`),
        ].join('\n');
        out.result({ services, models }, human === '' ? 'nothing installed' : human);
      }),
    );

  // Recovery resumes interrupted downloads: the download options (mirrors included) apply.
  addDownloadOptions(program.command('recover').description('finish or roll back interrupted jobs')).action(
      action(async (out, cmd) => {
        return withEngine(cmd, async (engine) => {
          const r = await engine.recover();
          out.result(
            { recovered: r.recovered.map((j) => ({ job_id: j.jobId, kind: j.kind, target: j.target, from: j.from, state: j.state })), busy: r.busy, paused: r.paused, swept: r.swept, pointers_repaired: r.pointers },
            r.recovered.length === 0 ? 'nothing to recover' : r.recovered.map((j) => `${j.kind} ${j.target}: ${j.from} → ${j.state}`).join('\n'),
          );
        });
      }),
    );

  program
    .command('jobs')
    .description('jobs and their states')
    .action(
      action(async (out, cmd) => {
        const view = await readOnly(cmd);
        const jobs = view?.jobs.allJobs().map(jobLine) ?? [];
        // Said once, as one notice, when engine.db was lost: the jobs before then are not known.
        const records = view === null ? null : recordsNotice(view.jobs);
        view?.close();
        const notice =
          records === null
            ? ''
            : `records rebuilt from the version folders at ${records.rebuilt_at} (engine.db was ${records.reason === 'missing' ? 'missing' : `not a database${records.kept_as === null ? '' : `; kept as ${records.kept_as}`}`}); jobs before then are not known\n`;
        out.result({ jobs, records_rebuilt: records }, notice + (jobs.map((j) => `${String(j.id)}  ${String(j.kind)}  ${String(j.target)}  ${String(j.state)}`).join('\n') || 'no jobs'));
      }),
    );

  program
    .command('events')
    .description('the event log of one job or of all jobs')
    .argument('[job]', 'job id')
    .option('--export <file>', 'write the log as JSON lines for `modelhub replay`')
    .action(
      action(async (out, cmd, jobId: string | undefined) => {
        const view = await readOnly(cmd);
        if (view === null && jobId !== undefined) throw new ModelhubError('NOT_FOUND', `no job ${jobId}`);
        const kinds = new Map((view?.jobs.allJobs() ?? []).map((j) => [j.id, j.kind]));
        if (jobId !== undefined && !kinds.has(jobId)) throw new ModelhubError('NOT_FOUND', `no job ${jobId}`);
        const lines = (view?.jobs.events(jobId) ?? []).map((e) => toExportLine(e, kinds.get(e.job_id) ?? 'install'));
        view?.close();
        const o = cmd.opts<{ export?: string }>();
        if (o.export !== undefined) {
          await writeFileAtomic(o.export, lines.map((l) => JSON.stringify(l)).join('\n') + (lines.length > 0 ? '\n' : ''));
          out.result({ file: o.export, count: lines.length }, `${lines.length} events → ${o.export}`);
          return;
        }
        out.result({ events: lines }, lines.map((l) => `${l.seq}  ${String(l.ts)}  ${l.job_id.slice(0, 8)}  ${l.type}  → ${l.state}`).join('\n') || 'no events');
      }),
    );

  program
    .command('replay')
    .description('replay an exported event log through the machines, without side effects')
    .argument('<file>')
    .action(
      action(async (out, _cmd, file: string) => {
        const text = await readFile(file, 'utf8').catch((err: unknown) => {
          throw new UsageError(`${file}: ${(err as Error).message}`);
        });
        const { parseExport, replay } = await import('../../engine/replay.js');
        const r = replay(parseExport(text));
        const states = r.states.map((s) => ({ seq: s.seq, job_id: s.job_id, type: s.type, state: s.reproduced, recorded: s.recorded }));
        const human = r.states.map((s) => `${String(s.seq).padStart(5)}  ${s.type.padEnd(44)} → ${s.reproduced}${s.ok ? '' : `   (log: ${s.recorded})`}`).join('\n');
        if (r.diverged_at === null) {
          out.result({ states, diverged_at: null }, `${human}\nreplayed ${r.states.length} events: every recorded state reproduced`);
          return;
        }
        if (out.json) {
          process.stdout.write(JSON.stringify({ type: 'result', ok: false, states, diverged_at: r.diverged_at, error: { code: 'INVALID_REQUEST', message: r.reason } }) + '\n');
        } else {
          process.stdout.write(`${human}\n`);
          process.stderr.write(`diverged at seq ${r.diverged_at}: ${r.reason ?? ''}\n`);
        }
        return EXIT_FAILED;
      }),
    );

  const trust = program.command('trust').description("the node's trusted publisher keys");
  trust
    .command('add')
    .argument('<key.pub>')
    .action(
      action(async (out, cmd, file: string) => {
        const k = await (await trustStore(cmd)).add(file);
        out.result({ key_id: k.key_id, file: k.file }, `trusted ${k.key_id}`);
      }),
    );
  trust.command('list').action(
    action(async (out, cmd) => {
      const keys = await (await trustStore(cmd)).list();
      const describe = (k: (typeof keys)[number]): string =>
        `${k.key_id}  ${k.source === 'rotated' ? `rotated from ${k.rotated_from ?? '?'}` : 'added'}${k.revoked_by !== null ? `  REVOKED by ${k.revoked_by}` : ''}`;
      out.result(
        { keys: keys.map((k) => ({ key_id: k.key_id, file: k.file, source: k.source, rotated_from: k.rotated_from, revoked: k.revoked_by !== null, revoked_by: k.revoked_by, revoked_at: k.revoked_at })) },
        keys.map(describe).join('\n') || 'no trusted keys',
      );
    }),
  );
  trust
    .command('remove')
    .argument('<keyid>')
    .action(
      action(async (out, cmd, keyId: string) => {
        const removed = await (await trustStore(cmd)).remove(keyId);
        out.result({ key_id: removed }, `removed ${removed}`);
      }),
    );

  program
    .command('start')
    .description('start an installed service (its current version) and wait until healthy')
    .argument('<id>')
    .action(
      action(async (out, cmd, id: string) => {
        return withEngine(cmd, async (engine) => {
          const s = await engine.start(id);
          const fields = { id, version: s.version, pid: s.pid, port: s.port, already_running: s.alreadyRunning };
          out.result(fields, s.alreadyRunning ? `${id} ${s.version} already runs (pid ${s.pid}, port ${s.port})` : `${id} ${s.version} running (pid ${s.pid}, port ${s.port})`);
        });
      }),
    );

  program
    .command('stop')
    .description('stop a running service')
    .argument('<id>')
    .action(
      action(async (out, cmd, id: string) => {
        return withEngine(cmd, async (engine) => {
          const r = await engine.stop(id);
          out.result({ id, stopped: r.stopped }, r.stopped ? `${id} stopped` : `${id} was not running`);
        });
      }),
    );

  program
    .command('status')
    .description('installed services: pid, port, health')
    .argument('[id]')
    .action(
      action(async (out, cmd, id: string | undefined) => {
        const view = await readOnly(cmd);
        const services = view === null ? [] : await serviceStatuses(view, id).finally(() => view.close());
        if (id !== undefined && services.length === 0) throw new ModelhubError('NOT_FOUND', `${id} is not installed`);
        // Created on first use when the home exists; null on a home that does not (node-id.ts).
        const { nodeIdForReadOnly } = await import('../../engine/node-id.js');
        const nodeId = nodeIdForReadOnly(homeOf(cmd));
        out.result(
          { node_id: nodeId, services },
          services.map((s) => `${s.id} ${s.version ?? '-'}  ${s.running ? `pid ${s.pid} port ${s.port} ${s.healthy ? 'healthy' : 'UNHEALTHY'}` : 'stopped'}`).join('\n') || 'nothing installed',
        );
      }),
    );

  const models = program.command('models').description('models: pull, path, list, ranking');
  addDownloadOptions(models.command('pull').description('download a model version, verified file by file').argument('<target>', 'ID or ID@VERSION')).action(
      action(async (out, cmd, targetText: string) => {
        const target = parseTarget(targetText);
        requireHub(cmd);
        return withEngine(cmd, async (engine) => {
          const r = await engine.pullModel({ id: target.id, version: target.version }, progressLine(out));
          const fields = { id: r.id, version: r.version, path: r.path, job_id: r.jobId, state: r.state, attached: r.attached };
          return reportJob(out, r, fields, `${r.id} ${r.version ?? ''} → ${r.path ?? ''}`);
        });
      }),
    );
  models
    .command('path')
    .argument('<target>', 'ID or ID@VERSION')
    .option('--scheduler <url>', 'also POST a MODEL_NOT_AVAILABLE answer there (default: $MODELHUB_SCHEDULER)')
    .option('--node-token <token>', "the scheduler's bearer token (default: $MODELHUB_NODE_TOKEN)")
    .action(
      action(async (out, cmd, targetText: string) => {
        const target = parseTarget(targetText);
        const report = await schedulerReporterOf(cmd);
        const view = await readOnly(cmd);
        let unavailable: ModelNotAvailableError;
        try {
          const p = modelPath(view, target.id, target.version);
          out.result({ id: target.id, path: p }, p);
          return;
        } catch (err) {
          if (!(err instanceof ModelNotAvailableError)) throw err;
          unavailable = err;
        } finally {
          view?.close();
        }
        if (out.json) {
          process.stdout.write(JSON.stringify({ type: 'result', ok: false, id: target.id, error: { code: unavailable.code, reason: unavailable.reason, message: unavailable.message } }) + '\n');
        } else {
          process.stderr.write(`error ${unavailable.code}: ${unavailable.message}\n`);
        }
        // The answer is out; the scheduler's report then gets at most 200 ms of this process.
        await report?.(unavailable);
        return EXIT_FAILED;
      }),
    );
  models.command('list').action(
    action(async (out, cmd) => {
      const view = await readOnly(cmd);
      const list = view?.registry.models().map((m) => ({ id: m.id, versions: m.versions, path: view.home.modelDir(m.id, m.versions[m.versions.length - 1] ?? '') })) ?? [];
      view?.close();
      out.result({ models: list }, list.map((m) => `${m.id}  ${m.versions.join(', ')}`).join('\n') || 'no models');
    }),
  );
  models
    .command('ranking')
    .option('--limit <n>', 'how many', '20')
    .action(
      action(async (out, cmd) => {
        const hub = hubOf(cmd);
        if (hub === undefined) throw new UsageError('no hub: pass --hub URL or set MODELHUB_HUB');
        const limit = Number(cmd.opts<{ limit: string }>().limit);
        if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive integer');
        const ranking = await new HubClient(hub, defaultFetch()).ranking(limit, AbortSignal.timeout(10_000));
        out.result({ ranking }, ranking.map((r) => `${r.rank}. ${r.model_id}  ${r.request_count}`).join('\n') || 'no demand recorded');
      }),
    );

  // The page installs and pulls: the download options (mirrors included) apply to its jobs.
  addDownloadOptions(
    program
      .command('ui')
      .description('the service-management page on 127.0.0.1')
      .option('--port <n>', 'TCP port (0 picks a free one)', '8790'),
  ).action(
      action(async (out, cmd) => {
        const port = Number(cmd.opts<{ port: string }>().port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be 0..65535');
        const engine = await openEngine(cmd);
        await engine.recover();
        const { startUiServer } = await import('../../ui/server.js');
        const ui = await startUiServer({ engine, port, warn: (m) => process.stderr.write(`warning: ${m}\n`) });
        out.event({ type: 'ready', url: ui.url });
        if (!out.json) process.stdout.write(`modelhub ui on ${ui.url}\n`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        await engine.shutdown();
        await ui.close();
        engine.close();
      }),
    );
}
