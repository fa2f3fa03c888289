// Outages wait instead of failing (SPEC §10). A request that gets no HTTP answer at all
// (connection refused or reset, DNS failure, unreachable, no answer in time) does not spend one
// of the attempts meant for HTTP errors: the download says it is waiting for the network, probes
// with a back-off capped low (an outage that ends is noticed within a couple of seconds), and
// carries on from where it stopped. Only a continuous outage longer than `maxWaitMs` fails it,
// with a retryable NETWORK_ERROR.
import { ModelhubError } from '../errors.js';
import { sleep } from './abort.js';
import { errMessage } from './errors.js';

export const DEFAULT_MAX_NETWORK_WAIT_MS = 30 * 60_000;
const PROBE_CAP_MS = 2_000;

/** Delay before probe number `n` (1-based) of an outage: 250 ms · 2^(n-1), capped at 2 s, ±20 %. */
export function defaultProbeDelayMs(n: number): number {
  const base = Math.min(PROBE_CAP_MS, 250 * 2 ** Math.max(0, n - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** System error codes (Node, undici) that mean "no HTTP answer": the network or the host is away. */
const OUTAGE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_CLOSED',
]);
/** Chromium's net errors, as Electron's net.fetch reports them. */
const CHROMIUM_OUTAGE = /net::ERR_(INTERNET_DISCONNECTED|NETWORK_CHANGED|NETWORK_IO_SUSPENDED|CONNECTION_(REFUSED|RESET|CLOSED|ABORTED|FAILED|TIMED_OUT)|TIMED_OUT|NAME_NOT_RESOLVED|NAME_RESOLUTION_FAILED|ADDRESS_UNREACHABLE|EMPTY_RESPONSE|PROXY_CONNECTION_FAILED|TUNNEL_CONNECTION_FAILED)\b/;

/** A fetch rejection caused by the network being away (not by a bad URL or a protocol error). */
export function isOutage(err: unknown, depth = 0): boolean {
  if (depth > 5 || typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; errno?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  for (const c of [e.code, e.errno]) if (typeof c === 'string' && OUTAGE_CODES.has(c)) return true;
  if (typeof e.message === 'string' && CHROMIUM_OUTAGE.test(e.message)) return true;
  // node-fetch: FetchError "socket hang up" carries code ECONNRESET (above); undici: TypeError
  // "fetch failed" with the system error as its cause; happy eyeballs: an AggregateError.
  if (Array.isArray(e.errors) && e.errors.some((x) => isOutage(x, depth + 1))) return true;
  return isOutage(e.cause, depth + 1);
}

export interface NetworkWaitOptions {
  url: string;
  maxWaitMs: number;
  probeDelayMs: (n: number) => number;
  now: () => number;
  /** Entering (true) or leaving (false) an outage. */
  onChange?: (waiting: boolean) => void;
}

/** One download's view of the network, shared by its connections. */
export class NetworkWait {
  private since: number | null = null;
  private lastError = '';
  /** Time spent in outages that ended. */
  waitedMs = 0;

  constructor(private readonly o: NetworkWaitOptions) {}

  get waiting(): boolean {
    return this.since !== null;
  }

  /**
   * A request of one connection got no answer; `probe` counts its consecutive ones. Waits before
   * it may try again, or throws a retryable NETWORK_ERROR once the outage has lasted maxWaitMs.
   */
  async wait(cause: unknown, probe: number, signal: AbortSignal): Promise<void> {
    const now = this.o.now();
    this.lastError = errMessage(cause instanceof Error && cause.cause !== undefined ? cause.cause : cause);
    if (this.since === null) {
      this.since = now;
      this.o.onChange?.(true);
    }
    const waited = now - this.since;
    if (waited >= this.o.maxWaitMs) {
      throw new ModelhubError('NETWORK_ERROR', `${this.o.url}: no network for ${Math.round(waited / 1000)} s (last error: ${this.lastError})`, {
        cause,
        retryable: true,
        // `outage`: no answer at all, as opposed to an answer that was wrong (sources.ts tells them apart).
        details: { url: this.o.url, waitedMs: waited, maxWaitMs: this.o.maxWaitMs, outage: true },
      });
    }
    await sleep(Math.min(this.o.probeDelayMs(probe), this.o.maxWaitMs - waited), signal);
  }

  /** Outages so far, the current one included. */
  totalWaitedMs(): number {
    return this.waitedMs + (this.since === null ? 0 : this.o.now() - this.since);
  }

  /** The server answered, or bytes flowed: the outage, if any, is over. */
  ok(): void {
    if (this.since === null) return;
    this.waitedMs += this.o.now() - this.since;
    this.since = null;
    this.o.onChange?.(false);
  }
}
