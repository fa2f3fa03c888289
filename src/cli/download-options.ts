// --limit-rate RATE and --max-wait DURATION, on every command that downloads (SPEC §10).
import type { Command } from 'commander';
import { UsageError } from './run.js';

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** `5M` → 5 MiB/s, as curl and aria2 read it (K, M, G are powers of 1024; a trailing /s or B is allowed). */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:\/s)?$/i.exec(text.trim());
  const n = m === null ? NaN : Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]!;
  if (!Number.isFinite(n) || n < 1) throw new UsageError(`--limit-rate: "${text}" is not a rate such as 500K or 5M`);
  return Math.floor(n);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000 };

/** `30m`, `90s`, `1h`, `1500ms`; a bare number is seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(text.trim());
  const n = m === null ? NaN : Number(m[1]) * DURATION_UNITS[(m[2] ?? '').toLowerCase()]!;
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--max-wait: "${text}" is not a duration such as 90s, 30m or 1h`);
  return Math.round(n);
}

export function addDownloadOptions(cmd: Command): Command {
  return cmd
    .option('--limit-rate <rate>', 'cap the download speed of this node, e.g. 500K or 5M (bytes per second)')
    .option('--max-wait <duration>', 'how long a download waits for the network to come back before it fails (default 30m)');
}

/** The engine options these flags set, for any command (absent flags set nothing). */
export function downloadOptionsOf(cmd: Command): { maxBytesPerSecond?: number; maxNetworkWaitMs?: number } {
  const o = cmd.opts<{ limitRate?: string; maxWait?: string }>();
  return {
    ...(o.limitRate !== undefined ? { maxBytesPerSecond: parseRate(o.limitRate) } : {}),
    ...(o.maxWait !== undefined ? { maxNetworkWaitMs: parseDuration(o.maxWait) } : {}),
  };
}
