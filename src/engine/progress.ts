// The engine's live view for UIs: one RxJS stream of one event shape, throttled per job and
// phase, never going backwards; and eventemitter3 hooks for code that prefers callbacks.
import { EventEmitter } from 'eventemitter3';
// The one class used, from its own module: `rxjs`'s index loads every operator (~70 ms of the
// CLI's start). It is the same class the index exports, so subscribers' operators work on it.
import type { Observable } from 'rxjs';
import { Subject } from 'rxjs/internal/Subject';
import { percentOf, type JobKind, type ProgressEvent } from '../client/types.js';

export type { ProgressEvent };

/** What effects report; the hub adds `percent`, so it is computed one way only. */
export type ProgressInput = Omit<ProgressEvent, 'percent'> & { percent?: number };

export function withPercent(e: ProgressInput): ProgressEvent {
  return { ...e, percent: percentOf(e.bytesDone, e.bytesTotal, e.phase) };
}

export interface EngineHookEvents {
  downloadStart: (e: { jobId: string; target: string; url: string; bytesTotal: number; resumedFrom: number }) => void;
  /** A download asks a source for its bytes: a mirror or the hub (SPEC §12), each time it moves on to another. */
  downloadSource: (e: { jobId: string; target: string; kind: 'mirror' | 'hub'; url: string }) => void;
  downloadProgress: (e: ProgressEvent) => void;
  downloadError: (e: { jobId: string; target: string; error: { code: string; message: string } }) => void;
  downloadComplete: (e: { jobId: string; target: string; bytes: number; sha256: string }) => void;
  jobStateChanged: (e: { jobId: string; kind: JobKind; target: string; state: string; previous: string | null }) => void;
}

export const PROGRESS_THROTTLE_MS = 100;

export class ProgressHub {
  private readonly subject = new Subject<ProgressEvent>();
  private readonly high = new Map<string, number>();
  private readonly lastSent = new Map<string, number>();
  private readonly trailing = new Map<string, { event: ProgressEvent; timer: NodeJS.Timeout }>();
  readonly hooks = new EventEmitter<EngineHookEvents>();
  readonly progress$: Observable<ProgressEvent> = this.subject.asObservable();

  constructor(private readonly throttleMs = PROGRESS_THROTTLE_MS) {}

  /**
   * Per job and phase: at most one event per throttle window, the latest one trailing; the
   * first and the completing event (bytesDone = bytesTotal) go out at once. Bytes shown for a
   * job never decrease, even when a download restarts from zero.
   */
  emit(e: ProgressInput): void {
    const key = `${e.jobId}\u0000${e.phase}`;
    const bytesDone = Math.max(this.high.get(key) ?? 0, e.bytesDone);
    this.high.set(key, bytesDone);
    const event = withPercent({ ...e, bytesDone });
    const pending = this.trailing.get(key);
    const last = this.lastSent.get(key);
    const complete = event.bytesTotal > 0 && bytesDone >= event.bytesTotal;
    if (last === undefined || complete || e.ts - last >= this.throttleMs) {
      if (pending !== undefined) {
        clearTimeout(pending.timer);
        this.trailing.delete(key);
      }
      this.send(key, event);
      return;
    }
    if (pending !== undefined) {
      pending.event = event;
      return;
    }
    const timer = setTimeout(() => {
      const p = this.trailing.get(key);
      this.trailing.delete(key);
      if (p !== undefined) this.send(key, { ...p.event, ts: Math.max(p.event.ts, (this.lastSent.get(key) ?? 0) + this.throttleMs) });
    }, this.throttleMs - (e.ts - last));
    timer.unref();
    this.trailing.set(key, { event, timer });
  }

  private send(key: string, event: ProgressEvent): void {
    this.lastSent.set(key, event.ts);
    this.subject.next(event);
    if (event.phase === 'downloading') this.hooks.emit('downloadProgress', event);
  }

  /** Drops a finished job's state; a pending trailing event is sent first. */
  forget(jobId: string): void {
    for (const [key, p] of this.trailing) {
      if (!key.startsWith(`${jobId}\u0000`)) continue;
      clearTimeout(p.timer);
      this.trailing.delete(key);
      this.send(key, p.event);
    }
    for (const map of [this.high, this.lastSent]) for (const key of map.keys()) if (key.startsWith(`${jobId}\u0000`)) map.delete(key);
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
