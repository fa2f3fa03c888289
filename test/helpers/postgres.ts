// A throwaway PostgreSQL cluster for a test file: `initdb` in a temp folder, a free port on
// 127.0.0.1, the unix socket in the temp folder too, started with `pg_ctl start -w` (through
// `runuser -u postgres --` when the tests run as root, the folder chowned to it first), one new
// database per newDatabase() call, stopped and removed after the file's tests. Started on the
// first newDatabase(), so SQLite-only runs of a file pay nothing.
//
// Import this module BEFORE ../helpers/hub.js in a test file: vitest runs afterAll hooks in
// reverse order of registration, so the cluster then stops after the file's hubs have closed.
//
// Without PostgreSQL installed (Debian: apt-get install postgresql, which .ci/run does),
// `postgres.available` is false and the reason is printed once: test files skip their
// PostgreSQL variants with describe.skipIf(!postgres.available).
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll } from 'vitest';
import { freePort } from './free-port.js';

interface Found {
  bin: string;
  /** Run as this OS user (root cannot run PostgreSQL). */
  asUser?: { name: string; uid: number; gid: number };
}

function run(file: string, args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

function versionOf(dir: string): number {
  return Number.parseFloat(dir) || 0;
}

/** Debian's /usr/lib/postgresql/<version>/bin (newest version first), else the PATH. */
function findBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).sort((a, b) => versionOf(b) - versionOf(a));
    for (const v of versions) {
      const bin = path.join(root, v, 'bin');
      if (existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'pg_ctl'))) return bin;
    }
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir !== '' && existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

/** The postgres user's uid and gid from /etc/passwd, when there is one. */
function postgresUser(): { name: string; uid: number; gid: number } | undefined {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  const line = passwd.split('\n').find((l) => l.startsWith('postgres:'));
  if (line === undefined) return undefined;
  const [, , uid, gid] = line.split(':');
  return { name: 'postgres', uid: Number(uid), gid: Number(gid) };
}

function detect(): { found: Found } | { reason: string } {
  const bin = findBin();
  if (bin === undefined) return { reason: 'PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH; Debian: apt-get install postgresql)' };
  if (process.getuid?.() === 0) {
    const user = postgresUser();
    if (user === undefined) return { reason: 'running as root, and there is no postgres user to run the cluster as (runuser -u postgres)' };
    if (!existsSync('/usr/sbin/runuser') && !existsSync('/sbin/runuser') && !existsSync('/usr/bin/runuser')) return { reason: 'running as root, and runuser is missing' };
    return { found: { bin, asUser: user } };
  }
  return { found: { bin } };
}

const detected = detect();

class Cluster {
  private dir: string | undefined;
  private port = 0;
  private started: Promise<void> | undefined;
  private count = 0;

  constructor(private readonly found: Found) {}

  private exec(tool: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const file = path.join(this.found.bin, tool);
    return this.found.asUser === undefined ? run(file, args) : run('runuser', ['-u', this.found.asUser.name, '--', file, ...args]);
  }

  private async start(): Promise<void> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'modelhub-pg-'));
    this.dir = dir;
    if (this.found.asUser !== undefined) await chown(dir, this.found.asUser.uid, this.found.asUser.gid);
    const data = path.join(dir, 'data');
    const init = await this.exec('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C']);
    if (init.code !== 0) throw new Error(`initdb failed (${init.code}): ${init.stderr || init.stdout}`);
    const log = path.join(dir, 'server.log');
    // The free port may be taken between the check and the start (test files run in parallel):
    // then try another.
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      const options = [`-p ${this.port}`, `-k ${dir}`, '-c listen_addresses=127.0.0.1', '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off', '-c max_connections=200'].join(' ');
      const start = await this.exec('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '120', '-o', options, 'start']);
      if (start.code === 0) return;
      const text = await readFile(log, 'utf8').catch(() => '');
      if (attempt >= 3 || !/could not (bind|create listen)/i.test(text)) {
        throw new Error(`pg_ctl start failed (${start.code}): ${start.stderr || start.stdout}\n${text}`);
      }
    }
  }

  /** The cluster's superuser connection to a database. */
  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** A new, empty database in the file's cluster (started on first use); its URL. */
  async newDatabase(): Promise<string> {
    this.started ??= this.start();
    await this.started;
    const name = `modelhub_${process.pid}_${++this.count}`;
    const client = new pg.Client({ connectionString: this.url('postgres') });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  async stop(): Promise<void> {
    if (this.started === undefined || this.dir === undefined) return;
    await this.started.catch(() => undefined);
    const data = path.join(this.dir, 'data');
    if (existsSync(path.join(data, 'postmaster.pid'))) await this.exec('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    await rm(this.dir, { recursive: true, force: true });
  }
}

export interface Postgres {
  /** False when PostgreSQL is not installed here; `reason` says why. */
  readonly available: boolean;
  readonly reason: string;
  /** A new, empty database in this file's throwaway cluster; its postgres:// URL. */
  newDatabase(): Promise<string>;
}

const cluster = 'found' in detected ? new Cluster(detected.found) : undefined;

afterAll(async () => {
  await cluster?.stop();
});

if (!('found' in detected)) console.warn(`PostgreSQL variants skipped: ${detected.reason}`);

export const postgres: Postgres = {
  available: cluster !== undefined,
  reason: 'reason' in detected ? detected.reason : '',
  newDatabase: () => {
    if (cluster === undefined) throw new Error(`PostgreSQL is not available: ${'reason' in detected ? detected.reason : ''}`);
    return cluster.newDatabase();
  },
};
