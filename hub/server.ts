// The thin layer: routes map requests onto the resolvers in catalog-api / storage-api /
// admin-api, which answer with data; this file writes answers to sockets (a file's bytes through
// file-body.ts's writer).
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import rateLimit from '@fastify/rate-limit';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ModelhubError, isErrorCode, type ErrorCode } from '../src/errors.js';
import type { PublicKey } from '../src/sign/minisign-format.js';
import type { Platform } from '../src/schemas/common.js';
import { openCatalog, parseCatalogUrl } from './catalog/open.js';
import type { CatalogStore } from './catalog/store.js';
import { StorageLayout, sweepIncoming } from './storage-layout.js';
import { migrateModelLayout } from './storage-migrate.js';
import { FileBody, writeFileBody } from './file-body.js';
import { lingerOnClose } from './lingering-close.js';
import { envelope, errorResponse, type HubResponse } from './response.js';
import * as catalogApi from './catalog-api.js';
import * as storageApi from './storage-api.js';
import * as adminApi from './admin-api.js';
import { bearerMatches } from './admin/auth.js';
import * as nodeApi from './node-api.js';
import * as metadataApi from './metadata-api.js';
import { HubMetadata } from './metadata/hub-metadata.js';
import { loadOrCreateMetadataKey } from './metadata/metadata-key.js';
import type { SignedDocument } from '../src/metadata/formats.js';
import { packageVersion } from '../src/meta/package.js';
import { parseOrThrow } from '../src/schemas/parse.js';
import { z } from 'zod';
import { hubIndex, openApiDocument } from './openapi/serve.js';

export interface HubOptions {
  storage: string;
  /**
   * The catalog: `postgres://USER@HOST:PORT/DB` for PostgreSQL (hubs sharing one catalog and
   * one storage folder), else SQLite at <storage>/hub.db (also `sqlite:<storage>/hub.db`).
   */
  db?: string;
  host?: string;
  port?: number;
  publisherKeys: readonly PublicKey[];
  /** Bearer token for admin routes; admin is disabled (always 401) without one. */
  adminToken?: string;
  /** Platform for the legacy /storage/services/{id}/{version}.zip without ?platform=. */
  defaultPlatform?: Platform;
  /** Largest accepted package or model file. */
  maxUploadBytes?: number;
  /** Failed admin authentications allowed per client and window before 429. */
  authFailureLimit?: number;
  authFailureWindowMs?: number;
  /**
   * Bearer token of nodes (`--node-token` / $MODELHUB_NODE_TOKEN) for POST /api/model-unavailable;
   * without one that route always answers 401.
   */
  nodeToken?: string;
  /** Node reports accepted per client and window (default 600 a minute), valid or not. */
  nodeReportLimit?: number;
  nodeReportWindowMs?: number;
  logger?: boolean;
  /** The online key that signs the catalog snapshot; default <storage>/metadata.key, created on first start. */
  metadataKeyFile?: string;
  /** How long a signed snapshot is valid (default 86400 s); it is re-signed before half of it passed. */
  metadataTtlSeconds?: number;
  /** A publisher's delegation of the metadata key (certify-hub-key --out), stored at start. */
  metadataDelegation?: SignedDocument;
  /**
   * `--accel-redirect PREFIX`: /storage/… files are answered, after the catalog check, with
   * `X-Accel-Redirect: PREFIX/<path below the storage folder>` and no body, for nginx in front
   * (deploy/nginx/modelhub.conf) to send from an `internal` location aliasing the storage folder.
   */
  accelRedirect?: string;
  /**
   * `--trust-proxy ADDR[,ADDR…]`: proxies (addresses or CIDR ranges, e.g. nginx in front on
   * 127.0.0.1) whose X-Forwarded-For names the client, so that the per-client rate limits count
   * clients, not the proxy. None by default: the header is then ignored, as anyone can send it.
   */
  trustProxy?: readonly string[];
}

/** One trusted proxy: an IPv4 or IPv6 address, optionally with a CIDR prefix length. */
export const trustedProxySchema = z.string().refine((v) => {
  const [address = '', bits, ...rest] = v.split('/');
  const family = net.isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (family === 4 ? 32 : 128);
}, 'must be an IP address or a CIDR range such as 127.0.0.1 or 10.0.0.0/8');

/** An X-Accel-Redirect prefix: an absolute URI path nginx can route on, without a trailing '/'. */
export const accelPrefixSchema = z
  .string()
  .regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@\/-]*$/, 'must be an absolute URI path such as /_storage (no "?", "#", "%", spaces or "..")')
  .refine((p) => !p.split('/').includes('..'), 'must not contain a ".." segment')
  .transform((p) => p.replace(/\/+$/, ''));

