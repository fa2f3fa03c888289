// A real nginx (Debian's /usr/sbin/nginx) on a free port on 127.0.0.1, with a config written to
// a temp folder (pid, error log and temp paths there too, `daemon off`, and `user root;` when
// run as root, since nginx refuses to drop to `nobody` without it). Free of vitest, so that
// the bench starts the same nginx as the tests (test/helpers/nginx.ts adds the test wiring).
//
// What it serves is chosen by the options, any combination:
// - `root`: a folder served statically below `mount` (default `/`): a mirror of a storage folder;
// - `proxyTo`: every other request is proxied to this URL (a hub);
// - `accelPrefix` + `storage`: an `internal` location at accelPrefix aliasing the storage
//   folder, for the hub's `X-Accel-Redirect` answers;
// - `config`: http-level configuration (server blocks, upstreams) instead, e.g. the shipped
//   deploy/nginx/*.conf, with `{{PORT}}` replaced by the port.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.js';

function findNginx(): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin', ...(process.env.PATH ?? '').split(path.delimiter)]) {
    if (dir !== '' && existsSync(path.join(dir, 'nginx'))) return path.join(dir, 'nginx');
  }
  return undefined;
}

const bin = findNginx();

/** The nginx binary, or why there is none. */
export const nginxBinary: { path: string } | { reason: string } =
  bin === undefined ? { reason: 'nginx is not installed (no /usr/sbin/nginx or nginx on PATH; Debian: apt-get install nginx)' } : { path: bin };

export interface NginxOptions {
  /** Serve this folder statically below `mount`. */
  root?: string;
  /** URL prefix for `root`, starting and ending with `/`; default `/`. */
  mount?: string;
  /** Proxy every request no other location takes to this base URL (`http://127.0.0.1:PORT`). */
  proxyTo?: string;
  /** An `internal` location at this prefix (e.g. `/_accel/`) aliasing `storage`. */
  accelPrefix?: string;
  storage?: string;
  /** http-level configuration (`server { … }`, `upstream { … }`) instead of the generated one; `{{PORT}}` is replaced. */
  config?: string;
  /** Another nginx binary than the one found (the bench's BENCH_NGINX). */
  binary?: string;
}

/** The repository's deploy/nginx/: above test/helpers/ in the sources, above dist/test/helpers/ for the bench. */
function deployDir(): string {
  for (let dir = import.meta.dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'deploy', 'nginx');
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`no deploy/nginx/ above ${import.meta.dirname}`);
  }
}

/**
 * A shipped config from deploy/nginx/ with its CHANGE places set: listen on the test's port, the
 * hub's address, the storage folder. Throws when one of them is no longer in the file, so the
 * tests keep running the file as shipped.
 */
