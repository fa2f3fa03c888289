// The platform adapter: the one module that knows how Linux, macOS and Windows differ. Nothing
// outside src/platform/ asks which OS it runs on; it asks the adapter what to do instead.
//
// Every decision is data of the adapter (`adapterFor(os, arch)`), so tests can check the
// Windows and macOS decisions on Linux. File-system work (the `current` pointer, program
// resolution) always uses the host's `node:path` and `node:fs`, so both pointer strategies also
// run for real on the host; only the *choice* of strategy, folder or command line is per OS.
//
// Differences held here:
//   - the default application-data folder (SPEC §5),
//   - the `current` pointer (SPEC §7): a symlink replaced by rename on Linux/macOS, a
//     `current.json` `{"version": "…"}` replaced by rename on Windows,
//   - executable resolution (PATH separator, PATHEXT, the exec bit),
//   - process-tree termination (signals to the process group vs `taskkill /PID n /T /F`),
//   - whether a process is alive (zombies count as dead on Linux, see `isAlive`),
//   - a process's start time, which tells it apart from a later process given the same pid
//     (see start-time.ts), and the refusal to signal a live pid whose start time differs,
//   - rename retries on EPERM/EBUSY/EACCES (antivirus and indexers hold files on Windows),
//   - the release platform name (`linux-x64`, `windows-x64`, `darwin-arm64`, `darwin-x64`).
import { spawn, spawnSync } from 'node:child_process';
import { constants as fsConstants, readdirSync, readFileSync } from 'node:fs';
import { access, lstat, open, readFile, readlink, realpath, rename, rm, stat, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ModelhubError } from '../errors.js';
import type { Platform } from '../schemas/common.js';
import { isSafeRelativePath } from '../schemas/common.js';
import { platformNameOf } from './name.js';
import { decodeCommandOutput, linuxStartTime, startTimeQueries, type StartTimeQuery } from './start-time.js';

export { decodeCommandOutput, linuxStartTime, parseProcStatStartTime, parsePsLstart, parseWindowsFileTime, parseWmicCreationDate, type StartTimeQuery } from './start-time.js';

export type OsName = 'linux' | 'darwin' | 'win32';

export interface PlatformAdapter {
  os: OsName;
  /** The release platform of this OS/arch pair, or null when modelhub ships none for it. */
  platform: Platform | null;
  /** linux: $XDG_DATA_HOME/modelhub or ~/.local/share/modelhub; darwin: ~/Library/Application Support/modelhub; win32: %LOCALAPPDATA%\modelhub. */
  defaultHome(env: NodeJS.ProcessEnv, homedir: string): string;
  pointerStrategy: 'symlink' | 'json';
  /** The version `current` points to, or null when there is none. */
  readCurrent(serviceDir: string): Promise<string | null>;
  /** Atomically point `current` at `version` (whose directory must exist in serviceDir). */
  writeCurrent(serviceDir: string, version: string): Promise<void>;
  removeCurrent(serviceDir: string): Promise<void>;
  /**
   * The path a reader opens to reach the current version's files: the `current` symlink, or for
   * the json strategy the version directory `current.json` names (read synchronously). Without
   * a current version this is `<serviceDir>/current`, which does not exist, so opening it fails
   * with ENOENT.
   */
  currentPath(serviceDir: string): string;
  /** File names to try for a program (adds PATHEXT extensions on win32). */
  executableCandidates(program: string, env: NodeJS.ProcessEnv): string[];
  /** An absolute path to run; START_FAILED with a clear message when not found/outside/not executable. */
  resolveProgram(program: string, versionDir: string, env: NodeJS.ProcessEnv): Promise<string>;
  /** win32: the taskkill command line that kills a tree; null where signals do it. */
  killTreeCommand(pid: number): { command: string; args: string[] } | null;
  /**
   * posix: signal the process group `pid` leads (falling back to the pid alone); win32: taskkill /T /F.
   * With `startTime` (as processStartTime read it when the process was recorded), a live `pid`
   * whose start time is not that one is another process that reused the pid: nothing is
   * signalled and the result is false. (A dead leader whose group lingers is still signalled:
   * a pid is not handed out again while a process group of that id has members.)
   */
  terminateTree(pid: number, signal: 'SIGTERM' | 'SIGKILL', startTime?: string | null): boolean;
  /** rename(2), retried on EPERM/EBUSY/EACCES with a bounded backoff on win32. */
  renameWithRetry(from: string, to: string): Promise<void>;
  spawnDetachedOptions(): { detached: boolean; windowsHide: boolean };
  /** Whether `pid` is a live process (a zombie is not; addition to the engine's API). */
  isAlive(pid: number): boolean;
  /** Whether `pid` or any live member of the process group it leads is still running (addition). */
  isTreeAlive(pid: number): boolean;
  /** The argv of a running process where the OS shows it cheaply (Linux: /proc), else null (addition). */
  commandLine(pid: number): string[] | null;
  /**
   * The start time of process `pid` as an opaque string (see start-time.ts), or null when there
   * is no such process or the OS will not say. Equal for the same process whenever it is read;
   * different for a process that got the pid later, also across a reboot.
   */
  processStartTime(pid: number): string | null;
  /**
   * Whether `pid` is alive and is still the process whose start time was `startTime`. Without a
   * recorded start time (null/undefined: recorded by an older version, or where none could be
   * read) this is isAlive. A live pid whose start time cannot be read now is not taken for it.
   */
  isAliveWithStartTime(pid: number, startTime: string | null | undefined): boolean;
  /** The commands processStartTime runs, in order (data; empty on Linux, which reads /proc). */
  startTimeQueries(pid: number): StartTimeQuery[];
}