export interface RegisteredRoute {
  method: string;
  url: string;
}

export interface Hub {
  app: FastifyInstance;
  /** Every route as fastify registered it (HEAD twins included): the OpenAPI test's truth. */
  routes: readonly RegisteredRoute[];
  url: string;
  catalog: CatalogStore;
  layout: StorageLayout;
  /** The signed snapshot, the delegation and the key statements this hub serves. */
  metadata: HubMetadata;
  close(): Promise<void>;
}

type Params = Record<string, string>;
type Query = Record<string, string | undefined>;

async function write(reply: FastifyReply, res: HubResponse): Promise<FastifyReply> {
  if (res.body instanceof FileBody) {
    // Past fastify's reply path: a file's bytes go from a few reused buffers to the socket.
    reply.hijack();
    await writeFileBody(reply.raw, res.status, res.headers, res.body);
    return reply;
  }
  reply.code(res.status).headers(res.headers);
  return res.body === null ? reply.send() : reply.send(res.body);
}

/** Maps fastify's and plugins' own errors into the one envelope. */
function codeForStatus(status: number): ErrorCode {
  if (status === 401) return 'UNAUTHORIZED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 413) return 'SIZE_EXCEEDED';
  if (status === 429) return 'RATE_LIMITED';
  if (status >= 400 && status < 500) return 'INVALID_REQUEST';
  return 'INTERNAL';
}

export async function createHub(options: HubOptions): Promise<Hub> {
  const layout = new StorageLayout(options.storage);
  const spec = parseCatalogUrl(options.db, layout.root);
  await mkdir(layout.root, { recursive: true });
  const catalog = await openCatalog(spec);
  try {
    return await startOn(options, layout, catalog);
  } catch (err) {
    await catalog.close();
    throw err;
  }
}

