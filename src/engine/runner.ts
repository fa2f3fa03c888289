// Runs one job's machine as a durable workflow. Every event the root actor receives — the
// init, outside events and the done/error events of its effects, with their output — is
// appended with the persisted snapshot in one SQLite transaction from inside XState's update,
// synchronously. Effects start with a yield (see effect.ts), so none acts on a state before the
// state is on disk.
import { createActor, type AnyStateMachine, type AnyActorRef, type InspectionEvent, type Snapshot } from 'xstate';
import { toModelhubError } from '../errors.js';
import { CONTROL_POLL_MS, type JobControls } from './job-controls.js';
import { LostLeaseError, type JobKind, type JobsStore } from './jobs-store.js';
import type { Leases } from './leases.js';

export interface JobHandle {
  send(event: { type: string; [k: string]: unknown }): void;
  readonly signal: AbortSignal;
  /** Throws (and stops the run) when this process no longer holds the job's lease. */
  assertLease(): void;
}

export interface RunSpec {
  jobId: string;
  kind: JobKind;
  subject: string;
  owner: string;
  machine: AnyStateMachine;
  /**
   * A new job from its input; or a persisted one, told RESTORED (recovery, counted against the
   * restart-loop limit) or, for a paused job, the user's RESUME or CANCEL (not a restart).
   */
  start: { input: unknown } | { snapshot: Snapshot<unknown>; restores: number; userEvent?: 'RESUME' | 'CANCEL' };
  store: JobsStore;
  leases: Leases;
  now: () => number;
  heartbeatMs?: number;
  /** Where controls from other processes (cancel) arrive; polled while the job runs. */
  controls?: JobControls;
  onState?: (state: string, context: unknown, event: { type: string }) => void;
  targetOf?: (context: unknown) => string | undefined;
}

/** The state in which a job waits for its user: the run ends, the job stays active. */
export const PAUSED = 'paused';

export interface RunResult {
  state: string;
  output: unknown;
}

export function stateString(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null) {
    const first: [string, unknown] = Object.entries(value as Record<string, unknown>)[0] ?? ['', ''];
    return `${first[0]}.${stateString(first[1])}`;
  }
  return String(value);
}

/** Errors become their JSON form in the log, the same object machines read in a replay. */
export function loggableEvent(event: { type: string; [k: string]: unknown }): { type: string; [k: string]: unknown } {
  if (event.type.startsWith('xstate.error.actor.')) {
    const e = toModelhubError(event.error);
    return { type: event.type, error: { code: e.code, message: e.message, retryable: e.retryable } };
  }
  return JSON.parse(JSON.stringify(event)) as { type: string; [k: string]: unknown };
}

interface MachineSnapshotLike {
  value: unknown;
  context: unknown;
  status: string;
  output?: unknown;
}

export class JobRun implements JobHandle {
  private actor: AnyActorRef | undefined;
  private readonly abort = new AbortController();
  private failure: Error | undefined;
  readonly done: Promise<RunResult>;

  constructor(private readonly spec: RunSpec) {
    let resolveDone!: (r: RunResult) => void;
    let rejectDone!: (e: unknown) => void;
    this.done = new Promise<RunResult>((res, rej) => {
      resolveDone = res;
      rejectDone = rej;
    });
    this.resolveDone = resolveDone;
    this.rejectDone = rejectDone;
  }

  private resolveDone: (r: RunResult) => void;
  private rejectDone: (e: unknown) => void;

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  send(event: { type: string; [k: string]: unknown }): void {
    if (this.failure === undefined) this.actor?.send(event);
  }

  private halt(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.abort.abort(err);
    // Let another process (or a later recover) take the job over at once, not after the ttl.
    this.stopBeat();
    try {
      this.spec.leases.release(this.spec.subject);
    } catch {
      // the database itself may be what failed; the lease then expires with its ttl
    }
    setImmediate(() => {
      this.actor?.stop();
      this.rejectDone(err);
    });
  }

  start(): this {
    const { spec } = this;
    const restored = 'snapshot' in spec.start;
    const inspect = (ev: InspectionEvent): void => {
      if (ev.type !== '@xstate.snapshot' || ev.actorRef !== this.actor || this.failure !== undefined) return;
      const event = ev.event;
      // A restored actor replays a synthetic init; it is not an event of the job.
      if (restored && event.type === 'xstate.init') return;
      const snap = ev.snapshot as unknown as MachineSnapshotLike;
      const state = stateString(snap.value);
      try {
        spec.store.append({
          jobId: spec.jobId,
          kind: spec.kind,
          ts: spec.now(),
          event: loggableEvent(event),
          state,
          snapshot: this.actor.getPersistedSnapshot(),
          context: snap.context,
          done: snap.status === 'done',
          output: snap.output,
          target: spec.targetOf?.(snap.context),
          owner: spec.owner,
        });
      } catch (err) {
        this.halt(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      spec.onState?.(state, snap.context, event);
      if (snap.status === 'done') {
        this.finish();
        this.resolveDone({ state, output: snap.output });
      } else if (state === PAUSED) {
        // Paused: nothing runs until a user resumes it, so this run ends and lets the job go.
        this.finish();
        this.resolveDone({ state, output: null });
        setImmediate(() => this.actor?.stop());
      }
    };

    this.actor =
      'snapshot' in spec.start
        ? createActor(spec.machine, { snapshot: spec.start.snapshot, inspect })
        : createActor(spec.machine, { input: spec.start.input, inspect });
    this.actor.subscribe({ error: (err) => this.halt(err instanceof Error ? err : new Error(String(err))) });

    const beat = setInterval(() => {
      let held: boolean;
      try {
        held = spec.leases.heartbeat(spec.subject, spec.now());
      } catch {
        // A busy or full disk: this beat is skipped (the job's own steps meet the same disk and
        // fail or go on); the lease stays ours until its ttl.
        return;
      }
      if (!held) this.halt(new Error(`job ${spec.jobId}: lease on ${spec.subject} was taken over`));
    }, spec.heartbeatMs ?? 3000);
    beat.unref();
    const controls = spec.controls;
    const poll =
      controls === undefined
        ? undefined
        : setInterval(() => {
            try {
              const control = controls.take(spec.jobId);
              if (control === 'cancel') this.send({ type: 'CANCEL' });
              if (control === 'pause') this.send({ type: 'PAUSE' });
            } catch {
              // a busy database: the next poll tries again
            }
          }, CONTROL_POLL_MS);
    poll?.unref();
    this.stopBeat = () => {
      clearInterval(beat);
      clearInterval(poll);
    };

    this.actor.start();
    if ('snapshot' in spec.start) this.actor.send(spec.start.userEvent !== undefined ? { type: spec.start.userEvent } : { type: 'RESTORED', restores: spec.start.restores });
    return this;
  }

  assertLease(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.spec.leases.holds(this.spec.subject, this.spec.jobId)) return;
    const err = new LostLeaseError(this.spec.jobId);
    this.halt(err);
    throw err;
  }

  /** Stops running the job where it is, as a crash would; it resumes on the next recover. */
  stop(reason: string): void {
    this.halt(new Error(reason));
  }

  private stopBeat: () => void = () => undefined;

  private finish(): void {
    this.stopBeat();
    this.spec.leases.release(this.spec.subject);
  }
}