export interface AdapterDeps {
  rename?: (from: string, to: string) => Promise<void>;
  sleep?: (ms: number) => Promise<void>;
  /** Runs a start-time query: its stdout, or null when it cannot run, fails or times out. */
  runQuery?: (query: StartTimeQuery) => Buffer | null;
  /** The environment start-time queries are built from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** How long one start-time query may take (PowerShell's start-up alone is a good part of it). */
const START_TIME_QUERY_TIMEOUT_MS = 15_000;

function runQuerySync(query: StartTimeQuery): Buffer | null {
  const r = spawnSync(query.command, query.args, {
    env: query.env,
    stdio: ['ignore', 'pipe', 'ignore'],
    windowsHide: true,
    timeout: START_TIME_QUERY_TIMEOUT_MS,
    maxBuffer: 64 * 1024,
  });
  if (r.error !== undefined || r.status !== 0) return null;
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// Rename with retries

export const RENAME_RETRY_CODES: ReadonlySet<string> = new Set(['EPERM', 'EBUSY', 'EACCES']);
/** Total attempts, and the backoff before attempt n+1: 10, 20, 40, 80, 160, 250, 250… ms (≈1.3 s in all). */
export const RENAME_MAX_ATTEMPTS = 10;
export function renameBackoffMs(attempt: number): number {
  return Math.min(250, 10 * 2 ** attempt);
}

function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = err.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

const realSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Rename, retrying the transient Windows failures (a scanner or indexer holding the file) with a
 * bounded backoff; any other error, or the last transient one, is thrown as it is.
 */
export async function renameWithRetries(
  from: string,
  to: string,
  deps: { rename: (a: string, b: string) => Promise<void>; sleep: (ms: number) => Promise<void> },
  maxAttempts = RENAME_MAX_ATTEMPTS,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await deps.rename(from, to);
      return;
    } catch (err) {
      const code = errnoCode(err);
      if (code === undefined || !RENAME_RETRY_CODES.has(code) || attempt + 1 >= maxAttempts) throw err;
      await deps.sleep(renameBackoffMs(attempt));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Environment lookup; case-insensitive on Windows (a plain object is not, unlike process.env there). */
function envGet(env: NodeJS.ProcessEnv, name: string, caseInsensitive: boolean): string | undefined {
  const direct = env[name];
  if (direct !== undefined || !caseInsensitive) return direct;
  const upper = name.toUpperCase();
  for (const [k, v] of Object.entries(env)) if (k.toUpperCase() === upper && v !== undefined) return v;
  return undefined;
}

function isVersionSegment(version: string): boolean {
  return isSafeRelativePath(version) && !version.includes('/');
}

function startFailed(message: string, details: Record<string, unknown>, cause?: unknown): ModelhubError {
  return new ModelhubError('START_FAILED', message, { details, cause });
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

function tempName(dir: string, base: string): string {
  return path.join(dir, `.${base}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

// ---------------------------------------------------------------------------------------------
// The adapter

export function adapterFor(osArg: string, arch: string, deps: AdapterDeps = {}): PlatformAdapter {
  // Other POSIX systems (FreeBSD…) behave like Linux here; modelhub ships no release for them
  // (`platform` is null), but the CLI's data and hub commands still work.
  const osName: OsName = osArg === 'win32' ? 'win32' : osArg === 'darwin' ? 'darwin' : 'linux';
  const windows = osName === 'win32';
  const doRename = deps.rename ?? ((a: string, b: string) => rename(a, b));
  const sleep = deps.sleep ?? realSleep;
  const runQuery = deps.runQuery ?? runQuerySync;
  const queryEnv = deps.env ?? process.env;
  const pointerStrategy: 'symlink' | 'json' = windows ? 'json' : 'symlink';

  async function renameWithRetry(from: string, to: string): Promise<void> {
    if (windows) await renameWithRetries(from, to, { rename: doRename, sleep });
    else await doRename(from, to);
  }

  /** fsync a directory so a rename in it is durable. Windows cannot open directories for this. */
  async function fsyncDir(dir: string): Promise<void> {
    if (windows) return;
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  async function assertVersionDir(serviceDir: string, version: string): Promise<void> {
    if (!isVersionSegment(version)) {
      throw new ModelhubError('INVALID_REQUEST', `not a valid version directory name: ${JSON.stringify(version)}`, {
        details: { serviceDir, version },
      });
    }
    const dir = path.join(serviceDir, version);
    const st = await stat(dir).catch(() => null);
    if (st === null || !st.isDirectory()) {
      throw new ModelhubError('VERSION_NOT_FOUND', `cannot point current at ${version}: ${dir} is not a directory`, {
        details: { serviceDir, version },
      });
    }
  }

  interface PointerOps {
    currentPath: (serviceDir: string) => string;
    readCurrent: (serviceDir: string) => Promise<string | null>;
    writeCurrent: (serviceDir: string, version: string) => Promise<void>;
    removeCurrent: (serviceDir: string) => Promise<void>;
  }

  const symlinkPointer: PointerOps = {
    currentPath: (serviceDir: string): string => path.join(serviceDir, 'current'),
    async readCurrent(serviceDir: string): Promise<string | null> {
      try {
        const target = await readlink(path.join(serviceDir, 'current'));
        return path.basename(target);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return null;
        throw err;
      }
    },
    async writeCurrent(serviceDir: string, version: string): Promise<void> {
      await assertVersionDir(serviceDir, version);
      const tmp = tempName(serviceDir, 'current');
      // A relative link, so the data directory can be moved as a whole.
      await symlink(version, tmp, 'dir');
      try {
        await renameWithRetry(tmp, path.join(serviceDir, 'current'));
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      await fsyncDir(serviceDir);
    },
    async removeCurrent(serviceDir: string): Promise<void> {
      await rm(path.join(serviceDir, 'current'), { force: true });
      await fsyncDir(serviceDir).catch(() => undefined);
    },
  };

  const parsePointer = (text: string, file: string): string => {
    let version: unknown;
    try {
      version = (JSON.parse(text) as { version?: unknown }).version;
    } catch (err) {
      throw new ModelhubError('INTERNAL', `${file} is not valid JSON`, { cause: err });
    }
    if (typeof version !== 'string' || !isVersionSegment(version)) {
      throw new ModelhubError('INTERNAL', `${file} does not name a valid version`, { details: { file } });
    }
    return version;
  };

  const jsonPointer: PointerOps = {
    currentPath(serviceDir: string): string {
      const file = path.join(serviceDir, 'current.json');
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return path.join(serviceDir, 'current');
        throw err;
      }
      return path.join(serviceDir, parsePointer(text, file));
    },
    async readCurrent(serviceDir: string): Promise<string | null> {
      const file = path.join(serviceDir, 'current.json');
      try {
        return parsePointer(await readFile(file, 'utf8'), file);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return null;
        throw err;
      }
    },
    async writeCurrent(serviceDir: string, version: string): Promise<void> {
      await assertVersionDir(serviceDir, version);
      const tmp = tempName(serviceDir, 'current.json');
      try {
        const fh = await open(tmp, 'wx', 0o644);
        try {
          await fh.writeFile(`${JSON.stringify({ version })}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await renameWithRetry(tmp, path.join(serviceDir, 'current.json'));
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      await fsyncDir(serviceDir);
    },
    async removeCurrent(serviceDir: string): Promise<void> {
      await rm(path.join(serviceDir, 'current.json'), { force: true });
      await fsyncDir(serviceDir).catch(() => undefined);
    },
  };

  const pointer = pointerStrategy === 'json' ? jsonPointer : symlinkPointer;

  function pathExts(env: NodeJS.ProcessEnv): string[] {
    const raw = envGet(env, 'PATHEXT', true) ?? '.COM;.EXE;.BAT;.CMD';
    return raw
      .split(';')
      .map((e) => e.trim().toLowerCase())
      .filter((e) => e.startsWith('.') && e.length > 1);
  }

  function executableCandidates(program: string, env: NodeJS.ProcessEnv): string[] {
    if (!windows) return [program];
    const exts = pathExts(env);
    const ext = path.win32.extname(program).toLowerCase();
    if (ext !== '' && exts.includes(ext)) return [program];
    return exts.map((e) => program + e);
  }

  /** A regular file we may execute (on Windows: a regular file; the exec bit does not exist there). */
  async function isExecutableFile(p: string): Promise<boolean> {
    const st = await stat(p).catch(() => null);
    if (st === null || !st.isFile()) return false;
    if (windows) return true;
    return access(p, fsConstants.X_OK).then(
      () => true,
      () => false,
    );
  }

  /** Node refuses to spawn .bat/.cmd without a shell (CVE-2024-27980), and we never use one. */
  const isBatch = (p: string): boolean => windows && /\.(bat|cmd)$/i.test(p);

  async function resolveInPackage(program: string, versionDir: string, env: NodeJS.ProcessEnv): Promise<string> {
    const details = { program, versionDir };
    if (!isSafeRelativePath(program)) {
      throw startFailed(
        `exec.program ${JSON.stringify(program)} must be a relative path inside the package (forward slashes, no "..", not absolute) or a bare command name`,
        details,
      );
    }
    const root = await realpath(versionDir).catch((err: unknown) => {
      throw startFailed(`service directory ${versionDir} does not exist`, details, err);
    });
    const tried: string[] = [];
    for (const candidate of executableCandidates(program, env)) {
      const joined = path.join(root, ...candidate.split('/'));
      tried.push(joined);
      const exists = await lstat(joined).then(
        () => true,
        () => false,
      );
      if (!exists) continue;
      const real = await realpath(joined).catch(() => null);
      if (real === null) throw startFailed(`exec.program ${program} is a dangling link (${joined})`, details);
      if (!isInside(root, real)) {
        throw startFailed(`exec.program ${program} resolves to ${real}, outside the service directory ${root}`, details);
      }
      if (isBatch(real)) {
        throw startFailed(`exec.program ${program} is a batch file (${real}); modelhub never runs a shell, point exec.program at an executable`, details);
      }
      if (!(await isExecutableFile(real))) {
        throw startFailed(`exec.program ${program} (${real}) is not an executable file`, details);
      }
      return real;
    }
    throw startFailed(`exec.program ${program} not found in the package (tried ${tried.join(', ')})`, details);
  }

  async function resolveOnPath(program: string, env: NodeJS.ProcessEnv): Promise<string> {
    const pathVar = envGet(env, 'PATH', windows) ?? '';
    const delimiter = windows ? ';' : ':';
    // Empty entries would mean "the current directory"; a service never runs from there.
    const dirs = pathVar.split(delimiter).filter((d) => d !== '' && path.isAbsolute(d));
    let batch: string | null = null;
    for (const dir of dirs) {
      for (const candidate of executableCandidates(program, env)) {
        const full = path.join(dir, candidate);
        if (!(await isExecutableFile(full))) continue;
        if (isBatch(full)) {
          batch ??= full;
          continue;
        }
        return full;
      }
    }
    const hint = batch === null ? '' : ` (found only the batch file ${batch}, which needs a shell; modelhub never runs one)`;
    throw startFailed(`program ${JSON.stringify(program)} not found on PATH${hint}`, { program, path: pathVar });
  }

  async function resolveProgram(program: string, versionDir: string, env: NodeJS.ProcessEnv): Promise<string> {
    if (program === '' || program.includes('\0')) throw startFailed('exec.program is empty or contains NUL', { program });
    const looksLikePath = program.includes('/') || program.includes('\\') || /^[A-Za-z]:/.test(program);
    if (looksLikePath) return resolveInPackage(program, versionDir, env);
    if (program === '.' || program === '..') throw startFailed(`exec.program ${program} is not a program`, { program });
    return resolveOnPath(program, env);
  }

  function assertPid(pid: number): void {
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) {
      throw new ModelhubError('INTERNAL', `refusing to signal pid ${pid}`);
    }
  }

  function killTreeCommand(pid: number): { command: string; args: string[] } | null {
    if (!windows) return null;
    return { command: 'taskkill', args: ['/PID', String(pid), '/T', '/F'] };
  }

  function terminateTree(pid: number, signal: 'SIGTERM' | 'SIGKILL', startTime?: string | null): boolean {
    assertPid(pid);
    // A live pid that started at another time is some other process that reused the pid.
    if (startTime !== undefined && startTime !== null && isAlive(pid) && processStartTime(pid) !== startTime) return false;
    const cmd = killTreeCommand(pid);
    if (cmd !== null) {
      // Windows has no signal a detached console tree can handle gracefully: both requests kill
      // the tree (taskkill /T /F). Services must tolerate being killed, as on a power cut.
      const child = spawn(cmd.command, cmd.args, { stdio: 'ignore', windowsHide: true });
      child.on('error', () => undefined);
      child.unref();
      return true;
    }
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      // Not a group leader (or no such group): fall back to the process itself.
    }
    try {
      process.kill(pid, signal);
    } catch (err) {
      if (errnoCode(err) !== 'ESRCH') throw err;
    }
    return true;
  }

  /** Linux: the state letter and process group of a pid from /proc, or null if unavailable. */
  function procStat(pid: number | string): { state: string; pgrp: number } | null {
    if (osName !== 'linux') return null;
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return { state: fields[0] ?? '', pgrp: Number(fields[2]) };
    } catch {
      return null;
    }
  }

