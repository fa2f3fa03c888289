// A bandwidth limit shared by every download of one engine (`--limit-rate 5M`,
// EngineOptions.maxBytesPerSecond): one bucket caps the node, whatever the number of jobs and
// connections. Bytes are paid for as they are taken from a socket; a connection whose payment
// leaves the bucket in debt waits until the debt is paid before it reads again, and not
// reading is what slows the sender (TCP back-pressure). Debt, not refusal, keeps it fair: each
// waiter waits for everything taken before it.
import { ModelhubError } from '../errors.js';
import { sleep } from './abort.js';

export class TokenBucket {
  readonly burstBytes: number;
  private readonly now: () => number;
  private tokens: number;
  private last: number;

  constructor(
    readonly bytesPerSecond: number,
    o: { burstBytes?: number; now?: () => number } = {},
  ) {
    if (!(Number.isFinite(bytesPerSecond) && bytesPerSecond > 0)) {
      throw new ModelhubError('INVALID_REQUEST', `bandwidth limit must be > 0 bytes per second, got ${bytesPerSecond}`, { retryable: false });
    }
    this.now = o.now ?? (() => performance.now());
    // A fifth of a second of data: smooth enough to hold the rate over a second, large enough
    // that a 64 KiB socket read never waits on its own.
    this.burstBytes = o.burstBytes ?? Math.max(64 * 1024, Math.floor(bytesPerSecond / 5));
    this.tokens = this.burstBytes;
    this.last = this.now();
  }

  /** Pays for `n` bytes received; resolves once the bucket is out of debt. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    const t = this.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((t - this.last) * this.bytesPerSecond) / 1000);
    this.last = t;
    this.tokens -= n;
    if (this.tokens >= 0) return;
    await sleep(Math.ceil((-this.tokens * 1000) / this.bytesPerSecond), signal);
  }
}
