// One pass of a download over its pieces: the connections (workers) that fetch them, the ramp
// that opens more when they pay off, restarts from zero that stop every other connection
// first, the sidecar kept current, and the first fatal error, which stops them all. run()
// settles only after every connection has stopped, so nothing writes to the part afterwards.
import { ModelhubError } from '../errors.js';
import { abortReason, throwIfAborted } from './abort.js';
import { segmentable, type Config, type Stats } from './config.js';
import { runWorker } from './connection.js';
import { PartLost, Superseded } from './errors.js';
import { NetworkWait } from './network-wait.js';
import type { PartFile } from './part-file.js';
import { DEFAULT_RAMP, Ramp } from './ramp.js';
import type { Piece, Plan } from './segments.js';
import { writeSidecar } from './sidecar.js';

/** How often the ramp looks at the rate (it decides over windows of DEFAULT_RAMP.minWindowMs or more). */
const RAMP_TICK_MS = 100;
/** Pieces of a download in segments are at least this big (each costs a request). */
const MIN_PIECE_BYTES = 4 * 1024 * 1024;
const ALIGN = 64 * 1024;
/**
 * How often the sidecar of a download in segments is rewritten while bytes flow: after a
 * kill -9, each connection fetches at most this much of its data again.
 */
const PERSIST_MS = 100;

export class Worker {
  readonly ac = new AbortController();
  piece: Piece | null;
  /** Failed attempts of this connection (HTTP errors, broken bodies). */
  failures = 0;
  /** The last failure was a broken body: given back if the next request finds no network. */
  lossPending = false;
  /** Consecutive requests without an answer. */
  probes = 0;
  firstByte = false;
  superseded = false;
  buffers: [Buffer, Buffer] | null = null;
  finished: Promise<void> = Promise.resolve();

  constructor(
    readonly id: number,
    readonly byRamp: boolean,
    piece: Piece | null,
  ) {
    this.piece = piece;
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  supersede(why: string): void {
    this.superseded = true;
    this.ac.abort(new Superseded(why));
  }
}

export class Transfer {
  etag: string | null;
  /** Does the server answer ranges? null: not known yet. */
  rangesOk: boolean | null = null;
  /** Bytes of the file received (written or in a buffer). */
  received: number;
  /** Stalls of a body that had started (they count against maxStalls). */
  bodyStalls = 0;
  /** Time the connections spent waiting for body bytes, summed: is the network what is slow? */
  idleMs = 0;
  private lastTick = { t: 0, idleMs: 0, cpuUs: 0 };
  guardFailed = false;
  readonly net: NetworkWait;
  readonly segmented: boolean;
  private readonly workers = new Set<Worker>();
  private readonly ac = new AbortController();
  private fatal: { error: unknown } | null = null;
  private restarting = false;
  private nextId = 1;
  private idle: (() => void) | null = null;
  private ramp: Ramp | null = null;
  private persistTimer: NodeJS.Timeout | null = null;
  private persisting: Promise<void> = Promise.resolve();

  constructor(
    readonly cfg: Config,
    readonly part: PartFile,
    readonly plan: Plan,
    readonly stats: Stats,
    etag: string | null,
  ) {
    this.etag = etag;
    this.received = plan.received();
    this.segmented = segmentable(cfg);
    this.cut();
    this.net = new NetworkWait({
      url: cfg.url,
      maxWaitMs: cfg.maxNetworkWaitMs,
      probeDelayMs: cfg.probeDelayMs,
      now: Date.now,
      onChange: (waiting) => {
        if (!waiting) this.ramp?.restart(performance.now(), this.received);
        cfg.onNetworkWait?.(waiting);
      },
    });
  }

