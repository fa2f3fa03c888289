// `modelhub ui`: the service-management page on 127.0.0.1 (SPEC §8, §9). Every request passes
// the guard (guard.ts) first: our Host only, no foreign Origin, the per-launch token on /api/*.
//
//   GET  /                        the page (it carries the token)
//   GET  /assets/…                its script, stylesheet and the shared client (src/client)
//   POST /api/call/{method}       any API call of src/client/types.ts, body { args: [...] }
//   GET  /api/state               what the page shows (= the `state` call)
//   GET  /api/events              server-sent progress and job-state events
//   GET  /api/jobs/{id}/events    a job's timeline
//   POST /api/services/{id}/install  start an install, answer 202 at once
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { z } from 'zod';
import { callEngine } from '../api/calls.js';
import { TOKEN_HEADER } from '../client/http.js';
import type { Engine } from '../engine/engine.js';
import { ModelhubError, toModelhubError, type ErrorCode } from '../errors.js';
import { findScript } from '../platform/node-launch.js';
import { idSchema, versionSchema } from '../schemas/common.js';
import { checkRequest, SECURITY_HEADERS } from './guard.js';
import { PAGE_CSS, PAGE_SCRIPT, pageHtml } from './page.js';

export interface UiServer {
  app: FastifyInstance;
  url: string;
  /** The per-launch token every /api/* request needs (header x-modelhub-token). */
  token: string;
  close(): Promise<void>;
}

const installBody = z.strictObject({ version: versionSchema.optional(), allow_downgrade: z.boolean().optional() }).optional();
const callBody = z.strictObject({ args: z.array(z.unknown()).max(8) });

/** The compiled shared client, handed to the browser as is (it imports only ./types.js). */
function clientAssets(): Map<string, string> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const assets = new Map<string, string>();
  for (const name of ['http.js', 'types.js']) {
    const file = findScript([path.join(here, '..', 'client', name), path.resolve(here, '..', '..', 'dist', 'src', 'client', name)]);
    if (file === null) throw new ModelhubError('INTERNAL', `the page's client script ${name} is not built; run npm run build`);
    assets.set(`/assets/client/${name}`, readFileSync(file, 'utf8'));
  }
  return assets;
}

function refuse(reply: FastifyReply, status: number, code: ErrorCode, message: string, details: Record<string, unknown> = {}): FastifyReply {
  return reply.code(status).header('cache-control', 'no-store').send({ success: false, error: code, message, details, timestamp: new Date().toISOString() });
}

export async function startUiServer(o: { engine: Engine; port?: number; token?: string; warn?: (m: string) => void }): Promise<UiServer> {
  const { engine } = o;
  const token = o.token ?? randomBytes(32).toString('base64url');
  const scripts = clientAssets();
  // Open event streams must not keep close() waiting.
  const app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 64 * 1024 });
  const pending = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    pending.add(p);
    void p.finally(() => pending.delete(p)).catch(() => undefined);
    return p;
  };
  let port = 0;

  app.addHook('onRequest', async (req, reply) => {
    reply.headers(SECURITY_HEADERS);
    const tokenHeader = req.headers[TOKEN_HEADER];
    const decision = checkRequest(
      { host: req.headers.host, origin: req.headers.origin, token: typeof tokenHeader === 'string' ? tokenHeader : undefined, path: req.url },
      { port, token },
    );
    if (!decision.ok) return refuse(reply, decision.status, 'UNAUTHORIZED', decision.message);
  });
  app.setErrorHandler((err, _req, reply) => {
    const e = err as { statusCode?: number; message?: string };
    const status = typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500;
    if (status === 500) o.warn?.(`page server: ${toModelhubError(err).message}`);
    return refuse(reply, status, status === 500 ? 'INTERNAL' : 'INVALID_REQUEST', status === 500 ? 'internal error' : (e.message ?? 'bad request'));
  });
  app.setNotFoundHandler((req, reply) => refuse(reply, 404, 'NOT_FOUND', `no route for ${req.method} ${req.url.split('?')[0] ?? ''}`));

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(pageHtml(token)));
  // Browsers ask for it on every page; no icon is better than a 404 in the console.
  app.get('/favicon.ico', async (_req, reply) => reply.code(204).send());
  app.get('/assets/page.js', async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(PAGE_SCRIPT));
  app.get('/assets/page.css', async (_req, reply) => reply.type('text/css; charset=utf-8').send(PAGE_CSS));
  app.get<{ Params: { name: string } }>('/assets/client/:name', async (req, reply) => {
    const text = scripts.get(`/assets/client/${req.params.name}`);
    if (text === undefined) return refuse(reply, 404, 'NOT_FOUND', 'no such asset');
    return reply.type('text/javascript; charset=utf-8').send(text);
  });

  app.post<{ Params: { method: string }; Body: unknown }>('/api/call/:method', async (req, reply) => {
    const body = callBody.safeParse(req.body);
    if (!body.success) return refuse(reply, 400, 'INVALID_REQUEST', 'the body must be { "args": [...] }');
    const result = await track(callEngine(engine, req.params.method, body.data.args));
    return reply.header('cache-control', 'no-store').send(result);
  });

  app.get('/api/state', async (_req, reply) => {
    const r = await callEngine(engine, 'state', []);
    if (!r.ok) return refuse(reply, 500, 'INTERNAL', r.error.message);
    return reply.header('cache-control', 'no-store').send(r.value);
  });

  app.get<{ Params: { id: string } }>('/api/jobs/:id/events', async (req, reply) => {
    const r = await callEngine(engine, 'jobEvents', [req.params.id]);
    if (!r.ok) return refuse(reply, r.error.code === 'NOT_FOUND' ? 404 : 400, r.error.code === 'NOT_FOUND' ? 'NOT_FOUND' : 'INVALID_REQUEST', r.error.message);
    return reply.header('cache-control', 'no-store').send(r.value);
  });

  app.post<{ Params: { id: string }; Body: unknown }>('/api/services/:id/install', async (req, reply) => {
    const id = idSchema.safeParse(req.params.id);
    const body = installBody.safeParse(req.body ?? undefined);
    if (!id.success || !body.success) return refuse(reply, 400, 'INVALID_REQUEST', 'bad service id or body');
    void track(engine.install({ id: id.data, version: body.data?.version ?? null, allowDowngrade: body.data?.allow_downgrade ?? false, start: true })).catch((err: unknown) =>
      o.warn?.(`install ${id.data}: ${toModelhubError(err).message}`),
    );
    return reply.code(202).send({ accepted: true, id: id.data });
  });

  // Live progress and job states of the jobs this process runs, pushed as they happen.
  app.get('/api/events', (req, reply) => {
    reply.raw.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    reply.raw.write(': connected\n\n');
    const progress = engine.progress$.subscribe((e) => reply.raw.write(`event: progress\ndata: ${JSON.stringify(e)}\n\n`));
    const onState = (e: { jobId: string; state: string; target: string }): void => {
      reply.raw.write(`event: job\ndata: ${JSON.stringify(e)}\n\n`);
    };
    engine.hooks.on('jobStateChanged', onState);
    req.raw.on('close', () => {
      progress.unsubscribe();
      engine.hooks.off('jobStateChanged', onState);
    });
  });

  // Loopback only: nothing outside this machine can connect at all.
  await app.listen({ host: '127.0.0.1', port: o.port ?? 0 });
  const address = app.server.address();
  port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    token,
    async close() {
      await app.close();
      await Promise.allSettled([...pending]);
    },
  };
}
