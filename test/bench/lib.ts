// Shared helpers for the benchmarks in test/bench/: options, temp dirs and cleanup, child
// processes (timed, killed at exit), statistics and formatting, and a real hub with real signed
// releases built by the admin flow (demo source → pack → sign → publish).
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHub, type Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { writeDemoService, type DemoServiceOptions } from '../../src/demo/fixtures.js';
import { pack } from '../../src/pack/index.js';
import { platformNameOf } from '../../src/platform/name.js';
import type { Manifest } from '../../src/schemas/manifest.js';
import { readPublicKeyFile, readSecretKeyFile, writeKeyPair } from '../../src/sign/keygen.js';
import { signFile } from '../../src/sign/sign.js';

// dist/test/bench/lib.js → the repository root is three levels up.
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = path.join(REPO, 'dist', 'cli', 'modelhub.js'); // the bin, as shipped (scripts/bundle-cli.mjs)
export const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Options

export interface BenchOptions {
  quick: boolean;
  /** Size of the big package (hub vs nginx, install vs curl), MiB. */
  mb: number;
  /** Paired runs per comparison. */
  runs: number;
  /** The second size for the installer's peak RSS, MiB. */
  smallMb: number;
  /** The third size for the installer's peak RSS (memory must not grow with size), MiB. */
  largeMb: number;
  /** Failing updates in the rollback benchmark. */
  rollbackRuns: number;
  /** Health-check timeout of the failing release in the rollback benchmark, ms. */
  healthTimeoutMs: number;
}

export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return Math.round(n);
}

export function benchOptions(quick: boolean): BenchOptions {
  return {
    quick,
    mb: envInt('BENCH_MB', quick ? 32 : 400),
    runs: envInt('BENCH_RUNS', quick ? 2 : 5),
    smallMb: envInt('BENCH_SMALL_MB', quick ? 8 : 64),
    largeMb: envInt('BENCH_LARGE_MB', quick ? 64 : 1024),
    rollbackRuns: envInt('BENCH_ROLLBACK_RUNS', quick ? 2 : 5),
    healthTimeoutMs: envInt('BENCH_HEALTH_TIMEOUT_MS', 2000),
  };
}

// ---------------------------------------------------------------------------------------------
// Output

export function log(message: string): void {
  process.stdout.write(message + '\n');
}

export function heading(title: string): void {
  log('');
  log(`== ${title} ${'='.repeat(Math.max(0, 88 - title.length))}`);
}

/** One figure for the final summary. */
export interface Figure {
  name: string;
  value: string;
  /** 'pass' / 'miss' against the bar (or goal when there is no bar); 'info' for plain figures. */
  verdict: 'pass' | 'miss' | 'info';
  note?: string;
}

export interface BenchReport {
  title: string;
  figures: Figure[];
  skipped?: string;
}

export function fmtMs(ms: number): string {
  return `${Math.round(ms)} ms`;
}

export function fmtGBps(bytes: number, seconds: number): string {
  return `${(bytes / seconds / 1e9).toFixed(2)} GB/s`;
}

