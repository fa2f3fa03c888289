// When to open more connections (aria2's lesson): start with one, and add more only while the
// download will still take long enough to pay for them, the connections spend most of their
// time waiting for bytes (the network, not this machine, is what is slow) and the last ones
// added paid off. A loopback or LAN hub that one connection saturates never gets a second; a
// server that caps each connection (8 MB/s, say) gets 4, then 8, as fast as that shows; a link or
// a bandwidth limit that caps the total stops the ramp at the first step that brings nothing.
//
// Why the waiting matters: when this machine is the slow end, more connections cannot make it
// faster, and each costs the server a connection and, when work is stolen from it, what it had in
// flight (then its whole receive window: up to tens of MiB on loopback). Waiting alone does not
// tell: on a busy machine a loopback hub is slow because it gets no CPU, and the reader waits for
// it. So the process's own CPU use counts too: a download that keeps this process busy for half a
// core or more (hundreds of MB/s moved, hashed and written) is bound by this machine, and more
// connections only add read-back hashing, buffers and contention; a download held back by the
// network costs almost no CPU (8 MB/s is about 1 % of a core).
export interface RampOptions {
  /** Connections per download at most. */
  max: number;
  /** Add connections only while the rest would take longer than this at the current rate. */
  payoffMs: number;
  /** Shortest measuring window. */
  minWindowMs: number;
  /** A step pays off when it raises the rate by this factor. */
  gain: number;
  /** Add connections only while they spend at least this share of their time waiting for bytes. */
  minIdleShare: number;
  /** …and this process used less than this share of one core over the window. */
  maxCpuShare: number;
}

export const DEFAULT_RAMP: Omit<RampOptions, 'max'> = { payoffMs: 2_000, minWindowMs: 150, gain: 1.15, minIdleShare: 0.5, maxCpuShare: 0.5 };

export class Ramp {
  private mark: { t: number; received: number };
  /** The rate before the last step, while that step is being judged. */
  private before: number | null = null;
  /** Connections added whose first byte has not arrived: no judging until they have. */
  private pending = 0;

  constructor(
    private readonly o: RampOptions,
    now: number,
    received: number,
  ) {
    this.mark = { t: now, received };
  }

  /** Measuring starts over (a restart from zero, the end of an outage). */
  restart(now: number, received: number): void {
    this.mark = { t: now, received };
    this.before = null;
  }

  /** `n` connections were added after the last decide(). */
  added(n: number): void {
    this.pending += n;
    if (n === 0) this.before = null;
  }

  /** One of the added connections got its first byte (or ended without one). */
  settled(now: number, received: number): void {
    if (this.pending === 0) return;
    this.pending -= 1;
    if (this.pending === 0) this.mark = { t: now, received };
  }

  /**
   * Called on a timer: how many connections to add now (the caller reports back with added()).
   * `idleShare`: the share of the last tick the connections spent waiting for bytes;
   * `cpuShare`: the CPU time this process used over the last tick, as a share of one core.
   */
  decide(now: number, received: number, remaining: number, connections: number, idleShare: number, cpuShare = 0): number {
    if (this.pending > 0) return 0;
    const dt = now - this.mark.t;
    if (dt < this.o.minWindowMs) return 0;
    const rate = ((received - this.mark.received) * 1000) / dt;
    this.mark = { t: now, received };
    if (!(rate > 0)) return 0;
    // The last step has not paid off (yet): no more until a window shows it did. A limit on the
    // total (a link, a bandwidth cap) never does; a machine busy for a moment soon does.
    if (this.before !== null && rate < this.before * this.o.gain) return 0;
    this.before = null;
    if (connections >= this.o.max || (remaining * 1000) / rate < this.o.payoffMs || idleShare < this.o.minIdleShare || cpuShare >= this.o.maxCpuShare) return 0;
    this.before = rate;
    return Math.min(3 * connections, this.o.max - connections); // ×4: 1, 4, 8
  }
}
