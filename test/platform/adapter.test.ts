// The platform adapter: every OS's decisions as data (only Linux runs here), and the Linux
// behaviour for real — both `current` pointer strategies, program resolution, tree termination.
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, readlink, realpath, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelhubError } from '../../src/errors.js';
import {
  adapterFor,
  decodeCommandOutput,
  isAliveWithStartTime,
  linuxStartTime,
  parseProcStatStartTime,
  parsePsLstart,
  parseWindowsFileTime,
  parseWmicCreationDate,
  platformAdapter,
  processStartTime,
  renameBackoffMs,
  RENAME_MAX_ATTEMPTS,
  type PlatformAdapter,
  type StartTimeQuery,
} from '../../src/platform/adapter.js';
import { tempDir } from '../helpers/tmp.js';

const linux = adapterFor('linux', 'x64');
const darwin = adapterFor('darwin', 'arm64');
const win = adapterFor('win32', 'x64');

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

async function rejection(p: Promise<unknown>): Promise<ModelhubError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ModelhubError);
    return err as ModelhubError;
  }
  throw new Error('expected a rejection');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond`; the ceiling only bounds how long a failing test hangs, so it is generous. */
async function until(cond: () => boolean, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

describe('platform adapter: decisions as data', () => {
  it('names the release platform of each OS/arch pair', () => {
    expect(linux.platform).toBe('linux-x64');
    expect(win.platform).toBe('windows-x64');
    expect(darwin.platform).toBe('darwin-arm64');
    expect(adapterFor('darwin', 'x64').platform).toBe('darwin-x64');
    expect(adapterFor('linux', 'arm64').platform).toBeNull();
    expect(adapterFor('win32', 'arm64').platform).toBeNull();
    // Other POSIX systems behave like Linux but have no release platform.
    const bsd = adapterFor('freebsd', 'x64');
    expect(bsd.os).toBe('linux');
    expect(bsd.platform).toBeNull();
    expect([linux.os, darwin.os, win.os]).toEqual(['linux', 'darwin', 'win32']);
    expect(platformAdapter.os).toBe(process.platform === 'win32' ? 'win32' : process.platform === 'darwin' ? 'darwin' : 'linux');
  });

  it('picks the default application-data folder per OS', () => {
    expect(linux.defaultHome({}, '/home/ada')).toBe('/home/ada/.local/share/modelhub');
    expect(linux.defaultHome({ XDG_DATA_HOME: '/data/xdg' }, '/home/ada')).toBe('/data/xdg/modelhub');
    // A relative XDG_DATA_HOME is invalid per the XDG spec and ignored.
    expect(linux.defaultHome({ XDG_DATA_HOME: 'rel/dir' }, '/home/ada')).toBe('/home/ada/.local/share/modelhub');
    expect(darwin.defaultHome({ XDG_DATA_HOME: '/ignored' }, '/Users/ada')).toBe('/Users/ada/Library/Application Support/modelhub');
    expect(win.defaultHome({ LOCALAPPDATA: 'C:\\Users\\ada\\AppData\\Local' }, 'C:\\Users\\ada')).toBe('C:\\Users\\ada\\AppData\\Local\\modelhub');
    // Windows environment names are case-insensitive.
    expect(win.defaultHome({ LocalAppData: 'D:\\Local' }, 'C:\\Users\\ada')).toBe('D:\\Local\\modelhub');
    expect(win.defaultHome({}, 'C:\\Users\\ada')).toBe('C:\\Users\\ada\\AppData\\Local\\modelhub');
  });

  it('uses a symlink for current on Linux and macOS, current.json on Windows', () => {
    expect(linux.pointerStrategy).toBe('symlink');
    expect(darwin.pointerStrategy).toBe('symlink');
    expect(win.pointerStrategy).toBe('json');
    expect(linux.currentPath('/h/services/x')).toBe('/h/services/x/current');
  });

  it('lists executable candidates: PATHEXT on Windows, the name alone elsewhere', () => {
    expect(linux.executableCandidates('python3', { PATHEXT: '.EXE' })).toEqual(['python3']);
    expect(darwin.executableCandidates('runtime/bin/python3', {})).toEqual(['runtime/bin/python3']);
    expect(win.executableCandidates('node', { PATHEXT: '.COM;.EXE;.BAT;.CMD' })).toEqual(['node.com', 'node.exe', 'node.bat', 'node.cmd']);
    expect(win.executableCandidates('runtime/python', { PATHEXT: '.EXE;.CMD' })).toEqual(['runtime/python.exe', 'runtime/python.cmd']);
    // A name that already carries an executable extension is taken as it is.
    expect(win.executableCandidates('runtime/python.exe', { PATHEXT: '.COM;.EXE' })).toEqual(['runtime/python.exe']);
    expect(win.executableCandidates('tool.CMD', { PATHEXT: '.EXE;.CMD' })).toEqual(['tool.CMD']);
    // A dot that is not an executable extension still gets one appended.
    expect(win.executableCandidates('python3.10', { PATHEXT: '.EXE' })).toEqual(['python3.10.exe']);
    // The key is case-insensitive; without PATHEXT the Windows default applies.
    expect(win.executableCandidates('node', { PathExt: '.EXE' })).toEqual(['node.exe']);
    expect(win.executableCandidates('node', {})).toEqual(['node.com', 'node.exe', 'node.bat', 'node.cmd']);
  });

  it('kills a Windows tree with taskkill /T /F, and uses signals elsewhere', () => {
    expect(win.killTreeCommand(4242)).toEqual({ command: 'taskkill', args: ['/PID', '4242', '/T', '/F'] });
    expect(linux.killTreeCommand(4242)).toBeNull();
    expect(darwin.killTreeCommand(4242)).toBeNull();
  });

  it('spawns services detached and without a console window', () => {
    for (const a of [linux, darwin, win]) expect(a.spawnDetachedOptions()).toEqual({ detached: true, windowsHide: true });
  });

  it('refuses to signal pids that would hit the wrong processes', () => {
    for (const pid of [0, 1, -5, 1.5, process.pid]) expect(() => linux.terminateTree(pid, 'SIGTERM')).toThrow(/refusing/);
  });
});

describe('process start times as data', () => {
  // A /proc/<pid>/stat line whose command name holds spaces and parentheses; starttime (field 22) is 8675309.
  const STAT = '4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 8675309 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n';
  const BOOT = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';

  it('Linux: field 22 of /proc/<pid>/stat, with the boot id so that a reboot changes it', () => {
    expect(parseProcStatStartTime(STAT)).toBe('8675309');
    expect(linuxStartTime(STAT, `${BOOT}\n`)).toBe(`linux:${BOOT}:8675309`);
    expect(linuxStartTime(STAT, 'another-boot')).not.toBe(linuxStartTime(STAT, BOOT));
    expect(parseProcStatStartTime('4242 (x) S 1 2 3')).toBeNull();
    expect(parseProcStatStartTime('no parentheses at all')).toBeNull();
    expect(linuxStartTime('', BOOT)).toBeNull();
  });

  it('macOS: ps -o lstart= (C locale, UTC) to the second', () => {
    const secs = Date.UTC(2025, 2, 4, 9, 15, 2) / 1000;
    expect(parsePsLstart('Tue Mar  4 09:15:02 2025\n')).toBe(`ps:${secs}`);
    expect(parsePsLstart('Tue Mar 4 09:15:02 2025')).toBe(`ps:${secs}`);
    expect(parsePsLstart('Wed Dec 31 23:59:59 2025')).toBe(`ps:${Date.UTC(2025, 11, 31, 23, 59, 59) / 1000}`);
    // One second later is another process.
    expect(parsePsLstart('Tue Mar  4 09:15:03 2025')).not.toBe(parsePsLstart('Tue Mar  4 09:15:02 2025'));
    // ps prints nothing (and exits 1) for a pid that does not exist.
    for (const bad of ['', '\n', 'STARTED', 'Tue Foo  4 09:15:02 2025', '09:15:02']) expect(parsePsLstart(bad), bad).toBeNull();
  });

  it('Windows: the creation time to the microsecond, the same from PowerShell and from wmic', () => {
    // 2025-01-06T10:11:12.123456Z, plus 7 × 100 ns that the microsecond drops.
    const micros = BigInt(Date.UTC(2025, 0, 6, 10, 11, 12)) * 1000n + 123456n;
    const fileTime = (micros * 10n + 7n + 116_444_736_000_000_000n).toString();
    const expected = `win:${micros}`;
    expect(parseWindowsFileTime(`${fileTime}\r\n`)).toBe(expected);
    // wmic: local time and its offset from UTC in minutes; every offset gives the same instant.
    expect(parseWmicCreationDate('\r\r\nCreationDate=20250106111112.123456+060\r\r\n\r\r\n')).toBe(expected);
    expect(parseWmicCreationDate('CreationDate=20250106051112.123456-300')).toBe(expected);
    expect(parseWmicCreationDate('CreationDate=20250106101112.123456+000')).toBe(expected);
    expect(parseWmicCreationDate('CreationDate=20250106101112.123457+000')).not.toBe(expected);
    // Errors: PowerShell's message for a pid that does not exist, wmic's "No Instance(s)".
    expect(parseWindowsFileTime('Exception calling "GetProcessById" with "1" argument(s): "Process with an Id of 4242 is not running."')).toBeNull();
    expect(parseWindowsFileTime('')).toBeNull();
    expect(parseWindowsFileTime('5')).toBeNull(); // before 1970
    expect(parseWmicCreationDate('No Instance(s) Available.\r\n')).toBeNull();
    // wmic writes UTF-16LE (with a BOM) when its output is a pipe.
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('\r\nCreationDate=20250106101112.123456+000\r\n', 'utf16le')]);
    expect(parseWmicCreationDate(decodeCommandOutput(utf16))).toBe(expected);
    expect(decodeCommandOutput(Buffer.from('133806342721234567\r\n'))).toBe('133806342721234567\r\n');
  });

  it('names the command each OS reads a start time with (Linux reads /proc, no command)', () => {
    expect(linux.startTimeQueries(4242)).toEqual([]);
    const [ps, ...rest] = darwin.startTimeQueries(4242);
    expect(rest).toEqual([]);
    expect(ps).toMatchObject({ command: '/bin/ps', args: ['-o', 'lstart=', '-p', '4242'], env: { LC_ALL: 'C', TZ: 'UTC' } });
    const winQ = adapterFor('win32', 'x64', { env: { SystemRoot: 'D:\\Windows' } }).startTimeQueries(4242);
    expect(winQ.map((q) => [q.command, q.args])).toEqual([
      ['D:\\Windows\\System32\\wbem\\WMIC.exe', ['process', 'where', 'ProcessId=4242', 'get', 'CreationDate', '/value']],
      [
        'D:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe',
        ['-NoLogo', '-NoProfile', '-NonInteractive', '-Command', '[System.Diagnostics.Process]::GetProcessById(4242).StartTime.ToFileTimeUtc()'],
      ],
    ]);
    for (const a of [linux, darwin, win]) expect(a.startTimeQueries(0)).toEqual([]);
  });

  it('runs the queries in order until one answers, and compares before calling a live pid the recorded process', () => {
    // Stand-ins for wmic (absent: null), PowerShell and ps; the pid is a live one (the parent of
    // this test process), so isAlive holds and the start time decides.
    const pid = process.ppid;
    const ran: string[] = [];
    const fileTime = (BigInt(Date.UTC(2025, 0, 6)) * 10_000n + 116_444_736_000_000_000n).toString();
    const fakeWin = adapterFor('win32', 'x64', {
      env: { SystemRoot: 'C:\\Windows' },
      runQuery: (q: StartTimeQuery) => {
        ran.push(path.win32.basename(q.command));
        return q.command.endsWith('WMIC.exe') ? null : Buffer.from(`${fileTime}\r\n`);
      },
    });
    const recorded = `win:${BigInt(Date.UTC(2025, 0, 6)) * 1000n}`;
    expect(fakeWin.processStartTime(pid)).toBe(recorded);
    expect(ran).toEqual(['WMIC.exe', 'powershell.exe']);
    expect(fakeWin.isAliveWithStartTime(pid, recorded)).toBe(true);
    expect(fakeWin.isAliveWithStartTime(pid, 'win:1')).toBe(false);
    expect(fakeWin.isAliveWithStartTime(pid, null)).toBe(true);
    // A dead pid is not alive whatever its record, and nothing is run to find out.
    ran.length = 0;
    expect(fakeWin.isAliveWithStartTime(2 ** 22 + 12345, recorded)).toBe(false);
    expect(ran).toEqual([]);

    const fakeMac = adapterFor('darwin', 'arm64', { runQuery: () => Buffer.from('Mon Jan  6 00:00:00 2025\n') });
    expect(fakeMac.processStartTime(pid)).toBe(`ps:${Date.UTC(2025, 0, 6) / 1000}`);
    expect(fakeMac.isAliveWithStartTime(pid, `ps:${Date.UTC(2025, 0, 6) / 1000}`)).toBe(true);
    expect(fakeMac.isAliveWithStartTime(pid, `ps:${Date.UTC(2025, 0, 6) / 1000 - 1}`)).toBe(false);
    // When no query answers (ps failed), a live pid is not taken for the recorded process.
    const failing = adapterFor('darwin', 'arm64', { runQuery: () => null });
    expect(failing.processStartTime(pid)).toBeNull();
    expect(failing.isAliveWithStartTime(pid, `ps:${Date.UTC(2025, 0, 6) / 1000}`)).toBe(false);
  });
});

describe('platform adapter: rename retries', () => {
  function scripted(failures: string[]): { adapter: (os: string) => PlatformAdapter; calls: string[][]; sleeps: number[] } {
    const calls: string[][] = [];
    const sleeps: number[] = [];
    const queue = [...failures];
    const rename = async (a: string, b: string): Promise<void> => {
      calls.push([a, b]);
      const code = queue.shift();
      if (code !== undefined) throw errno(code);
    };
    const fakeSleep = async (ms: number): Promise<void> => {
      sleeps.push(ms);
    };
    return { adapter: (os) => adapterFor(os, 'x64', { rename, sleep: fakeSleep }), calls, sleeps };
  }

  it('retries EBUSY/EPERM/EACCES on Windows, then succeeds', async () => {
    const s = scripted(['EBUSY', 'EPERM', 'EACCES']);
    await s.adapter('win32').renameWithRetry('a.tmp', 'current.json');
    expect(s.calls).toEqual([
      ['a.tmp', 'current.json'],
      ['a.tmp', 'current.json'],
      ['a.tmp', 'current.json'],
      ['a.tmp', 'current.json'],
    ]);
    expect(s.sleeps).toEqual([10, 20, 40]);
  });

  it('gives up after the bound with the last error', async () => {
    const s = scripted(Array<string>(50).fill('EBUSY'));
    await expect(s.adapter('win32').renameWithRetry('a', 'b')).rejects.toMatchObject({ code: 'EBUSY' });
    expect(s.calls).toHaveLength(RENAME_MAX_ATTEMPTS);
    expect(s.sleeps).toHaveLength(RENAME_MAX_ATTEMPTS - 1);
    const total = s.sleeps.reduce((n, ms) => n + ms, 0);
    expect(total).toBeGreaterThan(500);
    expect(total).toBeLessThanOrEqual(2000);
    expect(s.sleeps).toEqual(Array.from({ length: RENAME_MAX_ATTEMPTS - 1 }, (_, i) => renameBackoffMs(i)));
  });

  it('does not retry other errors, nor anything on Linux and macOS', async () => {
    const w = scripted(['ENOENT']);
    await expect(w.adapter('win32').renameWithRetry('a', 'b')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(w.calls).toHaveLength(1);
    for (const os of ['linux', 'darwin']) {
      const s = scripted(['EBUSY']);
      await expect(s.adapter(os).renameWithRetry('a', 'b')).rejects.toMatchObject({ code: 'EBUSY' });
      expect(s.calls).toHaveLength(1);
      expect(s.sleeps).toHaveLength(0);
    }
  });
});

// Both strategies run for real on Linux: the json one is only *chosen* on Windows.
const strategies: [string, PlatformAdapter][] = [
  ['symlink (Linux/macOS)', linux],
  ['current.json (Windows)', win],
];

async function serviceDirWith(versions: string[]): Promise<string> {
  const dir = path.join(await tempDir('modelhub-current-'), 'svc');
  for (const v of versions) {
    await mkdir(path.join(dir, v), { recursive: true });
    await writeFile(path.join(dir, v, 'marker'), v);
  }
  return dir;
}

describe.each(strategies)('current pointer, %s, for real', (_name, adapter) => {
  it('writes, reads, switches and removes current', async () => {
    const dir = await serviceDirWith(['1.0.0', '1.1.0']);
    expect(await adapter.readCurrent(dir)).toBeNull();
    expect(existsSync(adapter.currentPath(dir))).toBe(false);

    await adapter.writeCurrent(dir, '1.0.0');
    expect(await adapter.readCurrent(dir)).toBe('1.0.0');
    expect(await readFile(path.join(adapter.currentPath(dir), 'marker'), 'utf8')).toBe('1.0.0');

    await adapter.writeCurrent(dir, '1.1.0');
    expect(await adapter.readCurrent(dir)).toBe('1.1.0');
    expect(await readFile(path.join(adapter.currentPath(dir), 'marker'), 'utf8')).toBe('1.1.0');

    if (adapter.pointerStrategy === 'symlink') {
      // A relative link, so the data directory can move.
      expect(await readlink(path.join(dir, 'current'))).toBe('1.1.0');
    } else {
      expect(JSON.parse(await readFile(path.join(dir, 'current.json'), 'utf8'))).toEqual({ version: '1.1.0' });
      expect(adapter.currentPath(dir)).toBe(path.join(dir, '1.1.0'));
    }
    // No temp names left behind.
    expect((await readdir(dir)).sort()).toEqual(['1.0.0', '1.1.0', adapter.pointerStrategy === 'json' ? 'current.json' : 'current']);

    await adapter.removeCurrent(dir);
    expect(await adapter.readCurrent(dir)).toBeNull();
    await adapter.removeCurrent(dir); // idempotent
    expect((await readdir(dir)).sort()).toEqual(['1.0.0', '1.1.0']);
  });

  it('refuses a version directory that does not exist or is not a plain name', async () => {
    const dir = await serviceDirWith(['1.0.0']);
    await adapter.writeCurrent(dir, '1.0.0');
    expect((await rejection(adapter.writeCurrent(dir, '2.0.0'))).code).toBe('VERSION_NOT_FOUND');
    for (const bad of ['../1.0.0', '1.0.0/x', '', '.', '..']) {
      expect((await rejection(adapter.writeCurrent(dir, bad))).code).toBe('INVALID_REQUEST');
    }
    expect(await adapter.readCurrent(dir)).toBe('1.0.0');
  });

  it('never shows a reader a missing or partial current while it flips (reader in another process)', async () => {
    const dir = await serviceDirWith(['1.0.0', '2.0.0']);
    await adapter.writeCurrent(dir, '1.0.0');
    const stopFile = path.join(dir, '..', 'stop');
    // The reader reports on stdout (synchronous for a pipe on Linux, so its busy loop cannot
    // starve it): "ready" after its first good read, then its counts every 200 reads.
    const reader = `
      const fs = require('node:fs'); const path = require('node:path');
      const [dir, stop, mode] = process.argv.slice(1);
      let reads = 0, errors = 0; const seen = new Set(); let firstError = null;
      const report = () => console.log(JSON.stringify({ reads, errors, seen: [...seen], firstError }));
      while (!fs.existsSync(stop)) {
        try {
          let version;
          if (mode === 'json') {
            version = JSON.parse(fs.readFileSync(path.join(dir, 'current.json'), 'utf8')).version;
          } else {
            version = path.basename(fs.readlinkSync(path.join(dir, 'current')));
          }
          const root = mode === 'json' ? path.join(dir, version) : path.join(dir, 'current');
          const marker = fs.readFileSync(path.join(root, 'marker'), 'utf8');
          if (marker !== '1.0.0' && marker !== '2.0.0') throw new Error('bad marker ' + marker);
          seen.add(marker); reads++;
          if (reads === 1) console.log('ready');
        } catch (e) { errors++; firstError ??= String(e); }
        if ((reads + errors) % 200 === 0) report();
      }
      report();
    `;
    const child = spawn(process.execPath, ['-e', reader, dir, stopFile, adapter.pointerStrategy], { stdio: ['ignore', 'pipe', 'inherit'] });
    type Counts = { reads: number; errors: number; seen: string[]; firstError: string | null };
    let ready = false;
    let counts: Counts | null = null;
    let pending = '';
    child.stdout.on('data', (b: Buffer) => {
      pending += b.toString();
      let i;
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        if (line === 'ready') ready = true;
        else if (line.startsWith('{')) counts = JSON.parse(line) as Counts;
      }
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const lastCounts = (): Counts | null => counts;

    try {
      // Wait for the reader to be reading, whatever the machine's load, then flip while it polls
      // until it has read through plenty of flips and seen both versions; an in-process reader
      // polls between the writer's steps too.
      expect(await until(() => ready)).toBe(true);
      let inProcessErrors = 0;
      let flips = 0;
      const giveUp = Date.now() + 30_000;
      for (;;) {
        await adapter.writeCurrent(dir, flips % 2 === 0 ? '2.0.0' : '1.0.0');
        flips++;
        const v = await adapter.readCurrent(dir);
        if (v !== '1.0.0' && v !== '2.0.0') inProcessErrors++;
        if (flips % 50 === 0) {
          await sleep(5);
          const c = lastCounts();
          if (flips >= 300 && c !== null && c.reads > 100 && c.seen.length === 2) break;
          if (Date.now() > giveUp) break;
        }
      }
      await writeFile(stopFile, '');
      expect(await exited).toBe(0);
      const result = lastCounts();
      expect(result).not.toBeNull();
      expect(result!.firstError).toBeNull();
      expect(result!.errors).toBe(0);
      expect(result!.reads).toBeGreaterThan(100);
      expect(result!.seen.sort()).toEqual(['1.0.0', '2.0.0']);
      expect(flips).toBeGreaterThanOrEqual(300);
      expect(inProcessErrors).toBe(0);
      expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    } finally {
      await writeFile(stopFile, '');
    }
  });
});

describe('resolveProgram, for real on Linux', () => {
  let root: string;
  let versionDir: string;
  const setup = async (): Promise<void> => {
    root = await realpath(await tempDir('modelhub-resolve-'));
    versionDir = path.join(root, 'svc', '1.0.0');
    await mkdir(path.join(versionDir, 'runtime', 'bin'), { recursive: true });
    await writeFile(path.join(versionDir, 'runtime', 'bin', 'run.sh'), '#!/bin/sh\necho hi\n');
    await chmod(path.join(versionDir, 'runtime', 'bin', 'run.sh'), 0o755);
    await writeFile(path.join(versionDir, 'runtime', 'bin', 'data.txt'), 'not a program');
    await chmod(path.join(versionDir, 'runtime', 'bin', 'data.txt'), 0o644);
    await writeFile(path.join(root, 'outside.sh'), '#!/bin/sh\n');
    await chmod(path.join(root, 'outside.sh'), 0o755);
    await symlink(path.join(root, 'outside.sh'), path.join(versionDir, 'runtime', 'bin', 'escape'));
    await symlink('run.sh', path.join(versionDir, 'runtime', 'bin', 'alias'));
    await mkdir(path.join(root, 'pathdir'));
    await writeFile(path.join(root, 'pathdir', 'mytool'), '#!/bin/sh\n');
    await chmod(path.join(root, 'pathdir', 'mytool'), 0o755);
    await mkdir(path.join(root, 'pathdir-noexec'));
    await writeFile(path.join(root, 'pathdir-noexec', 'mytool'), 'plain file');
  };
  const ready = setup();

  it('finds a program inside the package, following links that stay inside', async () => {
    await ready;
    expect(await linux.resolveProgram('runtime/bin/run.sh', versionDir, {})).toBe(path.join(versionDir, 'runtime', 'bin', 'run.sh'));
    expect(await linux.resolveProgram('runtime/bin/alias', versionDir, {})).toBe(path.join(versionDir, 'runtime', 'bin', 'run.sh'));
  });

  it('refuses programs outside the package, missing or not executable, with clear messages', async () => {
    await ready;
    const cases: [string, RegExp][] = [
      ['../outside.sh', /relative path inside the package/],
      ['runtime/../../outside.sh', /relative path inside the package/],
      ['/bin/sh', /relative path inside the package/],
      ['runtime\\bin\\run.sh', /relative path inside the package/],
      ['runtime/bin/escape', /outside the service directory/],
      ['runtime/bin/missing', /not found in the package/],
      ['runtime/bin/data.txt', /not an executable file/],
      ['runtime/bin', /not an executable file/],
    ];
    for (const [program, message] of cases) {
      const err = await rejection(linux.resolveProgram(program, versionDir, {}));
      expect(err.code, program).toBe('START_FAILED');
      expect(err.message, program).toMatch(message);
    }
  });

  it('looks a bare name up on PATH, skipping non-executable files', async () => {
    await ready;
    const node = await linux.resolveProgram('node', versionDir, process.env);
    expect(path.isAbsolute(node)).toBe(true);
    expect(spawnSync(node, ['-e', 'process.stdout.write("ok")']).stdout.toString()).toBe('ok');

    const PATH = [path.join(root, 'pathdir-noexec'), 'relative/dir', path.join(root, 'pathdir')].join(':');
    expect(await linux.resolveProgram('mytool', versionDir, { PATH })).toBe(path.join(root, 'pathdir', 'mytool'));
    const err = await rejection(linux.resolveProgram('no-such-tool-xyz', versionDir, { PATH }));
    expect(err.code).toBe('START_FAILED');
    expect(err.message).toMatch(/not found on PATH/);
    expect((await rejection(linux.resolveProgram('mytool', versionDir, {}))).message).toMatch(/not found on PATH/);
  });

  it('applies the Windows rules (PATHEXT, ";" separator, no batch files) on the host file system', async () => {
    await ready;
    const dir = path.join(root, 'windir');
    await mkdir(dir);
    await writeFile(path.join(dir, 'tool.cmd'), '@echo off\n');
    const env = { Path: `${path.join(root, 'pathdir')};${dir}`, PATHEXT: '.EXE;.CMD' };
    const batch = await rejection(win.resolveProgram('tool', versionDir, env));
    expect(batch.message).toMatch(/batch file/);
    await writeFile(path.join(dir, 'tool.exe'), 'MZ');
    expect(await win.resolveProgram('tool', versionDir, env)).toBe(path.join(dir, 'tool.exe'));
    // Inside the package: `runtime/python` finds `runtime/python.exe`.
    await writeFile(path.join(versionDir, 'runtime', 'python.exe'), 'MZ');
    expect(await win.resolveProgram('runtime/python', versionDir, env)).toBe(path.join(versionDir, 'runtime', 'python.exe'));
    expect(await win.resolveProgram('runtime/python.exe', versionDir, env)).toBe(path.join(versionDir, 'runtime', 'python.exe'));
  });
});

describe('process trees, for real on Linux', () => {
  const started: number[] = [];
  afterAll(() => {
    for (const pid of started) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });

  /** A detached group leader with one grandchild; resolves with both pids. */
  async function tree(): Promise<{ leader: number; grandchild: number }> {
    const src = `
      const { spawn } = require('node:child_process');
      const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      console.log(g.pid);
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['-e', src], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
    started.push(child.pid ?? 0);
    const line = await new Promise<string>((resolve) => child.stdout.once('data', (b: Buffer) => resolve(b.toString())));
    child.stdout.destroy();
    child.unref();
    return { leader: child.pid ?? 0, grandchild: Number(line.trim()) };
  }

  it('terminateTree signals the whole process group', async () => {
    const t = await tree();
    expect(linux.isAlive(t.leader)).toBe(true);
    expect(linux.isAlive(t.grandchild)).toBe(true);
    expect(linux.isTreeAlive(t.leader)).toBe(true);
    linux.terminateTree(t.leader, 'SIGTERM');
    expect(await until(() => !linux.isTreeAlive(t.leader))).toBe(true);
    expect(linux.isAlive(t.grandchild)).toBe(false);
  });

  it('keeps reporting a group alive when only its leader died, until the group is killed', async () => {
    const t = await tree();
    process.kill(t.leader, 'SIGKILL');
    expect(await until(() => !linux.isAlive(t.leader))).toBe(true);
    expect(linux.isTreeAlive(t.leader)).toBe(true); // the grandchild still runs in the group
    linux.terminateTree(t.leader, 'SIGKILL');
    expect(await until(() => !linux.isTreeAlive(t.leader))).toBe(true);
    expect(linux.isAlive(t.grandchild)).toBe(false);
  });

  it('falls back to the pid alone when it leads no group, and ignores a pid that is gone', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    const pid = child.pid ?? 0;
    const exited = new Promise((resolve) => child.on('exit', resolve));
    linux.terminateTree(pid, 'SIGTERM');
    await exited;
    expect(linux.isAlive(pid)).toBe(false);
    expect(() => linux.terminateTree(pid, 'SIGKILL')).not.toThrow();
  });

  it('reads command lines on Linux only', () => {
    const argv = linux.commandLine(process.pid);
    expect(argv?.[0]).toMatch(/node/);
    expect(linux.commandLine(2 ** 22 + 12345)).toBeNull();
    expect(win.commandLine(process.pid)).toBeNull();
    expect(darwin.commandLine(process.pid)).toBeNull();
  });

  it('reads start times from /proc: stable for a process, different for another, with the boot id', async () => {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const own = linux.processStartTime(process.pid);
    expect(own).toMatch(new RegExp(`^linux:${bootId}:\\d+$`));
    expect(processStartTime(process.pid)).toBe(own);
    const child = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
    const pid = child.pid ?? 0;
    started.push(pid);
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const st = linux.processStartTime(pid);
    expect(st).toMatch(/^linux:/);
    expect(linux.processStartTime(pid)).toBe(st); // read again: the same
    expect(st).not.toBe(own);
    // In the same terms as ps: starttime in clock ticks since boot, as /proc/<pid>/stat has it.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    expect(st).toBe(`linux:${bootId}:${ticks}`);
    expect(linux.isAliveWithStartTime(pid, st)).toBe(true);
    expect(isAliveWithStartTime(pid, st)).toBe(true);
    expect(linux.isAliveWithStartTime(pid, null)).toBe(true);
    const earlier = st!.replace(/\d+$/, (t) => String(Number(t) - 1));
    expect(linux.isAliveWithStartTime(pid, earlier)).toBe(false);
    expect(linux.isAliveWithStartTime(pid, `linux:another-boot:${ticks}`)).toBe(false);

    // terminateTree refuses a live pid recorded with another start time: nothing is signalled.
    expect(linux.terminateTree(pid, 'SIGTERM', earlier)).toBe(false);
    expect(linux.terminateTree(pid, 'SIGTERM', `linux:another-boot:${ticks}`)).toBe(false);
    expect(linux.isAlive(pid)).toBe(true);
    // With its own start time it is signalled, and SIGTERM (not an earlier signal) ended it.
    expect(linux.terminateTree(pid, 'SIGTERM', st)).toBe(true);
    expect(await exited).toBe('SIGTERM');
    expect(linux.processStartTime(pid)).toBeNull();
    expect(linux.isAliveWithStartTime(pid, st)).toBe(false);
    expect(linux.processStartTime(2 ** 22 + 12345)).toBeNull();
    expect(linux.processStartTime(0)).toBeNull();
  });

  it('counts a zombie (exited, never reaped) as dead', async () => {
    // `sleep 0.1` becomes a child of `sleep 60`, which never reaps it.
    const sh = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'], detached: true });
    started.push(sh.pid ?? 0);
    const zombie = Number((await new Promise<string>((resolve) => sh.stdout.once('data', (b: Buffer) => resolve(b.toString())))).trim());
    // Wait until the kernel shows it as a zombie (state Z), however long a busy machine takes.
    const state = (): string | null => {
      try {
        const text = readFileSync(`/proc/${zombie}/stat`, 'utf8');
        return text.slice(text.lastIndexOf(')') + 2).split(' ')[0] ?? null;
      } catch {
        return null;
      }
    };
    expect(await until(() => state() === 'Z')).toBe(true);
    expect(() => process.kill(zombie, 0)).not.toThrow(); // the kernel still has it …
    expect(linux.isAlive(zombie)).toBe(false); // … but it is not running
    expect(linux.isAlive(sh.pid ?? 0)).toBe(true);
    linux.terminateTree(sh.pid ?? 0, 'SIGKILL');
  });
});
