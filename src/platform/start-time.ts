// Process start times: what tells a process apart from a later one that was given the same pid
// (after a reboot, or once the pid counter wrapped). A start time is an opaque string, equal for
// the same process whenever and by whomever it is read, and different for any other process that
// holds the pid later:
//
//   - Linux: `/proc/<pid>/stat` field 22 (starttime, clock ticks since boot) with the boot id
//     (`/proc/sys/kernel/random/boot_id`), so a reboot changes it: `linux:<boot id>:<ticks>`;
//   - macOS (and other POSIX systems without /proc): `ps -o lstart= -p PID` in the C locale and
//     UTC, to the second: `ps:<seconds since the epoch>`;
//   - Windows: the process's creation time (a FILETIME, 100 ns resolution) to the microsecond,
//     read with `wmic` where it still exists, else with PowerShell: `win:<µs since the epoch>`.
//     Both readers give the same string for the same process.
//
// Everything here is pure (parsers and command lines as data), so each platform's output is
// tested on any host; the adapter runs the commands.
import path from 'node:path';

/** Field 22 of a `/proc/<pid>/stat` line (starttime), or null when the text is not one. */
export function parseProcStatStartTime(text: string): string | null {
  // The command name (field 2) is in parentheses and may itself contain spaces and parentheses:
  // the fields after it start after the *last* ")".
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const fields = text.slice(close + 2).trim().split(/\s+/);
  // fields[0] is field 3 (state), so field 22 is fields[19].
  const ticks = fields[19];
  return ticks !== undefined && /^\d+$/.test(ticks) ? ticks : null;
}

/** The Linux start time of a process from its `/proc/<pid>/stat` text and the boot id. */
export function linuxStartTime(statText: string, bootId: string): string | null {
  const ticks = parseProcStatStartTime(statText);
  return ticks === null ? null : `linux:${bootId.trim()}:${ticks}`;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/**
 * `ps -o lstart=` output, in the C locale ("Tue Mar  4 09:15:02 2025", read as UTC because the
 * command runs with TZ=UTC), as `ps:<seconds since the epoch>`; null when it is not one (ps
 * prints nothing for a pid that does not exist).
 */
export function parsePsLstart(stdout: string): string | null {
  const m = /^\s*[A-Za-z]{3}\s+([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s+(\d{4})\s*$/.exec(stdout);
  if (m === null) return null;
  const month = MONTHS.indexOf(m[1]!.toLowerCase());
  if (month < 0) return null;
  const ms = Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]));
  return Number.isFinite(ms) ? `ps:${Math.floor(ms / 1000)}` : null;
}

/** 100 ns intervals between 1601-01-01 (the FILETIME epoch) and 1970-01-01. */
const FILETIME_UNIX_EPOCH = 116_444_736_000_000_000n;

/**
 * PowerShell's `….StartTime.ToFileTimeUtc()` (a FILETIME: 100 ns intervals since 1601, UTC) as
 * `win:<µs since the epoch>`; null when the output is not a single number (an error).
 */
export function parseWindowsFileTime(stdout: string): string | null {
  const text = stdout.trim();
  if (!/^\d{1,20}$/.test(text)) return null;
  const since = BigInt(text) - FILETIME_UNIX_EPOCH;
  if (since < 0n) return null;
  return `win:${since / 10n}`;
}

/**
 * `wmic process where ProcessId=N get CreationDate /value` output: a CIM datetime
 * `CreationDate=yyyymmddHHMMSS.ffffff±UUU` (local time, UUU its offset from UTC in minutes) as
 * `win:<µs since the epoch>`, the same string parseWindowsFileTime gives for the same process.
 * Null when there is none ("No Instance(s) Available." for a pid that does not exist).
 */
export function parseWmicCreationDate(stdout: string): string | null {
  const m = /CreationDate=(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.(\d{6})([+-])(\d{3})/.exec(stdout);
  if (m === null) return null;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  const localMs = Date.UTC(year, month - 1, day, hour, minute, second);
  if (!Number.isFinite(localMs)) return null;
  const offsetMinutes = BigInt(m[9]!) * (m[8] === '-' ? -1n : 1n);
  const micros = BigInt(localMs) * 1000n + BigInt(m[7]!) - offsetMinutes * 60_000_000n;
  return micros < 0n ? null : `win:${micros}`;
}

/**
 * A command's output as text: wmic writes UTF-16LE when its output is not a console, other tools
 * write ASCII. (NUL bytes never occur in ASCII output, so they tell the two apart.)
 */
export function decodeCommandOutput(out: Buffer): string {
  let text = out.includes(0) ? out.toString('utf16le') : out.toString('latin1');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return text;
}

export interface StartTimeQuery {
  command: string;
  args: string[];
  /** The environment to run it with (the locale and time zone fix its output format). */
  env: Record<string, string>;
  parse: (stdout: string) => string | null;
}

/**
 * The commands that read a process's start time, in the order to try them: the first that
 * succeeds and parses answers. Empty on Linux, where /proc answers without a command.
 * `env` is the caller's environment (for PATH on POSIX, SystemRoot on Windows).
 */
export function startTimeQueries(os: 'linux' | 'darwin' | 'win32', pid: number, env: NodeJS.ProcessEnv, hasProc: boolean): StartTimeQuery[] {
  if (!Number.isInteger(pid) || pid <= 0) return [];
  if (os === 'win32') {
    const root = env.SystemRoot ?? env.SYSTEMROOT ?? env.windir ?? 'C:\\Windows';
    const system32 = path.win32.join(root, 'System32');
    // The caller's environment: PowerShell needs more of it than SystemRoot to start, and both
    // outputs are numbers whatever the locale.
    const winEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined) winEnv[k] = v;
    return [
      // Removed from recent Windows 11 builds; where present it answers several times faster.
      {
        command: path.win32.join(system32, 'wbem', 'WMIC.exe'),
        args: ['process', 'where', `ProcessId=${pid}`, 'get', 'CreationDate', '/value'],
        env: winEnv,
        parse: parseWmicCreationDate,
      },
      {
        command: path.win32.join(system32, 'WindowsPowerShell', 'v1.0', 'powershell.exe'),
        args: ['-NoLogo', '-NoProfile', '-NonInteractive', '-Command', `[System.Diagnostics.Process]::GetProcessById(${pid}).StartTime.ToFileTimeUtc()`],
        env: winEnv,
        parse: parseWindowsFileTime,
      },
    ];
  }
  if (os === 'linux' && hasProc) return [];
  // macOS, and POSIX systems without /proc: ps, in the C locale and UTC so its output is fixed.
  return [{ command: '/bin/ps', args: ['-o', 'lstart=', '-p', String(pid)], env: { PATH: '/bin:/usr/bin', LC_ALL: 'C', TZ: 'UTC' }, parse: parsePsLstart }];
}