  function isAlive(pid: number): boolean {
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
    } catch (err) {
      // EPERM: it exists, owned by someone else.
      return errnoCode(err) === 'EPERM';
    }
    // A zombie (exited, not yet reaped, e.g. reparented to a PID 1 that never reaps) is dead.
    const st = procStat(pid);
    return st === null || (st.state !== 'Z' && st.state !== 'X');
  }

  function isTreeAlive(pid: number): boolean {
    if (isAlive(pid)) return true;
    if (windows || !Number.isInteger(pid) || pid <= 1) return false;
    try {
      process.kill(-pid, 0);
    } catch (err) {
      if (errnoCode(err) !== 'EPERM') return false;
    }
    // The group still has members; on Linux, ignore zombies among them.
    if (osName !== 'linux') return true;
    let entries: string[];
    try {
      entries = readdirSync('/proc');
    } catch {
      return true;
    }
    for (const e of entries) {
      if (!/^\d+$/.test(e)) continue;
      const st = procStat(e);
      if (st !== null && st.pgrp === pid && st.state !== 'Z' && st.state !== 'X') return true;
    }
    return false;
  }

  function commandLine(pid: number): string[] | null {
    if (osName !== 'linux' || !Number.isInteger(pid) || pid <= 0) return null;
    try {
      const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
    } catch {
      return null;
    }
  }

  // Start times. Linux reads /proc (a file read: cheap enough for every status and signal); the
  // boot id is read once, it cannot change while this process lives.
  let bootIdCache: string | undefined;
  function bootId(): string {
    if (bootIdCache === undefined) {
      try {
        bootIdCache = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      } catch {
        bootIdCache = '';
      }
    }
    return bootIdCache;
  }
  // Other POSIX systems run as 'linux' here but may have no /proc: they ask ps instead.
  let hasProcCache: boolean | undefined;
  function hasProc(): boolean {
    if (osName !== 'linux') return false;
    hasProcCache ??= (() => {
      try {
        readFileSync('/proc/self/stat', 'utf8');
        return true;
      } catch {
        return false;
      }
    })();
    return hasProcCache;
  }

  function queriesFor(pid: number): StartTimeQuery[] {
    return startTimeQueries(osName, pid, queryEnv, hasProc());
  }

  /** This process's own start time never changes: read once (a command on macOS and Windows). */
  let ownStartTime: string | undefined;
  function processStartTime(pid: number): string | null {
    if (!Number.isInteger(pid) || pid <= 0) return null;
    if (pid === process.pid && ownStartTime !== undefined) return ownStartTime;
    let found: string | null = null;
    if (osName === 'linux' && hasProc()) {
      try {
        found = linuxStartTime(readFileSync(`/proc/${pid}/stat`, 'utf8'), bootId());
      } catch {
        found = null;
      }
    } else {
      for (const q of queriesFor(pid)) {
        const out = runQuery(q);
        found = out === null ? null : q.parse(decodeCommandOutput(out));
        if (found !== null) break;
      }
    }
    if (pid === process.pid && found !== null) ownStartTime = found;
    return found;
  }

  function isAliveWithStartTime(pid: number, startTime: string | null | undefined): boolean {
    if (!isAlive(pid)) return false;
    if (startTime === undefined || startTime === null) return true;
    return processStartTime(pid) === startTime;
  }

  function defaultHome(env: NodeJS.ProcessEnv, homedir: string): string {
    if (windows) {
      const local = envGet(env, 'LOCALAPPDATA', true);
      if (local !== undefined && local !== '') return path.win32.join(local, 'modelhub');
      return path.win32.join(homedir, 'AppData', 'Local', 'modelhub');
    }
    if (osName === 'darwin') return path.posix.join(homedir, 'Library', 'Application Support', 'modelhub');
    // XDG Base Directory: a relative $XDG_DATA_HOME is invalid and must be ignored.
    const xdg = env.XDG_DATA_HOME;
    if (xdg !== undefined && path.posix.isAbsolute(xdg)) return path.posix.join(xdg, 'modelhub');
    return path.posix.join(homedir, '.local', 'share', 'modelhub');
  }

  return {
    os: osName,
    platform: platformNameOf(osArg, arch),
    defaultHome,
    pointerStrategy,
    readCurrent: pointer.readCurrent,
    writeCurrent: pointer.writeCurrent,
    removeCurrent: pointer.removeCurrent,
    currentPath: pointer.currentPath,
    executableCandidates,
    resolveProgram,
    killTreeCommand,
    terminateTree,
    renameWithRetry,
    spawnDetachedOptions: () => ({ detached: true, windowsHide: true }),
    isAlive,
    isTreeAlive,
    commandLine,
    processStartTime,
    isAliveWithStartTime,
    startTimeQueries: queriesFor,
  };
}

/** The adapter of the running process. */
export const platformAdapter: PlatformAdapter = adapterFor(process.platform, process.arch);

/**
 * The start time of process `pid` on this machine (an opaque string; null when there is no such
 * process or the OS will not say). Record it next to a pid; compare with isAliveWithStartTime.
 */
export function processStartTime(pid: number): string | null {
  return platformAdapter.processStartTime(pid);
}

/**
 * Whether `pid` is alive on this machine and is the process whose start time was `startTime`
 * (from processStartTime when the pid was recorded). A live pid with another start time is a
 * different process that reused the pid: false. Without a recorded start time: whether it is alive.
 */
export function isAliveWithStartTime(pid: number, startTime: string | null | undefined): boolean {
  return platformAdapter.isAliveWithStartTime(pid, startTime);
}

/** The default data directory of this machine (SPEC §5: used when neither --home nor $MODELHUB_HOME is given). */
export function defaultHomeDir(env: NodeJS.ProcessEnv = process.env): string {
  return platformAdapter.defaultHome(env, os.homedir());
}
