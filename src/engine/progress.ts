// The engine's live view for UIs: one RxJS stream of one event shape, throttled per job and
// phase, never going backwards; and eventemitter3 hooks for code that prefers callbacks.
import { EventEmitter } from 'eventemitter3';
import { Subject, groupBy, mergeMap, throttleTime, asyncScheduler, map, type Observable } from 'rxjs';
import type { JobKind } from './jobs-store.js';

export interface ProgressEvent {
  jobId: string;
  kind: JobKind;
  target: string;
  /** The job machine's state: resolving, downloading, staging, … committed, failed. */
  phase: string;
  bytesDone: number;
  bytesTotal: number;
  speedBps: number;
  etaSeconds: number | null;
  ts: number;
}

export interface EngineHookEvents {
  downloadStart: (e: { jobId: string; target: string; url: string; bytesTotal: number; resumedFrom: number }) => void;
  downloadProgress: (e: ProgressEvent) => void;
  downloadError: (e: { jobId: string; target: string; error: { code: string; message: string } }) => void;
  downloadComplete: (e: { jobId: string; target: string; bytes: number; sha256: string }) => void;
  jobStateChanged: (e: { jobId: string; kind: JobKind; target: string; state: string; previous: string | null }) => void;
}

export const PROGRESS_THROTTLE_MS = 100;

export class ProgressHub {
  private readonly subject = new Subject<ProgressEvent>();
  private readonly high = new Map<string, number>();
  readonly hooks = new EventEmitter<EngineHookEvents>();
  readonly progress$: Observable<ProgressEvent>;

  constructor(throttleMs = PROGRESS_THROTTLE_MS) {
    this.progress$ = this.subject.pipe(
      groupBy((e) => `${e.jobId}\u0000${e.phase}`),
      mergeMap((group) => group.pipe(throttleTime(throttleMs, asyncScheduler, { leading: true, trailing: true }))),
      map((e) => e),
    );
  }

  /** Bytes shown for a job never decrease, even when a download restarts from zero. */
  emit(e: ProgressEvent): void {
    const key = `${e.jobId}\u0000${e.phase}`;
    const seen = this.high.get(key) ?? 0;
    const bytesDone = Math.max(seen, e.bytesDone);
    this.high.set(key, bytesDone);
    const event = { ...e, bytesDone };
    this.subject.next(event);
    if (e.phase === 'downloading') this.hooks.emit('downloadProgress', event);
  }

  forget(jobId: string): void {
    for (const key of this.high.keys()) if (key.startsWith(`${jobId}\u0000`)) this.high.delete(key);
  }
}

/** Speed by exponentially weighted moving average, ETA from it. */
export class SpeedMeter {
  private last: { t: number; bytes: number } | undefined;
  speed = 0;

  sample(bytes: number, t: number): { speedBps: number; etaSeconds: (total: number) => number | null } {
    if (this.last !== undefined && t > this.last.t) {
      const inst = ((bytes - this.last.bytes) * 1000) / (t - this.last.t);
      this.speed = this.speed === 0 ? inst : 0.7 * this.speed + 0.3 * inst;
    }
    if (this.last === undefined || t - this.last.t >= 200) this.last = { t, bytes };
    const speed = Math.max(0, this.speed);
    return { speedBps: speed, etaSeconds: (total) => (speed > 0 ? Math.max(0, (total - bytes) / speed) : null) };
  }
}
