// `modelhub hub serve`: run the Model Hub.
import type { Command } from 'commander';
import { z } from 'zod';
import { CatalogUrlError, parseCatalogUrl, type CatalogSpec } from '../../../hub/catalog/open.js';
import { ModelhubError } from '../../errors.js';
import { platformSchema } from '../../schemas/common.js';
import { describeIssues } from '../../schemas/parse.js';
import { action, EXIT_FAILED, EXIT_OK, UsageError } from '../run.js';

const serveOptions = z.object({
  storage: z.string().min(1),
  port: z.coerce.number().int().min(0).max(65535).default(8780),
  host: z.string().min(1).default('127.0.0.1'),
  db: z.string().optional(),
  publisherKey: z.array(z.string()).default([]),
  defaultPlatform: platformSchema.default('linux-x64'),
  maxUploadBytes: z.coerce.number().int().positive().optional(),
  nodeToken: z.string().optional(),
  metadataKey: z.string().min(1).optional(),
  metadataTtl: z.coerce.number().int().min(1).max(365 * 86_400).optional(),
  metadataDelegation: z.string().min(1).optional(),
  accelRedirect: z.string().optional(),
  trustProxy: z.string().optional(),
});

/**
 * `--db`: PostgreSQL (`postgres://USER@HOST:PORT/DB`), or SQLite at `<storage>/hub.db` — the
 * default, also as `sqlite:<storage>/hub.db`. Any other value would be silently ignored, so it is
 * refused as bad usage instead.
 */
function checkDb(db: string | undefined, storage: string): CatalogSpec {
  try {
    return parseCatalogUrl(db, storage);
  } catch (err) {
    if (err instanceof CatalogUrlError) throw new UsageError(err.message);
    throw err;
  }
}

