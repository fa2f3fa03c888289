// Source directories for demo and test releases: a tiny Node.js HTTP service with /health and
// a small model file, and a multi-file model. `npm start` publishes these; tests build their
// releases from them too, so both exercise the same real packages.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PLATFORMS } from '../schemas/common.js';

/** How the demo service behaves once started; tests use the failing ones to force rollbacks. */
export type DemoBehavior = 'healthy' | 'unhealthy' | 'never-binds' | 'exits';

const SERVER_SOURCE = `// Demo service: answers /health once it listens on $PORT.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const behavior = process.env.DEMO_BEHAVIOR ?? readFileSync(new URL('./behavior.txt', import.meta.url), 'utf8').trim();
if (behavior === 'exits') {
  console.error('demo service: exiting at once, as configured');
  process.exit(3);
}
if (behavior === 'never-binds') {
  console.log('demo service: running but never listening');
  setInterval(() => {}, 1 << 30);
} else {
  const port = Number(process.env.PORT);
  const model = readFileSync(path.join(process.env.MODELS_DIR ?? 'models', 'tiny.bin'));
  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      const ok = behavior !== 'unhealthy';
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: ok ? 'ok' : 'unhealthy', version: process.env.SERVICE_VERSION }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ service: process.env.SERVICE_ID, version: process.env.SERVICE_VERSION, model_bytes: model.length }));
  });
  server.listen(port, '127.0.0.1', () => console.log('demo service listening on ' + port));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
`;

/** The port `npm start`'s demo service prefers, so that it answers at a predictable address. */
export const DEMO_DEFAULT_PORT = 18000;

/**
 * The demo service's `default_port` when the caller does not choose one: DEMO_DEFAULT_PORT, but
 * none under vitest. Test files run in parallel worker processes that all install demo
 * services; with one shared preference two of them can both find 18000 free and then race to
 * bind it. Without a preference each start gets a port the OS picks, and no two contend.
 */
export function demoDefaultPort(env: NodeJS.ProcessEnv = process.env): number | undefined {
  return env.VITEST !== undefined || env.VITEST_POOL_ID !== undefined ? undefined : DEMO_DEFAULT_PORT;
}

export interface DemoServiceOptions {
  id?: string;
  version: string;
  behavior?: DemoBehavior;
  /** service.json's default_port; null for none. Default: demoDefaultPort(). */
  defaultPort?: number | null;
  /** Extra bytes of model data, to make bigger packages. */
  modelBytes?: number;
  healthTimeoutMs?: number;
  extra?: Record<string, unknown>;
}

/** Deterministic pseudo-random bytes, so the same options always give the same package. */
export function pseudoRandomBytes(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export async function writeDemoService(dir: string, o: DemoServiceOptions): Promise<string> {
  const id = o.id ?? 'demo-echo';
  await mkdir(path.join(dir, 'app'), { recursive: true });
  await mkdir(path.join(dir, 'models'), { recursive: true });
  const exec = { type: 'argv', program: 'node', args: ['app/server.mjs'] };
  const defaultPort = o.defaultPort === undefined ? demoDefaultPort() : (o.defaultPort ?? undefined);
  const service = {
    service_id: id,
    service_name: 'Demo echo service',
    version: o.version,
    description: 'A tiny Node.js HTTP service with /health and a small model file',
    models: [{ model_id: 'tiny', model_type: 'demo', version: '1.0.0', path: 'models/tiny.bin' }],
    platforms: Object.fromEntries(PLATFORMS.map((p) => [p, { exec, env: { DEMO_GREETING: 'hello' } }])),
    ...(defaultPort === undefined ? {} : { default_port: defaultPort }),
    health_check: { type: 'http', endpoint: '/health', startup_grace_ms: 0, interval_ms: 100, timeout_ms: o.healthTimeoutMs ?? 10_000 },
    dependencies: { node: '>=20' },
    created_at: '2026-01-01T00:00:00Z',
    ...o.extra,
  };
  await writeFile(path.join(dir, 'service.json'), JSON.stringify(service, null, 2) + '\n');
  await writeFile(path.join(dir, 'app', 'server.mjs'), SERVER_SOURCE);
  await writeFile(path.join(dir, 'app', 'behavior.txt'), (o.behavior ?? 'healthy') + '\n');
  await writeFile(path.join(dir, 'models', 'tiny.bin'), pseudoRandomBytes(o.modelBytes ?? 4096, 7));
  return dir;
}

export async function writeDemoModel(dir: string, o: { id?: string; version: string; files?: Record<string, number> }): Promise<string> {
  const id = o.id ?? 'demo-tiny-nmt';
  await mkdir(dir, { recursive: true });
  const model = { model_id: id, version: o.version, name: 'Tiny demo NMT', task: 'nmt', languages: ['en', 'zh'], created_at: '2026-01-01T00:00:00Z' };
  await writeFile(path.join(dir, 'model.json'), JSON.stringify(model, null, 2) + '\n');
  const files = o.files ?? { 'model.bin': 65536, 'tokenizer/vocab.txt': 2048, 'config.json': 0 };
  let seed = 11;
  for (const [rel, size] of Object.entries(files)) {
    const file = path.join(dir, ...rel.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, rel.endsWith('.json') ? JSON.stringify({ id, version: o.version, rel }) + '\n' : pseudoRandomBytes(size, seed++));
  }
  return dir;
}