  async run(): Promise<void> {
    const user = this.cfg.signal;
    const onUserAbort = (): void => this.fail(abortReason(user));
    user?.addEventListener('abort', onUserAbort, { once: true });
    let tick: NodeJS.Timeout | undefined;
    try {
      throwIfAborted(user);
      this.emitProgress();
      if (!this.plan.done()) {
        const idle = new Promise<void>((resolve) => (this.idle = resolve));
        if (this.segmented) {
          this.ramp = new Ramp({ ...DEFAULT_RAMP, max: this.cfg.maxConnections }, performance.now(), this.received);
          this.ramp.added(1); // the rate is measured from the first connection's first byte
          this.lastTick = { t: performance.now(), idleMs: 0, cpuUs: cpuMicros() };
          tick = setInterval(() => this.tick(), RAMP_TICK_MS);
        }
        this.start(this.cfg.pool?.first() ?? noop, true, null);
        await idle;
      }
      if (this.fatal !== null) throw this.fatal.error;
      if (!this.plan.done()) throw new ModelhubError('INTERNAL', `${this.cfg.url}: the connections ended with bytes left to fetch`);
    } finally {
      clearInterval(tick);
      user?.removeEventListener('abort', onUserAbort);
      if (this.persistTimer !== null) clearTimeout(this.persistTimer);
      this.persistTimer = null;
      this.stats.networkWaitMs += this.net.totalWaitedMs();
      await this.persisting;
      // Stopped early (an abort, a pause): the next call resumes every piece where it is now.
      const fatal = this.fatal?.error;
      const discarded = fatal instanceof PartLost || (fatal instanceof ModelhubError && fatal.code === 'SIZE_EXCEEDED');
      if (this.segmented && !this.guardFailed && !discarded && !this.plan.done()) await this.persistNow().catch(() => undefined);
    }
  }

  /**
   * A download in segments is cut into one piece per connection it may have: connections that
   * started early take more of them, and work stealing splits the slow ones, so that all finish
   * at about the same time. (Two per connection cost a request per piece, ~10 ms each, on a
   * connection that has the whole file to itself: 16 of them in a 400 MiB install.)
   */
  private cut(): void {
    if (!this.segmented) return;
    const left = this.cfg.expectedSize - this.plan.written();
    this.plan.cut(Math.max(MIN_PIECE_BYTES, Math.ceil(left / this.cfg.maxConnections / ALIGN) * ALIGN));
  }

  /** The first fatal error wins; every connection stops. */
  fail(err: unknown): void {
    this.fatal ??= { error: err };
    this.ac.abort(err);
  }

  /** The caller's guard: before every write to the part or its sidecar. A throw stops the download with that error. */
  guard(): void {
    const g = this.cfg.guard;
    if (g === undefined) return;
    try {
      g();
    } catch (err) {
      this.guardFailed = true;
      this.fail(err);
      throw err;
    }
  }

  /** The next piece for a connection that has none: one nobody fetches, else half of the biggest. */
  nextPiece(w: Worker): Piece | null {
    if (this.restarting || this.ac.signal.aborted) return null;
    const p = this.plan.take(w.id);
    if (p !== null || !this.segmented || this.rangesOk !== true) return p;
    // No piece left nobody fetches: take half of the one that would finish last.
    const s = this.plan.split(w.id, this.cfg.minSplitSize, performance.now());
    if (s !== null) {
      this.stats.splits += 1;
      this.persistSoon();
    }
    return s;
  }

  /**
   * Starts over from byte 0: every other connection is stopped first (and waited for), then the
   * part is emptied. `wholeBody`: the keeper reads a body with the whole file (a 200), so it
   * keeps the whole file; else it takes the first piece and the next request asks anew.
   */
  async restart(keeper: Worker, wholeBody: boolean): Promise<void> {
    if (this.restarting) throw new Superseded('another connection restarts the download');
    this.restarting = true;
    try {
      const others = [...this.workers].filter((w) => w !== keeper);
      for (const w of others) w.supersede('the download restarts from zero');
      await Promise.all(others.map((w) => w.finished));
      throwIfAborted(keeper.signal);
      this.guard();
      // Nothing received yet (the very first answer ignored Range): nothing is void either.
      const had = this.received > 0 || this.plan.written() > 0;
      if (had) this.cfg.onRestart?.();
      this.plan.reset();
      if (!wholeBody && this.rangesOk !== false) this.cut();
      keeper.piece = this.plan.take(keeper.id);
      await this.part.truncate();
      this.received = 0;
      if (had) this.stats.restartedFromZero = true;
      this.stats.resumedFrom = 0;
      this.ramp?.restart(performance.now(), 0);
      this.emitProgress();
    } finally {
      this.restarting = false;
    }
  }

