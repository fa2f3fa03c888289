// Replays an exported event log through the machines with no effect at all: the machines'
// own actors are inert stand-ins (src/ supplies the real ones only through .provide()), and
// the pure transition() runs no action. Each recorded state must be reproduced, in order.
import { initialTransition, transition, type AnyStateMachine, type AnyMachineSnapshot, type EventObject } from 'xstate';
import { installMachine } from '../../machines/install.js';
import { uninstallMachine } from '../../machines/uninstall.js';
import { modelPullMachine } from '../../machines/model-pull.js';
import { rebuildMachine } from '../../machines/rebuild.js';
import { repairMachine } from '../../machines/repair.js';
import { ModelhubError } from '../errors.js';
import { describeIssues } from '../schemas/parse.js';
import { exportLineSchema, type ExportLine } from './export-format.js';
import type { JobKind } from './jobs-store.js';
import { stateString } from './runner.js';

export interface ReplayStep {
  seq: number;
  job_id: string;
  type: string;
  recorded: string;
  reproduced: string;
  ok: boolean;
}

export interface ReplayResult {
  states: ReplayStep[];
  diverged_at: number | null;
  reason: string | null;
}

export function parseExport(text: string): ExportLine[] {
  const lines: ExportLine[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new ModelhubError('INVALID_REQUEST', `line ${i + 1}: not JSON (${(err as Error).message})`);
    }
    const r = exportLineSchema.safeParse(value);
    if (!r.success) throw new ModelhubError('INVALID_REQUEST', `line ${i + 1}: ${describeIssues(r.error)}`);
    lines.push(r.data);
  });
  if (lines.length === 0) throw new ModelhubError('INVALID_REQUEST', 'the log has no events');
  return lines;
}

const KIND_BY_EVENT: [RegExp, JobKind][] = [
  [/^xstate\.(done|error)\.actor\.(resolveRelease|verifyManifest|downloadArchive|stageRelease|switchVersion|rollBack)$/, 'install'],
  [/^xstate\.(done|error)\.actor\.(stopService|removeVersions)$/, 'uninstall'],
  [/^xstate\.(done|error)\.actor\.(resolveModel|verifyModelManifest|downloadModelFiles|installModel|cleanUpModel)$/, 'model_pull'],
  [/^xstate\.(done|error)\.actor\.(scanVersions|verifyVersion|restorePointers)$/, 'rebuild'],
  [/^xstate\.(done|error)\.actor\.(checkVersion|fetchDamaged|replaceFiles|cleanUpRepair)$/, 'repair'],
];

function kindOf(lines: ExportLine[]): JobKind | undefined {
  const explicit = lines.find((l) => l.kind !== undefined)?.kind;
  if (explicit !== undefined) return explicit;
  for (const l of lines) for (const [re, k] of KIND_BY_EVENT) if (re.test(l.type)) return k;
  const init = lines.find((l) => l.type === 'xstate.init')?.payload as { input?: { request?: { platform?: unknown } } } | undefined;
  if (init?.input?.request?.platform !== undefined) return 'install';
  return undefined;
}

export function machineOf(kind: JobKind): AnyStateMachine {
  if (kind === 'install') return installMachine;
  if (kind === 'uninstall') return uninstallMachine;
  if (kind === 'rebuild') return rebuildMachine;
  if (kind === 'repair') return repairMachine;
  return modelPullMachine;
}

export function replay(lines: ExportLine[]): ReplayResult {
  const states: ReplayStep[] = [];
  const fail = (seq: number, reason: string): ReplayResult => ({ states, diverged_at: seq, reason });

  // Sequence numbers must increase through the file: a reordered log is a falsified log.
  for (let i = 1; i < lines.length; i++) {
    if (lines[i]!.seq <= lines[i - 1]!.seq) return fail(lines[i]!.seq, `seq ${lines[i]!.seq} follows ${lines[i - 1]!.seq}: events are out of order`);
  }
  const byJob = new Map<string, ExportLine[]>();
  for (const l of lines) byJob.set(l.job_id, [...(byJob.get(l.job_id) ?? []), l]);

  for (const [jobId, jobLines] of byJob) {
    const kind = kindOf(jobLines);
    if (kind === undefined) return fail(jobLines[0]!.seq, `job ${jobId}: cannot tell which machine it ran`);
    const machine = machineOf(kind);
    let snapshot: AnyMachineSnapshot | undefined;
    for (const line of jobLines) {
      let reproduced: string;
      try {
        if (line.type === 'xstate.init') {
          if (snapshot !== undefined) return fail(line.seq, `job ${jobId}: a second xstate.init`);
          const input = (line.payload as { input?: unknown }).input;
          [snapshot] = initialTransition(machine, input);
        } else {
          if (snapshot === undefined) return fail(line.seq, `job ${jobId}: events before xstate.init`);
          if (snapshot.status !== 'active') return fail(line.seq, `job ${jobId}: event after the job ended`);
          [snapshot] = transition(machine, snapshot, line.payload as EventObject);
        }
        reproduced = stateString(snapshot.value);
      } catch (err) {
        return fail(line.seq, `job ${jobId}: the machine rejected ${line.type}: ${(err as Error).message}`);
      }
      const ok = reproduced === line.state;
      states.push({ seq: line.seq, job_id: jobId, type: line.type, recorded: line.state, reproduced, ok });
      if (!ok) return fail(line.seq, `job ${jobId}: after ${line.type} the machine is in "${reproduced}", the log says "${line.state}"`);
    }
  }
  return { states, diverged_at: null, reason: null };
}
