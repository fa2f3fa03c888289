// ProgressHub: throttled per job and phase, never backwards, the completing event at once.
import { describe, expect, it } from 'vitest';
import { ProgressHub, SpeedMeter, type ProgressEvent, type ProgressInput } from '../../src/engine/progress.js';

const ev = (bytesDone: number, ts: number, phase = 'downloading', jobId = 'j'): ProgressInput => ({
  jobId,
  kind: 'install',
  target: 'x@1.0.0',
  phase,
  bytesDone,
  bytesTotal: 1000,
  speedBps: 0,
  etaSeconds: null,
  ts,
});

describe('ProgressHub', () => {
  it('throttles, keeps the latest as trailing, and never goes backwards', async () => {
    const hub = new ProgressHub(50);
    const seen: ProgressEvent[] = [];
    hub.progress$.subscribe((e) => seen.push(e));
    const t0 = Date.now();
    hub.emit(ev(10, t0));
    hub.emit(ev(20, t0 + 1));
    hub.emit(ev(5, t0 + 2)); // a restart from zero must not show as going back
    hub.emit(ev(30, t0 + 3));
    expect(seen.map((e) => e.bytesDone)).toEqual([10]);
    await new Promise((r) => setTimeout(r, 80));
    expect(seen.map((e) => e.bytesDone)).toEqual([10, 30]);
    hub.emit(ev(15, Date.now()));
    expect(seen[seen.length - 1]!.bytesDone).toBe(30);
    hub.emit(ev(1000, Date.now()));
    expect(seen[seen.length - 1]!.bytesDone).toBe(1000);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.bytesDone).toBeGreaterThanOrEqual(seen[i - 1]!.bytesDone);
  });

  it('keeps jobs and phases apart, and flushes a pending event when a job is forgotten', () => {
    const hub = new ProgressHub(1000);
    const seen: string[] = [];
    hub.progress$.subscribe((e) => seen.push(`${e.jobId}:${e.phase}:${e.bytesDone}`));
    hub.emit(ev(1, 0, 'downloading', 'a'));
    hub.emit(ev(1, 0, 'downloading', 'b'));
    hub.emit(ev(0, 1, 'staging', 'a'));
    hub.emit(ev(7, 2, 'downloading', 'a'));
    expect(seen).toEqual(['a:downloading:1', 'b:downloading:1', 'a:staging:0']);
    hub.forget('a');
    expect(seen).toEqual(['a:downloading:1', 'b:downloading:1', 'a:staging:0', 'a:downloading:7']);
  });

  it('fires downloadProgress hooks with the same events', () => {
    const hub = new ProgressHub(0);
    const hooked: number[] = [];
    hub.hooks.on('downloadProgress', (e) => hooked.push(e.bytesDone));
    hub.emit(ev(1, 0));
    hub.emit(ev(2, 1));
    hub.emit(ev(3, 2, 'staging'));
    expect(hooked).toEqual([1, 2]);
  });
});

describe('SpeedMeter', () => {
  it('estimates speed and ETA from samples', () => {
    const m = new SpeedMeter();
    m.sample(0, 0);
    const s = m.sample(1_000_000, 1000);
    expect(s.speedBps).toBeCloseTo(1_000_000, -3);
    expect(s.etaSeconds(3_000_000)).toBeCloseTo(2, 1);
  });
});