export async function deployConfig(name: 'modelhub.conf' | 'mirror.conf', set: { hub?: string; storage: string }): Promise<string> {
  let text = await readFile(path.join(deployDir(), name), 'utf8');
  const replacements: [string, string][] = [['listen 80;', 'listen 127.0.0.1:{{PORT}};']];
  if (name === 'modelhub.conf') {
    if (set.hub === undefined) throw new Error('modelhub.conf needs the hub address');
    replacements.push(['server 127.0.0.1:8780;', `server ${new URL(set.hub).host};`], ['/var/lib/modelhub/storage/', withSlash(set.storage)]);
  } else {
    replacements.push(['/srv/modelhub-mirror/', withSlash(set.storage)]);
  }
  for (const [from, to] of replacements) {
    if (!text.includes(from)) throw new Error(`deploy/nginx/${name} no longer contains ${JSON.stringify(from)}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

export interface RunningNginx {
  url: string;
  port: number;
  /** The temp folder holding nginx.conf, error.log and the pid file. */
  dir: string;
  /** The error log so far (for a failing test's message). */
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

/** A quoted nginx string: paths from temp folders may hold characters nginx would split on. */
function q(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function withSlash(p: string): string {
  return p.endsWith('/') ? p : `${p}/`;
}

function serverBlock(options: NginxOptions): string {
  const lines: string[] = ['server {', '  listen 127.0.0.1:{{PORT}};', '  server_name localhost;'];
  if (options.accelPrefix !== undefined) {
    if (options.storage === undefined) throw new Error('startNginx: accelPrefix needs storage');
    lines.push(`  location ${withSlash(options.accelPrefix)} {`, '    internal;', `    alias ${q(withSlash(options.storage))};`, '  }');
  }
  if (options.root !== undefined) {
    const mount = withSlash(options.mount ?? '/');
    lines.push(`  location ${mount} {`, `    alias ${q(withSlash(options.root))};`, '  }');
  }
  if (options.proxyTo !== undefined) {
    lines.push(
      '  location / {',
      `    proxy_pass ${options.proxyTo.replace(/\/+$/, '')};`,
      '    proxy_http_version 1.1;',
      '    proxy_set_header Host $http_host;',
      '    proxy_buffering off;',
      '  }',
    );
  }
  lines.push('}');
  return lines.join('\n');
}

function mainConfig(dir: string, server: string): string {
  const asRoot = process.getuid?.() === 0;
  return [
    asRoot ? 'user root;' : '',
    'daemon off;',
    'worker_processes 2;',
    `pid ${q(path.join(dir, 'nginx.pid'))};`,
    `error_log ${q(path.join(dir, 'error.log'))} warn;`,
    'events { worker_connections 1024; }',
    'http {',
    '  include /etc/nginx/mime.types;',
    '  default_type application/octet-stream;',
    '  sendfile on;',
    '  tcp_nopush on;',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${q(path.join(dir, `${t}_temp`))};`),
    server,
    '}',
    '',
  ].join('\n');
}

/**
 * Until nginx is up: its pid file, which it writes only once every listening socket is bound
 * (a port taken meanwhile by another process makes it exit instead), and the port answering.
 */
async function waitUntilUp(port: number, pidFile: string, child: ChildProcess, deadline: number): Promise<void> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('nginx exited at start');
    if (existsSync(pidFile)) {
      const open = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
      if (open) return;
    }
    if (Date.now() > deadline) throw new Error('nginx did not listen within 10 s');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Stops the master and its workers: SIGTERM (fast shutdown), then SIGKILL to the whole group. */
async function terminate(child: ChildProcess, exited: Promise<void>): Promise<void> {
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    // The group is nginx's own (spawned detached): a killed master would leave its workers.
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }, 5000);
  await exited;
  clearTimeout(timer);
}

/** Starts nginx as the options say; throws (with its error log) when it does not come up. */
export async function startNginxProcess(options: NginxOptions): Promise<RunningNginx> {
  const binary = options.binary ?? bin;
  if (binary === undefined) throw new Error('reason' in nginxBinary ? nginxBinary.reason : 'no nginx');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelhub-nginx-'));
  const pidFile = path.join(dir, 'nginx.pid');
  // The port may be taken between the check and nginx's bind (test files run in parallel): retry.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const server = (options.config ?? serverBlock(options)).replaceAll('{{PORT}}', String(port));
    const config = path.join(dir, 'nginx.conf');
    await writeFile(config, mainConfig(dir, server));
    const child = spawn(binary, ['-p', dir, '-c', config, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const errorLog = async (): Promise<string> => `${stderr}${await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '')}`;
    try {
      await waitUntilUp(port, pidFile, child, Date.now() + 10_000);
    } catch (err) {
      await terminate(child, exited);
      const log = await errorLog();
      if (attempt < 3 && /Address already in use/.test(log)) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`${(err as Error).message}:\n${log}`);
    }
    let stopped: Promise<void> | undefined;
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      dir,
      errorLog,
      stop: () => {
        stopped ??= terminate(child, exited).then(() => rm(dir, { recursive: true, force: true }));
        return stopped;
      },
    };
  }
}