export function fmtMiB(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MiB`;
}

/** Decimal megabytes (10^6), as the RSS bars are written. */
export function fmtMB(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export function padLeft(s: string, n: number): string {
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

// ---------------------------------------------------------------------------------------------
// Statistics

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const hi = s[mid] ?? Number.NaN;
  return s.length % 2 === 1 ? hi : ((s[mid - 1] ?? Number.NaN) + hi) / 2;
}

export function max(xs: readonly number[]): number {
  return xs.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
}

export function min(xs: readonly number[]): number {
  return xs.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
}

// ---------------------------------------------------------------------------------------------
// Cleanup: temp dirs, servers and child processes, undone in reverse order at the end (or on
// SIGINT/SIGTERM).

type Cleanup = () => Promise<void> | void;
const cleanups: { label: string; fn: Cleanup }[] = [];
const liveChildren = new Set<ChildProcess>();

export function onCleanup(label: string, fn: Cleanup): void {
  cleanups.push({ label, fn });
}

let interrupted = false;

/**
 * After SIGINT/SIGTERM: the benchmarks' own children are killed and no new ones start (only
 * cleanups, which pass `cleanup: true`, still run commands).
 */
export async function interrupt(): Promise<void> {
  interrupted = true;
  for (const child of liveChildren) await killChild(child);
}

let cleaning: Promise<void> | null = null;

/** Runs every registered cleanup once; concurrent callers (main, a signal) share one pass. */
export function runCleanups(): Promise<void> {
  cleaning ??= doCleanups().finally(() => {
    cleaning = null;
  });
  return cleaning;
}

async function doCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const c = cleanups.pop();
    if (c === undefined) break;
    try {
      await c.fn();
    } catch (err) {
      process.stderr.write(`cleanup "${c.label}" failed: ${(err as Error).message}\n`);
    }
  }
  for (const child of liveChildren) await killChild(child);
}

export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `modelhub-bench-${prefix}-`));
  onCleanup(`rm ${dir}`, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after a grace period; resolves once the child is gone. */
export async function killChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!exited(child)) child.kill('SIGKILL');
  }, graceMs);
  await gone;
  clearTimeout(timer);
}

/** A long-running child (a server), killed at cleanup. */
export function spawnDaemon(cmd: string, args: string[], opts: { cwd?: string } = {}): ChildProcess {
  if (interrupted) throw new Error(`interrupted: not starting ${cmd}`);
  const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.once('error', (err) => {
    liveChildren.delete(child);
    process.stderr.write(`${cmd}: ${err.message}\n`);
  });
  // Drain the pipes so a chatty child never blocks.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
  /** Epoch ms at spawn and at exit (to line up with event-log timestamps). */
  startedAt: number;
  exitedAt: number;
  pid: number | undefined;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Called once the child has a pid (e.g. to sample /proc/<pid>/status). */
  onSpawn?: (pid: number) => void;
  /** A cleanup's command: still runs after an interrupt. */
  cleanup?: boolean;
}

/** Runs a command to completion, timing it from spawn to exit. */
export function runTimed(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (interrupted && opts.cleanup !== true) {
      reject(new Error(`interrupted: not starting ${cmd}`));
      return;
    }
    const startedAt = Date.now();
    const t0 = performance.now();
    let t1 = Number.NaN;
    let exitedAt = Number.NaN;
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    child.once('spawn', () => {
      if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    });
    child.once('exit', () => {
      t1 = performance.now();
      exitedAt = Date.now();
    });
    child.once('error', (e) => {
      if (timer !== undefined) clearTimeout(timer);
      liveChildren.delete(child);
      reject(e);
    });
    child.once('close', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      liveChildren.delete(child);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: (Number.isNaN(t1) ? performance.now() : t1) - t0,
        startedAt,
        exitedAt: Number.isNaN(exitedAt) ? Date.now() : exitedAt,
        pid: child.pid,
      });
    });
  });
}

/** Runs a command and throws unless it exits 0. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await runTimed(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal ?? '?'}\n${r.stderr.slice(-2000)}${r.stdout.slice(-2000)}`);
  }
  return r;
}

/** Flushes dirty pages, so the writeback of one run does not land in the next. */
export async function syncDisks(): Promise<void> {
  await runTimed('sync', []).catch(() => undefined);
}

export async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** The first executable of that name on PATH or in the extra dirs, else null. */
export async function findExecutable(name: string, extraDirs: string[] = []): Promise<string | null> {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== ''), ...extraDirs];
  for (const d of dirs) {
    const f = path.join(d, name);
    if (await isExecutable(f)) return f;
  }
  return null;
}

/** A port free on 127.0.0.1 right now (for servers that cannot report a port-0 bind). */
export { freePort } from '../helpers/free-port.js';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// The CLI

export interface CliRun extends RunResult {
  lines: Record<string, unknown>[];
  result: Record<string, unknown> | undefined;
}

export function parseJsonLines(text: string): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const l of text.split('\n')) {
    if (l.trim() === '') continue;
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      // not a JSON line
    }
  }
  return lines;
}