const orphansOptions = z.object({
  storage: z.string().min(1),
  db: z.string().optional(),
  quarantine: z.boolean().optional(),
});

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function registerHubCommands(program: Command): void {
  const hub = program.command('hub').description('the Model Hub server');
  hub
    .command('serve')
    .description('run the hub (admin token from $MODELHUB_ADMIN_TOKEN)')
    .requiredOption('--storage <dir>', 'where releases and the catalog are kept')
    .option('--port <n>', 'TCP port (0 picks a free one)', process.env.PORT ?? '8780')
    .option('--host <h>', 'address to listen on', '127.0.0.1')
    .option('--db <url>', 'the catalog: postgres://USER@HOST:PORT/DB (hubs sharing one catalog and storage folder), else SQLite in <storage>/hub.db')
    .option('--publisher-key <file.pub>', 'a minisign public key allowed to publish (repeatable)', collect, [])
    .option('--default-platform <p>', 'platform served to older clients without ?platform=', 'linux-x64')
    .option('--max-upload-bytes <n>', 'largest accepted package or model file')
    .option('--node-token <token>', 'bearer token nodes send with POST /api/model-unavailable (default: $MODELHUB_NODE_TOKEN)')
    .option('--metadata-key <file.key>', "the online key that signs the catalog snapshot (default: <storage>/metadata.key, created on first start)")
    .option('--metadata-ttl <seconds>', 'how long a signed snapshot is valid; re-signed before half of it passed (default 86400)')
    .option('--metadata-delegation <file>', 'a delegation written by certify-hub-key --out (FILE and FILE.minisig)')
    .option('--trust-proxy <addresses>', 'comma-separated proxies (IPs or CIDR ranges, e.g. 127.0.0.1 for nginx in front) whose X-Forwarded-For names the client for the rate limits')
    .option('--accel-redirect <prefix>', "answer /storage/… with X-Accel-Redirect: PREFIX/<path> for nginx in front to send the bytes (deploy/nginx/modelhub.conf)")
    .action(
      action(async (out, cmd) => {
        const parsed = serveOptions.safeParse(cmd.opts());
        if (!parsed.success) throw new UsageError(describeIssues(parsed.error));
        const o = parsed.data;
        checkDb(o.db, o.storage);
        // Loaded on use: node commands should not pay for the server's modules at start-up.
        const { accelPrefixSchema, createHub, trustedProxySchema } = await import('../../../hub/server.js');
        const accel = o.accelRedirect === undefined ? undefined : accelPrefixSchema.safeParse(o.accelRedirect);
        if (accel !== undefined && !accel.success) throw new UsageError(`--accel-redirect: ${describeIssues(accel.error)}`);
        const proxies = z.array(trustedProxySchema).safeParse(o.trustProxy === undefined ? [] : o.trustProxy.split(',').map((a) => a.trim()));
        if (!proxies.success) throw new UsageError(`--trust-proxy: ${describeIssues(proxies.error)}`);
        const { readPublicKeyFile } = await import('../../sign/keygen.js');
        const keys = await Promise.all(o.publisherKey.map((f) => readPublicKeyFile(f)));
        const { readFile } = await import('node:fs/promises');
        const delegation =
          o.metadataDelegation === undefined ? undefined : { text: await readFile(o.metadataDelegation, 'utf8'), signature: await readFile(`${o.metadataDelegation}.minisig`, 'utf8') };
        const token = process.env.MODELHUB_ADMIN_TOKEN;
        const nodeToken = o.nodeToken ?? process.env.MODELHUB_NODE_TOKEN;
        const hub = await createHub({
          storage: o.storage,
          db: o.db,
          port: o.port,
          host: o.host,
          publisherKeys: keys,
          adminToken: token === '' ? undefined : token,
          defaultPlatform: o.defaultPlatform,
          maxUploadBytes: o.maxUploadBytes,
          nodeToken: nodeToken === '' ? undefined : nodeToken,
          metadataKeyFile: o.metadataKey,
          metadataTtlSeconds: o.metadataTtl,
          metadataDelegation: delegation,
          accelRedirect: accel?.data,
          trustProxy: proxies.data,
        });
        out.event({ type: 'ready', url: hub.url, catalog: hub.catalog.location });
        if (!out.json) {
          const bytes = accel === undefined ? '' : `; /storage/ bytes sent by nginx via X-Accel-Redirect ${accel.data}/…`;
          process.stdout.write(`modelhub hub listening on ${hub.url} (catalog: ${hub.catalog.location}${bytes})\n`);
        }
        if (keys.length === 0) process.stderr.write('warning: no --publisher-key given; every publish will be refused (UNTRUSTED_KEY)\n');
        if (token === undefined || token === '') process.stderr.write('warning: MODELHUB_ADMIN_TOKEN is not set; admin endpoints are disabled\n');
        if (nodeToken === undefined || nodeToken === '') process.stderr.write('warning: no node token (--node-token or MODELHUB_NODE_TOKEN); POST /api/model-unavailable is disabled\n');
        await new Promise<void>((resolve) => {
          const stop = (): void => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await hub.close();
      }),
    );

  hub
    .command('orphans')
    .description('list release folders without a catalog row (an interrupted publish, a restored catalog); --quarantine moves them to <storage>/.orphans/<timestamp>/')
    .requiredOption('--storage <dir>', "the hubs' storage folder")
    .option('--db <url>', 'the catalog, as given to hub serve (default: SQLite in <storage>/hub.db)')
    .option('--quarantine', 'move each one, never delete it, to <storage>/.orphans/<timestamp>/<path>')
    .action(
      action(async (out, cmd) => {
        const parsed = orphansOptions.safeParse(cmd.opts());
        if (!parsed.success) throw new UsageError(describeIssues(parsed.error));
        const o = parsed.data;
        const spec = checkDb(o.db, o.storage);
        const { openCatalog } = await import('../../../hub/catalog/open.js');
        const { StorageLayout, findOrphans } = await import('../../../hub/storage-layout.js');
        const layout = new StorageLayout(o.storage);
        // An existing catalog only: an empty one made here would call every release an orphan.
        const catalog = await openCatalog(spec, { mustExist: true });
        try {
          const orphans = await findOrphans(layout, catalog, { quarantine: o.quarantine === true });
          const fields = { storage: layout.root, catalog: catalog.location, quarantined: o.quarantine === true, orphans };
          const stuck = orphans.filter((x) => x.error !== undefined);
          if (stuck.length > 0) {
            out.failure(new ModelhubError('INTERNAL', `${stuck.length} of ${orphans.length} release folders without a catalog row could not be moved (each is named on stderr)`), fields);
            return EXIT_FAILED;
          }
          const human =
            orphans.length === 0 ? 'no release folder without a catalog row' : orphans.map((x) => (x.moved_to !== undefined ? `${x.path} → ${x.moved_to}` : x.path)).join('\n');
          out.result(fields, human);
          return EXIT_OK;
        } finally {
          await catalog.close();
        }
      }),
    );
}
