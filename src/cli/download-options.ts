// --limit-rate RATE and --max-wait DURATION (SPEC §10) and --mirror URL (SPEC §12), on every
// command that downloads.
import type { Command } from 'commander';
import { ModelhubError } from '../errors.js';
import { mirrorsFromEnv, parseMirrors } from '../download/sources.js';
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

/** `64M`, `512K`, `1G`, `0`; a bare number is bytes (K, M, G are powers of 1024). */
export function parseSize(text: string, from: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  const n = m === null ? NaN : Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]!;
  if (!Number.isFinite(n) || n < 0 || n > Number.MAX_SAFE_INTEGER) throw new UsageError(`${from}: "${text}" is not a size such as 64M, 512K or 0`);
  return Math.floor(n);
}

export function addDownloadOptions(cmd: Command): Command {
  return cmd
    .option('--limit-rate <rate>', 'cap the download speed of this node, e.g. 500K or 5M (bytes per second)')
    .option('--max-wait <duration>', 'how long a download waits for the network to come back before it fails (default 30m)')
    .option(
      '--mirror <url>',
      'a static copy of the hub storage folder to fetch packages and model files from before the hub; repeatable, tried in order; replaces $MODELHUB_MIRRORS (comma-separated)',
      (url: string, previous: string[] | undefined) => [...(previous ?? []), url],
    )
    .option('--disk-margin <size>', 'free space kept beyond what a download and its unpacked files need, e.g. 64M (default; or $MODELHUB_DISK_MARGIN)');
}

/**
 * The mirrors: every --mirror flag, in order, else $MODELHUB_MIRRORS. Flags replace the
 * variable rather than add to it, as --hub replaces $MODELHUB_HUB: a command line says all of
 * where this run fetches from. A bad URL in either is bad usage.
 */
export function mirrorsOf(flags: readonly string[] | undefined, env: NodeJS.ProcessEnv): string[] {
  const given = flags !== undefined && flags.length > 0 ? { list: flags, from: '--mirror' } : { list: mirrorsFromEnv(env.MODELHUB_MIRRORS), from: '$MODELHUB_MIRRORS' };
  try {
    return parseMirrors(given.list);
  } catch (err) {
    throw new UsageError(`${given.from}: ${err instanceof ModelhubError ? err.message : String(err)}`);
  }
}

/** The engine options these flags set, for any command (absent flags set nothing; mirrors also come from the environment). */
export function downloadOptionsOf(cmd: Command): { maxBytesPerSecond?: number; maxNetworkWaitMs?: number; mirrors?: string[]; diskMarginBytes?: number } {
  const o = cmd.opts<{ limitRate?: string; maxWait?: string; mirror?: string[]; diskMargin?: string }>();
  const mirrors = mirrorsOf(o.mirror, process.env);
  const margin = o.diskMargin !== undefined ? parseSize(o.diskMargin, '--disk-margin') : process.env.MODELHUB_DISK_MARGIN ? parseSize(process.env.MODELHUB_DISK_MARGIN, '$MODELHUB_DISK_MARGIN') : undefined;
  return {
    ...(margin !== undefined ? { diskMarginBytes: margin } : {}),
    ...(o.limitRate !== undefined ? { maxBytesPerSecond: parseRate(o.limitRate) } : {}),
    ...(o.maxWait !== undefined ? { maxNetworkWaitMs: parseDuration(o.maxWait) } : {}),
    ...(mirrors.length > 0 ? { mirrors } : {}),
  };
}