async function startOn(options: HubOptions, layout: StorageLayout, catalog: CatalogStore): Promise<Hub> {
  const accelPrefix = options.accelRedirect === undefined ? undefined : parseOrThrow(accelPrefixSchema, options.accelRedirect, 'INVALID_REQUEST', 'accelRedirect');
  const trustProxy = parseOrThrow(z.array(trustedProxySchema), options.trustProxy ?? [], 'INVALID_REQUEST', 'trustProxy');
  // Temp uploads of dead hub processes only; orphan release folders are an operator's call
  // (`modelhub hub orphans`), so a hub can start while another one sharing the storage folder
  // publishes.
  await sweepIncoming(layout);
  // Model folders an older hub wrote, into the URL layout: each under its release's lock, so
  // never one a publish is writing.
  await migrateModelLayout(layout, catalog, (line) => process.stderr.write(`${line}\n`));

  const app = Fastify({
    logger: options.logger ?? false,
    trustProxy: trustProxy.length === 0 ? false : trustProxy,
    bodyLimit: 1 << 20,
    routerOptions: { maxParamLength: 1024 },
    // A URL fastify cannot even route (a malformed percent-encoding) still gets the one envelope.
    frameworkErrors: (err: Error, _req: FastifyRequest, reply: FastifyReply) => {
      void reply.code(400).send(envelope('INVALID_REQUEST', err.message));
    },
  });
  const routes: RegisteredRoute[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
  const version = packageVersion();
  const metadataKey = await loadOrCreateMetadataKey(options.metadataKeyFile ?? path.join(layout.root, 'metadata.key'), options.metadataKeyFile === undefined);
  const metadata = new HubMetadata({ catalog, secretKey: metadataKey.secretKey, publicKey: metadataKey.publicKey, ttlSeconds: options.metadataTtlSeconds, publisherKeys: options.publisherKeys });
  if (options.metadataDelegation !== undefined) await metadata.setDelegation(options.metadataDelegation);
  const ctx: adminApi.AdminContext = {
    catalog,
    layout,
    // Followed along verified rotations, minus revocations: read at each upload.
    acceptedKeys: () => metadata.acceptedKeys(),
    maxUploadBytes: options.maxUploadBytes ?? 64 * 1024 ** 3,
  };
  const storage: storageApi.StorageContext = { catalog, layout, accelPrefix };

  app.setErrorHandler((err: unknown, req, reply) => {
    // Refused before the body was read to its end (a publish whose signature failed, a package
    // past its signed size): answer, then close, rather than read the rest of it.
    if (!req.raw.complete) {
      void reply.header('Connection', 'close');
      lingerOnClose(req.raw.socket);
    }
    if (err instanceof ModelhubError) return write(reply, errorResponse(err));
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (isErrorCode(e.code)) return write(reply, errorResponse(new ModelhubError(e.code, e.message ?? e.code)));
    const status = typeof e.statusCode === 'number' && e.statusCode >= 400 ? e.statusCode : 500;
    const code = e.code === 'FST_REQ_FILE_TOO_LARGE' ? 'SIZE_EXCEEDED' : codeForStatus(status);
    if (status >= 500) app.log.error(err);
    const message = status >= 500 ? 'internal error' : (e.message ?? code);
    return reply.code(code === 'SIZE_EXCEEDED' ? 413 : status).send(envelope(code, message));
  });
  app.setNotFoundHandler((req, reply) => {
    return reply.code(404).send(envelope('NOT_FOUND', `no route for ${req.method} ${req.url.split('?')[0] ?? ''}`));
  });

  await app.register(multipart, {
    limits: { fileSize: ctx.maxUploadBytes, fieldSize: 1 << 20, fields: 8, files: 100_000, parts: 100_008 },
  });
  await app.register(rateLimit, { global: false });

  const adminGuard = {
    config: {
      rateLimit: {
        max: options.authFailureLimit ?? 10,
        timeWindow: options.authFailureWindowMs ?? 60_000,
        // Only requests without a valid token count: a busy admin is never locked out.
        allowList: (req: FastifyRequest) => bearerMatches(req.headers.authorization, options.adminToken),
        errorResponseBuilder: (_req: FastifyRequest, context: { after: string }) =>
          new ModelhubError('RATE_LIMITED', `too many failed authentications; retry in ${context.after}`),
      },
    },
    preHandler: async (req: FastifyRequest, reply: FastifyReply) => {
      if (!bearerMatches(req.headers.authorization, options.adminToken)) {
        reply.header('WWW-Authenticate', 'Bearer');
        throw new ModelhubError('UNAUTHORIZED', options.adminToken ? 'a valid admin bearer token is required' : 'admin is disabled: the hub has no MODELHUB_ADMIN_TOKEN');
      }
    },
  };

  const nodeGuard = {
    config: {
      rateLimit: {
        // Every request counts, valid token or not: a node in a retry loop must not flood the
        // catalog, and guessing is limited the same way.
        max: options.nodeReportLimit ?? 600,
        timeWindow: options.nodeReportWindowMs ?? 60_000,
        errorResponseBuilder: (_req: FastifyRequest, context: { after: string }) =>
          new ModelhubError('RATE_LIMITED', `too many node reports; retry in ${context.after}`),
      },
    },
    // After the rate limit (onRequest) and before the body is read: without the token, nothing
    // of the request is parsed.
    preParsing: async (req: FastifyRequest, reply: FastifyReply) => {
      if (!bearerMatches(req.headers.authorization, options.nodeToken)) {
        reply.header('WWW-Authenticate', 'Bearer');
        throw new ModelhubError('UNAUTHORIZED', options.nodeToken ? 'a valid node bearer token is required' : 'node reports are disabled: the hub has no MODELHUB_NODE_TOKEN');
      }
    },
  };

  // ---- public ----
  app.get('/', async (_req, reply) => write(reply, hubIndex(version)));
  app.get('/api/openapi.json', async (_req, reply) => write(reply, openApiDocument(version)));
  app.get('/health', async (_req, reply) => write(reply, { status: 200, headers: {}, body: { status: 'ok' } }));
  app.get('/api/models', async (_req, reply) => write(reply, await catalogApi.listModels(catalog)));
  app.get<{ Params: Params }>('/api/models/:id', async (req, reply) => write(reply, await catalogApi.getModel(catalog, req.params.id ?? '')));
  app.get<{ Params: Params }>('/api/models/:id/:version/manifest', async (req, reply) =>
    write(reply, await storageApi.modelManifest(req, storage, req.params.id ?? '', req.params.version ?? '', 'manifest.json')),
  );
  app.get<{ Params: Params }>('/api/models/:id/:version/manifest.minisig', async (req, reply) =>
    write(reply, await storageApi.modelManifest(req, storage, req.params.id ?? '', req.params.version ?? '', 'manifest.json.minisig')),
  );
  app.get<{ Params: Params }>('/storage/models/:id/:version/*', async (req, reply) =>
    write(reply, await storageApi.modelFile(req, storage, req.params.id ?? '', req.params.version ?? '', req.raw.url ?? '')),
  );
  app.get<{ Querystring: Query }>('/api/services', async (req, reply) => write(reply, await catalogApi.listServices(catalog, req.query.platform)));
  app.get<{ Params: Params }>('/api/services/:id', async (req, reply) => write(reply, await catalogApi.getService(catalog, req.params.id ?? '')));
  app.get<{ Params: Params; Querystring: Query }>('/api/services/:id/:version/checksum', async (req, reply) =>
    write(reply, await catalogApi.checksum(catalog, req.params.id ?? '', req.params.version ?? '', req.query.platform ?? options.defaultPlatform ?? 'linux-x64')),
  );
  app.get<{ Params: Params }>('/api/services/:id/:version/:platform/manifest', async (req, reply) =>
    write(reply, await storageApi.serviceFile(req, storage, req.params, 'manifest.json')),
  );
  app.get<{ Params: Params }>('/api/services/:id/:version/:platform/manifest.minisig', async (req, reply) =>
    write(reply, await storageApi.serviceFile(req, storage, req.params, 'manifest.json.minisig')),
  );
  app.get<{ Params: Params }>('/storage/services/:id/:version/:platform/service.zip', async (req, reply) =>
    write(reply, await storageApi.serviceFile(req, storage, req.params, 'service.zip')),
  );
  app.get<{ Params: Params; Querystring: Query }>('/storage/services/:id/:file', async (req, reply) =>
    write(reply, await storageApi.legacyServiceZip(req, storage, req.params.id ?? '', req.params.file ?? '', req.query.platform ?? options.defaultPlatform ?? 'linux-x64')),
  );
  app.get('/api/keys', async (_req, reply) => write(reply, await adminApi.listKeys(ctx)));
  app.get('/api/keys/statements', async (_req, reply) => write(reply, await metadataApi.keyStatements(metadata)));
  app.get('/api/metadata/key', async (_req, reply) => write(reply, metadataApi.metadataKey(metadata)));
  app.get('/api/metadata/snapshot', async (_req, reply) => write(reply, await metadataApi.snapshot(metadata, 'text')));
  app.get('/api/metadata/snapshot.minisig', async (_req, reply) => write(reply, await metadataApi.snapshot(metadata, 'signature')));
  app.get('/api/metadata/delegation', async (_req, reply) => write(reply, await metadataApi.delegation(metadata, 'text')));
  app.get('/api/metadata/delegation.minisig', async (_req, reply) => write(reply, await metadataApi.delegation(metadata, 'signature')));
  app.get<{ Querystring: Query }>('/api/model-usage/ranking', async (req, reply) => write(reply, await catalogApi.ranking(catalog, req.query.limit)));

  // ---- token ----
  app.post('/api/model-unavailable', nodeGuard, async (req, reply) => write(reply, await nodeApi.modelUnavailable(catalog, req.body)));
  app.post('/api/model-usage', adminGuard, async (req, reply) => write(reply, await adminApi.addUsage(ctx, req.body)));
  app.put<{ Params: Params }>('/api/admin/services/:id/:version/:platform', adminGuard, async (req, reply) =>
    write(reply, await adminApi.publishService(ctx, req, req.params)),
  );
  app.put<{ Params: Params }>('/api/admin/models/:id/:version', adminGuard, async (req, reply) =>
    write(reply, await adminApi.publishModel(ctx, req, req.params)),
  );
  app.post<{ Params: Params }>('/api/admin/services/:id/:version/stable', adminGuard, async (req, reply) =>
    write(reply, await adminApi.markStable(ctx, 'service', req.params)),
  );
  app.post<{ Params: Params }>('/api/admin/services/:id/:version/rollout', adminGuard, async (req, reply) =>
    write(reply, await adminApi.setRollout(ctx, req.params, req.body)),
  );
  app.post<{ Params: Params }>('/api/admin/models/:id/:version/stable', adminGuard, async (req, reply) =>
    write(reply, await adminApi.markStable(ctx, 'model', req.params)),
  );
  app.put('/api/admin/metadata/delegation', adminGuard, async (req, reply) => write(reply, await metadataApi.putDelegation(metadata, req.body)));
  app.post('/api/admin/keys/statements', adminGuard, async (req, reply) => write(reply, await metadataApi.addKeyStatement(metadata, req.body)));

  await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port ?? 0;
  const host = options.host ?? '127.0.0.1';
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    app,
    routes,
    url: `http://${urlHost}:${port}`,
    catalog,
    layout,
    metadata,
    async close() {
      await app.close();
      await catalog.close();
    },
  };
}

