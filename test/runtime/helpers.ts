// Helpers for the runtime tests: service directories, cleanup of started services, and waiting
// for conditions. The compiled supervisor and manager these tests run from dist/ are checked for
// staleness once per run by test/global-setup.ts.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDemoService, type DemoBehavior } from '../../src/demo/fixtures.js';
import { stopService } from '../../src/runtime/manager.js';
import { serviceJsonSchema, type ServiceJson } from '../../src/schemas/service.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIST_MANAGER = path.join(REPO, 'dist', 'src', 'runtime', 'manager.js');

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

/**
 * Polls `cond` until it holds; false if it still does not after `ms`. The default ceiling is
 * generous on purpose: it only bounds how long a failing test hangs, and a busy machine must
 * not turn a slow "yes" into a "no".
 */
export async function until(cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(20);
  }
  return cond();
}
