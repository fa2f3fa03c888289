// `modelhub ui`: the service-management page on 127.0.0.1 (SPEC §8), and the JSON it is made of
// for an Electron renderer: GET /api/state, GET /api/events (server-sent progress),
// GET /api/jobs/{id}/events (a job's timeline), POST /api/services/{id}/install.
import Fastify, { type FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Engine } from '../engine/engine.js';
import type { HubClient } from '../engine/hub-client.js';
import { toExportLine } from '../engine/export-format.js';
import { toModelhubError } from '../errors.js';
import { idSchema, versionSchema } from '../schemas/common.js';
import { PAGE_HTML } from './page.js';
import { uiState } from './state.js';

export interface UiServer {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

const installBody = z.object({ version: versionSchema.optional(), allow_downgrade: z.boolean().optional() }).optional();

export async function startUiServer(o: { engine: Engine; hub: HubClient | null; port?: number; warn?: (m: string) => void }): Promise<UiServer> {
  const { engine, hub } = o;
  // Open event streams must not keep close() waiting.
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const pending = new Set<Promise<unknown>>();

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(PAGE_HTML));

  app.get('/api/state', async (_req, reply) => {
    // A hub or ranking that does not answer must not hold the page: 5 s at most.
    const state = await uiState(engine, hub, AbortSignal.timeout(5000));
    return reply.header('cache-control', 'no-store').send(state);
  });

  app.get<{ Params: { id: string } }>('/api/jobs/:id/events', async (req, reply) => {
    const job = engine.jobs.job(req.params.id);
    if (job === undefined) return reply.code(404).send({ success: false, error: 'NOT_FOUND', message: `no job ${req.params.id}`, details: {}, timestamp: new Date().toISOString() });
    return reply.send(engine.jobs.events(job.id).map((e) => toExportLine(e, job.kind)));
  });

  app.post<{ Params: { id: string }; Body: unknown }>('/api/services/:id/install', async (req, reply) => {
    const id = idSchema.safeParse(req.params.id);
    const body = installBody.safeParse(req.body ?? undefined);
    if (!id.success || !body.success) {
      return reply.code(400).send({ success: false, error: 'INVALID_REQUEST', message: 'bad service id or body', details: {}, timestamp: new Date().toISOString() });
    }
    const run = engine
      .install({ id: id.data, version: body.data?.version ?? null, allowDowngrade: body.data?.allow_downgrade ?? false, start: true })
      .catch((err: unknown) => o.warn?.(`install ${id.data}: ${toModelhubError(err).message}`));
    pending.add(run);
    void run.finally(() => pending.delete(run));
    return reply.code(202).send({ accepted: true, id: id.data });
  });

  // Live progress of the jobs this process runs, pushed as they happen.
  app.get('/api/events', (req, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
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

  await app.listen({ host: '127.0.0.1', port: o.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await app.close();
      await Promise.allSettled([...pending]);
    },
  };
}
