// Replay: an exported log reproduces every recorded state through the machines with no
// effects, needs nothing but the file, and catches reordered or falsified logs at the event.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { makeBench, type Bench } from './fixture.js';

let b: Bench;
let home: string;
let committedJob: string;
let failedJob: string;

async function exportLog(jobId: string, name: string): Promise<{ file: string; lines: Record<string, unknown>[] }> {
  const file = path.join(b.work, name);
  const r = await b.cli(home, ['events', jobId, '--export', file]);
  expect(r.result).toMatchObject({ ok: true, file });
  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  return { file, lines };
}

/** Replay in a place with no home and no hub: the file is all it has. */
function replayFile(file: string) {
  return runCli(['replay', file, '--json'], { MODELHUB_HOME: path.join(b.work, 'nowhere'), MODELHUB_HUB: '' });
}

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0' });
  await b.publish({ version: '1.1.0' });
  home = await b.newHome();
  committedJob = String((await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start'])).result!.job_id);
  failedJob = String((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).result!.job_id);
  await b.publishModel({ version: '1.0.0' });
  expect((await b.cli(home, ['models', 'pull', 'demo-tiny-nmt'])).result).toMatchObject({ ok: true });
  expect((await b.cli(home, ['uninstall', 'demo-echo'])).result).toMatchObject({ ok: true });
});

describe('replay', () => {
  it('reproduces a committed job', async () => {
    const { file, lines } = await exportLog(committedJob, 'committed.jsonl');
    for (const l of lines) expect(Object.keys(l)).toEqual(expect.arrayContaining(['seq', 'job_id', 'ts', 'type', 'payload', 'state']));
    expect(lines[0]).toMatchObject({ type: 'xstate.init', state: 'resolving' });
    expect(lines[lines.length - 1]).toMatchObject({ state: 'committed' });
    const r = await replayFile(file);
    expect(r.code).toBe(0);
    expect(r.result).toMatchObject({ ok: true, diverged_at: null });
    expect((r.result!.states as { state: string }[]).map((s) => s.state)).toEqual(lines.map((l) => l.state));
  });

  it('reproduces a failed job', async () => {
    const { file, lines } = await exportLog(failedJob, 'failed.jsonl');
    expect(lines[lines.length - 1]).toMatchObject({ state: 'failed' });
    const r = await replayFile(file);
    expect(r.result).toMatchObject({ ok: true, diverged_at: null });
  });

  it('reproduces the whole log of several jobs of every kind', async () => {
    const file = path.join(b.work, 'all.jsonl');
    expect((await b.cli(home, ['events', '--export', file])).code).toBe(0);
    const kinds = new Set((await readFile(file, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { kind: string }).kind));
    expect([...kinds].sort()).toEqual(['install', 'model_pull', 'uninstall']);
    expect((await replayFile(file)).result).toMatchObject({ ok: true, diverged_at: null });
  });

  it('catches a reordered log at the first event out of place', async () => {
    const { lines } = await exportLog(committedJob, 'to-reorder.jsonl');
    const swapped = [...lines];
    [swapped[2], swapped[3]] = [swapped[3]!, swapped[2]!];
    const file = path.join(b.work, 'reordered.jsonl');
    await writeFile(file, swapped.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const r = await replayFile(file);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, diverged_at: swapped[3].seq });
  });

  it('catches a falsified state at that event', async () => {
    const { lines } = await exportLog(committedJob, 'to-falsify.jsonl');
    const k = 4;
    const forged = lines.map((l, i) => (i === k ? { ...l, state: 'committed' } : l));
    const file = path.join(b.work, 'falsified.jsonl');
    await writeFile(file, forged.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const r = await replayFile(file);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, diverged_at: lines[k]!.seq });
    expect((r.result!.states as unknown[]).length).toBe(k + 1);
  });

  it('catches a falsified effect result (a failure turned into success)', async () => {
    const { lines } = await exportLog(failedJob, 'to-forge.jsonl');
    const i = lines.findIndex((l) => String(l.type).startsWith('xstate.error.actor.'));
    expect(i).toBeGreaterThan(0);
    const forged = lines.map((l, j) => (j === i ? { ...l, type: 'xstate.done.actor.verifyManifest', payload: { type: 'xstate.done.actor.verifyManifest', output: {} } } : l));
    const file = path.join(b.work, 'forged.jsonl');
    await writeFile(file, forged.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const r = await replayFile(file);
    expect(r.result).toMatchObject({ ok: false, diverged_at: lines[i]!.seq });
  });

  it('rejects a file that is not an event log', async () => {
    const file = path.join(b.work, 'junk.jsonl');
    await writeFile(file, '{"hello":1}\n');
    const r = await replayFile(file);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
  });
});