/** `modelhub ARGS --home HOME --hub HUB --json`, optionally wrapped (e.g. in /usr/bin/time). */
export async function cli(args: string[], home: string, hub: string, opts: RunOptions & { wrap?: string[] } = {}): Promise<CliRun> {
  // The bin itself, as a user's `modelhub` runs: its #! line carries the flags it runs with. (The
  // node it finds first on PATH is this one.) Windows has no #!: there, node runs the file.
  const asBin = process.platform !== 'win32';
  const full = [...(asBin ? [] : [CLI]), ...args, '--home', home, '--hub', hub, '--json'];
  const wrap = opts.wrap ?? [];
  const first = asBin ? CLI : process.execPath;
  const [cmd, ...pre] = [...wrap, first];
  const env = { PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env['PATH'] ?? ''}`, ...opts.env };
  const r = await runTimed(cmd ?? first, [...pre, ...full], { timeoutMs: 600_000, ...opts, env });
  const lines = parseJsonLines(r.stdout);
  return { ...r, lines, result: lines.find((l) => l.type === 'result') };
}

export async function cliOk(args: string[], home: string, hub: string): Promise<CliRun> {
  const r = await cli(args, home, hub);
  if (r.code !== 0 || r.result?.ok !== true) {
    throw new Error(`modelhub ${args.join(' ')} failed (exit ${r.code ?? r.signal ?? '?'}): ${JSON.stringify(r.result)}\n${r.stderr.slice(-2000)}`);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// A real hub with real releases

export const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';
export const PLATFORM = platformNameOf(process.platform, process.arch) ?? 'linux-x64';

export interface PublishedService {
  id: string;
  version: string;
  platform: string;
  /** Absolute URL of the package on the hub. */
  url: string;
  /** The package's path inside the hub's storage dir (what nginx serves). */
  storageRel: string;
  /** The package on disk. */
  file: string;
  size: number;
  sha256: string;
}

export class BenchHub {
  private constructor(
    readonly work: string,
    readonly hub: Hub,
    readonly pubKey: string,
    private readonly secretKey: string,
  ) {}

  static async start(): Promise<BenchHub> {
    const work = await tempDir('hub');
    const keys = await writeKeyPair(path.join(work, 'keys', 'publisher'));
    const hub = await createHub({
      storage: path.join(work, 'storage'),
      host: '127.0.0.1',
      port: 0,
      publisherKeys: [await readPublicKeyFile(keys.publicKeyPath)],
      adminToken: ADMIN_TOKEN,
    });
    onCleanup('close hub', () => hub.close());
    return new BenchHub(work, hub, keys.publicKeyPath, keys.secretKeyPath);
  }

  get url(): string {
    return this.hub.url;
  }

  get storageRoot(): string {
    return this.hub.layout.root;
  }

  /** demo source → pack → sign → publish, as an admin does it; the build dirs are removed after. */
  async publishService(o: DemoServiceOptions): Promise<PublishedService> {
    const id = o.id ?? 'demo-echo';
    const tag = `${id}-${o.version}-${Math.random().toString(36).slice(2, 8)}`;
    const src = path.join(this.work, 'build', tag, 'src');
    const out = path.join(this.work, 'build', tag, 'out');
    try {
      await writeDemoService(src, o);
      await pack(src, out, { platform: PLATFORM });
      const manifestPath = path.join(out, 'manifest.json');
      const sk = await readSecretKeyFile(this.secretKey);
      await writeFile(manifestPath + '.minisig', await signFile(manifestPath, sk));
      const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
      if (manifest.kind !== 'service') throw new Error('expected a service manifest');
      await publishDir(out, { hub: this.url, token: ADMIN_TOKEN });
      const storageRel = path.posix.join('services', id, o.version, PLATFORM, 'service.zip');
      const file = path.join(this.hub.layout.serviceDir(id, o.version, PLATFORM), 'service.zip');
      const size = (await stat(file)).size;
      if (size !== manifest.archive.size) throw new Error(`published ${file}: ${size} bytes, manifest says ${manifest.archive.size}`);
      return {
        id,
        version: o.version,
        platform: PLATFORM,
        url: `${this.url}/storage/services/${encodeURIComponent(id)}/${encodeURIComponent(o.version)}/${PLATFORM}/service.zip`,
        storageRel,
        file,
        size,
        sha256: manifest.archive.sha256,
      };
    } finally {
      await rm(path.join(this.work, 'build', tag), { recursive: true, force: true });
    }
  }
}

/** Shared between the benchmarks of one run: one hub, each package published once. */
export class Fixtures {
  private hubP: Promise<BenchHub> | null = null;
  private readonly packages = new Map<string, Promise<PublishedService>>();

  hub(): Promise<BenchHub> {
    this.hubP ??= BenchHub.start();
    return this.hubP;
  }

  /** A service package of about `mb` MiB of random (stored) model weights. */
  sizedPackage(mb: number): Promise<PublishedService> {
    const key = `sized-${mb}`;
    let p = this.packages.get(key);
    if (p === undefined) {
      p = (async () => {
        const hub = await this.hub();
        const t0 = performance.now();
        log(`  building and publishing a ${mb} MiB package (random model weights, stored) …`);
        const pkg = await hub.publishService({ id: `bench-${mb}mb`, version: '1.0.0', modelBytes: mb * MB });
        log(`  published ${pkg.id}@${pkg.version}: ${fmtMiB(pkg.size)} in ${fmtMs(performance.now() - t0)}`);
        return pkg;
      })();
      this.packages.set(key, p);
    }
    return p;
  }
}
