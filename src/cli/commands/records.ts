// `modelhub verify [ID[@V]] [--repair]` (SPEC §13): installed files re-hashed against the signed
// manifest each version keeps, as `rpm -V` does; exit 1 when a file is modified or missing
// (extra files are reported only). `--repair` fetches only the damaged files, as repair jobs.
import type { Command } from 'commander';
import type { RepairJobValue, VersionCheckValue } from '../../client/types.js';
import { isErrorCode, ModelhubError } from '../../errors.js';
import { addDownloadOptions } from '../download-options.js';
import { action, EXIT_FAILED, globalsOf, UsageError } from '../run.js';
import { parseTarget, progressLine, withEngine } from './node.js';

function checkLine(v: VersionCheckValue): Record<string, unknown> {
  return { id: v.id, version: v.version, ok: v.ok, modified: v.modified, missing: v.missing, extra: v.extra, proof: v.proof, problem: v.problem };
}

function repairLine(r: RepairJobValue): Record<string, unknown> {
  return { job_id: r.jobId, kind: r.subject, id: r.id, version: r.version, state: r.state, repaired: r.repaired, bytes_fetched: r.bytesFetched, method: r.method, error: r.error };
}

function human(kind: string, v: VersionCheckValue): string {
  const parts = [
    v.modified.length > 0 ? `modified: ${v.modified.join(', ')}` : '',
    v.missing.length > 0 ? `missing: ${v.missing.join(', ')}` : '',
    v.extra.length > 0 ? `extra: ${v.extra.join(', ')}` : '',
    v.problem ?? '',
    v.proof === 'registry' ? '(no proof kept; checked against the recorded manifest)' : '',
  ].filter((p) => p !== '');
  return `${kind} ${v.id} ${v.version}  ${v.ok ? 'OK' : 'DAMAGED'}${parts.length > 0 ? `  ${parts.join('; ')}` : ''}`;
}

export function registerRecordsCommands(program: Command): void {
  addDownloadOptions(
    program
      .command('verify')
      .description('check installed files against their signed manifests; --repair fetches only what is damaged')
      .argument('[target]', 'ID or ID@VERSION (default: everything installed)')
      .option('--repair', 'fetch again only the damaged files, through the verified path (a repair job per damaged version)'),
  ).action(
    action(async (out, cmd, targetText: string | undefined) => {
      const target = targetText === undefined ? {} : parseTarget(targetText);
      const repair = cmd.opts<{ repair?: boolean }>().repair === true;
      const hub = globalsOf(cmd).hub ?? process.env.MODELHUB_HUB;
      if (repair && (hub === undefined || hub === '')) throw new UsageError('no hub: pass --hub URL or set MODELHUB_HUB');
      return withEngine(cmd, async (engine) => {
        const report = repair ? await engine.repair(target, progressLine(out)) : { ...(await engine.verify(target)), repairs: undefined };
        const fields: Record<string, unknown> = { services: report.services.map(checkLine), models: report.models.map(checkLine) };
        if (report.repairs !== undefined) fields.repairs = report.repairs.map(repairLine);
        const text = [...report.services.map((v) => human('service', v)), ...report.models.map((v) => human('model', v))].join('\n') || 'nothing installed';
        const damaged = [...report.services, ...report.models].filter((v) => !v.ok);
        const failedRepair = (report.repairs ?? []).find((r) => !r.ok);
        if (damaged.length === 0 && failedRepair === undefined) {
          const repaired = (report.repairs ?? []).filter((r) => r.repaired.length > 0);
          out.result(fields, repaired.length === 0 ? text : `${text}\n${repaired.map((r) => `repaired ${r.id} ${r.version}: ${r.repaired.join(', ')} (${r.bytesFetched} bytes fetched)`).join('\n')}`);
          return undefined;
        }
        if (!out.json) process.stdout.write(`${text}\n`);
        const err =
          failedRepair !== undefined
            ? new ModelhubError(isErrorCode(failedRepair.error?.code) ? failedRepair.error.code : 'INTERNAL', `repair of ${failedRepair.id} ${failedRepair.version}: ${failedRepair.error?.message ?? failedRepair.state}`)
            : new ModelhubError('CHECKSUM_MISMATCH', `${damaged.length} installed version(s) differ from their signed manifests: ${damaged.map((v) => `${v.id}@${v.version}`).join(', ')}${repair ? '' : '; modelhub verify --repair fetches only the damaged files'}`);
        out.failure(err, fields);
        return EXIT_FAILED;
      });
    }),
  );
}