  /** An HTTP answer arrived for `w`. */
  answered(w: Worker): void {
    this.net.ok();
    w.probes = 0;
    w.lossPending = false;
  }

  /** Body bytes arrived for `w`. */
  flowing(w: Worker): void {
    this.net.ok();
    if (w.firstByte) return;
    w.firstByte = true;
    if (w.byRamp) this.ramp?.settled(performance.now(), this.received);
  }

  async waitForNetwork(w: Worker, cause: unknown): Promise<void> {
    w.probes += 1;
    await this.net.wait(cause, w.probes, w.signal);
  }

  emitProgress(): void {
    this.cfg.onProgress?.({ bytesDone: this.received, bytesTotal: this.cfg.expectedSize, resumedFrom: this.stats.resumedFrom });
  }

  /** A write completed. */
  written(): void {
    this.persistSoon();
  }

  /** The sidecar now, after the writes before it (a response started: its ETag goes to disk before its bytes). */
  persistNow(): Promise<void> {
    const p = this.persisting.then(() => this.saveSidecar());
    this.persisting = p.catch(() => undefined);
    return p;
  }

  private persistSoon(): void {
    if (!this.segmented || this.persistTimer !== null || this.ac.signal.aborted) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = null;
      this.persistNow()
        .then(async () => {
          if (!(await this.part.isStillAt())) this.fail(new PartLost(this.cfg.part));
        })
        .catch(() => undefined); // a guard error stopped the download already; anything else is tried again later
    }, PERSIST_MS);
  }

  private async saveSidecar(): Promise<void> {
    this.guard();
    const { url, expectedSize: size, expectedSha256: sha256, meta } = this.cfg;
    await writeSidecar(meta, { url, etag: this.etag, size, sha256, ...(this.segmented ? { ino: this.part.ino.toString(), pieces: this.plan.saved() } : {}) });
  }

  private start(release: () => void, byRamp: boolean, piece: Piece | null): Worker {
    const w = new Worker(this.nextId++, byRamp, piece);
    if (piece !== null) piece.owner = w.id;
    const onAbort = (): void => w.ac.abort(abortReason(this.ac.signal));
    this.ac.signal.addEventListener('abort', onAbort, { once: true });
    this.workers.add(w);
    this.stats.connections = Math.max(this.stats.connections, this.workers.size);
    w.finished = runWorker(this, w)
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        release();
        this.ac.signal.removeEventListener('abort', onAbort);
        this.workers.delete(w);
        if (byRamp && !w.firstByte) this.ramp?.settled(performance.now(), this.received);
        if (this.workers.size === 0) this.idle?.();
      });
    return w;
  }

  private tick(): void {
    const ramp = this.ramp;
    if (ramp === null || this.restarting || this.ac.signal.aborted) return;
    if (this.net.waiting) return;
    const now = performance.now();
    const cpuUs = cpuMicros();
    const span = Math.max(1, now - this.lastTick.t);
    const idleShare = (this.idleMs - this.lastTick.idleMs) / (span * Math.max(1, this.workers.size));
    const cpuShare = (cpuUs - this.lastTick.cpuUs) / 1000 / span;
    this.lastTick = { t: now, idleMs: this.idleMs, cpuUs };
    const want = ramp.decide(now, this.received, this.cfg.expectedSize - this.received, this.workers.size, idleShare, cpuShare);
    let added = 0;
    while (added < want && this.rangesOk === true) {
      const release = this.cfg.pool === undefined ? noop : this.cfg.pool.extra();
      if (release === null) break;
      const id = this.nextId;
      const piece = this.plan.take(id) ?? this.plan.split(id, this.cfg.minSplitSize, performance.now());
      if (piece === null) {
        release();
        break;
      }
      if (piece.splitFrom !== null) this.stats.splits += 1;
      this.start(release, true, piece);
      added += 1;
    }
    ramp.added(added);
    if (added > 0) this.persistSoon();
  }
}

function noop(): void {}

/** CPU time this process has used (all its threads), in microseconds. */
function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}
