// Helpers for the runtime tests: a fresh dist/ build of the files the supervisor and a child
// "CLI" process run as plain JavaScript, service directories, and cleanup of started services.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDemoService, type DemoBehavior } from '../../src/demo/fixtures.js';
import { stopService } from '../../src/runtime/manager.js';
import { serviceJsonSchema, type ServiceJson } from '../../src/schemas/service.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIST_MANAGER = path.join(REPO, 'dist', 'src', 'runtime', 'manager.js');

/** Sources the compiled manager and supervisor are built from. */
const SOURCE_DIRS = ['src/runtime', 'src/platform', 'src/schemas', 'src/demo'];
const SOURCE_FILES = ['src/errors.ts'];

function staleSources(): string[] {
  const files = [...SOURCE_FILES];
  for (const d of SOURCE_DIRS) {
    for (const f of readdirSync(path.join(REPO, d))) if (f.endsWith('.ts')) files.push(`${d}/${f}`);
  }
  return files.filter((rel) => {
    const js = path.join(REPO, 'dist', rel.replace(/\.ts$/, '.js'));
    return !existsSync(js) || statSync(js).mtimeMs < statSync(path.join(REPO, rel)).mtimeMs;
  });
}

/**
 * `npm test` builds before vitest runs; a bare `npx vitest run test/runtime` after editing may
 * not have. Rebuild with tsc when a compiled file is missing or older than its source (type
 * errors elsewhere in the project do not stop tsc from emitting).
 */
export function ensureBuilt(): void {
  if (staleSources().length === 0) return;
  try {
    execFileSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(REPO, 'tsconfig.json')], {
      cwd: REPO,
      stdio: 'pipe',
    });
  } catch {
    // emitted anyway; checked below
  }
  const still = staleSources();
  if (still.length > 0) throw new Error(`dist/ is still stale after tsc: ${still.join(', ')}`);
}

export async function readService(dir: string): Promise<ServiceJson> {
  return serviceJsonSchema.parse(JSON.parse(await readFile(path.join(dir, 'service.json'), 'utf8')));
}

/** The demo service (src/demo/fixtures.ts) in `<root>/<id>/<version>`, with service.json changes. */
export async function demoService(
  root: string,
  o: { behavior?: DemoBehavior; version?: string; id?: string; patch?: Record<string, unknown> } = {},
): Promise<{ dir: string; service: ServiceJson }> {
  const version = o.version ?? '1.0.0';
  const id = o.id ?? 'demo-echo';
  const dir = path.join(root, id, version);
  await writeDemoService(dir, { id, version, behavior: o.behavior ?? 'healthy', extra: o.patch });
  return { dir, service: await readService(dir) };
}

/**
 * A Node service of our own: `app/main.mjs` with the given source, run as `node app/main.mjs`
 * on every platform; `patch` is merged into service.json.
 */
export async function nodeService(
  root: string,
  id: string,
  source: string,
  patch: Record<string, unknown> = {},
  platformEnv: Record<string, string> = {},
): Promise<{ dir: string; service: ServiceJson }> {
  const dir = path.join(root, id, '1.0.0');
  await mkdir(path.join(dir, 'app'), { recursive: true });
  await mkdir(path.join(dir, 'models'), { recursive: true });
  const exec = { type: 'argv', program: 'node', args: ['app/main.mjs'] };
  const json = {
    service_id: id,
    version: '1.0.0',
    platforms: { 'linux-x64': { exec, env: platformEnv }, 'darwin-arm64': { exec, env: platformEnv }, 'darwin-x64': { exec, env: platformEnv }, 'windows-x64': { exec, env: platformEnv } },
    health_check: { type: 'http', endpoint: '/health', startup_grace_ms: 0, interval_ms: 100, timeout_ms: 10_000 },
    ...patch,
  };
  await writeFile(path.join(dir, 'service.json'), JSON.stringify(json, null, 2));
  await writeFile(path.join(dir, 'app', 'main.mjs'), source);
  return { dir, service: await readService(dir) };
}

/** Pids of started supervisors, stopped after the tests whatever happened. */
export const startedPids = new Set<number>();

export async function stopAll(): Promise<void> {
  for (const pid of startedPids) await stopService(pid, { graceMs: 500 }).catch(() => undefined);
  startedPids.clear();
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}
