// Jobs the user controls (SPEC §10): pause, resume and cancel a job by the id `modelhub jobs`
// shows, also one another process runs; gc removes what no job owns.
import type { Command } from 'commander';
import path from 'node:path';
import { jobIdSchema } from '../../api/requests.js';
import { addDownloadOptions } from '../download-options.js';
import { action, UsageError } from '../run.js';
import { progressLine, reportJob, withEngine } from './node.js';

function jobIdOf(text: string): string {
  const r = jobIdSchema.safeParse(text);
  if (!r.success) throw new UsageError(`"${text}" is not a job id (see modelhub jobs)`);
  return r.data;
}

export function registerJobCommands(program: Command): void {
  program
    .command('pause')
    .description('pause a resolving or downloading job: no more bytes flow, its partial files stay')
    .argument('<job>', 'a job id from modelhub jobs')
    .action(
      action(async (out, cmd, jobText: string) => {
        const jobId = jobIdOf(jobText);
        return withEngine(cmd, async (engine) => {
          const r = await engine.pause(jobId);
          out.result({ job_id: r.jobId, state: r.state }, `job ${r.jobId} paused; resume it with modelhub resume ${r.jobId}`);
        });
      }),
    );

  addDownloadOptions(program.command('resume').description('resume a paused job here, from its partial files, and wait for its result').argument('<job>', 'a job id from modelhub jobs')).action(
    action(async (out, cmd, jobText: string) => {
      const jobId = jobIdOf(jobText);
      return withEngine(cmd, async (engine) => {
        const r = await engine.resume(jobId, progressLine(out));
        const base = { job_id: r.jobId, kind: r.kind, target: r.target, state: r.state, attached: r.attached };
        if ('rolled_back' in r) {
          const fields = { ...base, id: r.id, version: r.version, current: r.current, rolled_back: r.rolled_back };
          return reportJob(out, r, fields, `${r.id} ${r.version ?? ''} installed; current ${r.current ?? 'none'}`);
        }
        if ('path' in r) return reportJob(out, r, { ...base, id: r.id, version: r.version, path: r.path }, `${r.id} ${r.version ?? ''} → ${r.path ?? ''}`);
        return reportJob(out, r, base, `job ${r.jobId}: ${r.state}`);
      });
    }),
  );

  program
    .command('cancel')
    .description('cancel a job before its switch: its partial download and staging are removed, current stays')
    .argument('<job>', 'a job id from modelhub jobs')
    .action(
      action(async (out, cmd, jobText: string) => {
        const jobId = jobIdOf(jobText);
        return withEngine(cmd, async (engine) => {
          const r = await engine.cancel(jobId);
          out.result({ job_id: r.jobId, state: r.state }, `job ${r.jobId} cancelled`);
        });
      }),
    );

  program
    .command('gc')
    .description('remove partial downloads, staging folders and temp files that no running or paused job owns')
    .action(
      action(async (out, cmd) => {
        return withEngine(cmd, async (engine) => {
          const removed = await engine.gc();
          const bytes = removed.reduce((n, e) => n + e.bytes, 0);
          const paths = removed.map((e) => path.relative(engine.home.root, e.path));
          out.result({ removed: paths, bytes_freed: bytes }, removed.length === 0 ? 'nothing to remove' : `${paths.join('\n')}\nfreed ${bytes} bytes`);
        });
      }),
    );
}
