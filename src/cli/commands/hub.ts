// `modelhub hub serve`: run the Model Hub.
import type { Command } from 'commander';
import path from 'node:path';
import { z } from 'zod';
import { StorageLayout } from '../../../hub/storage-layout.js';
import { platformSchema } from '../../schemas/common.js';
import { describeIssues } from '../../schemas/parse.js';
import { action, UsageError } from '../run.js';

const serveOptions = z.object({
  storage: z.string().min(1),
  port: z.coerce.number().int().min(0).max(65535).default(8780),
  host: z.string().min(1).default('127.0.0.1'),
  db: z.string().optional(),
  publisherKey: z.array(z.string()).default([]),
  defaultPlatform: platformSchema.default('linux-x64'),
  maxUploadBytes: z.coerce.number().int().positive().optional(),
  nodeToken: z.string().optional(),
});

/**
 * The hub keeps its catalog in SQLite at `<storage>/hub.db` and nowhere else. `--db` is accepted
 * only when it names exactly that file (`sqlite:PATH`); any other value would be silently
 * ignored, so it is refused as bad usage instead.
 */
function checkDb(db: string, storage: string): void {
  const catalog = new StorageLayout(storage).dbFile;
  if (!db.startsWith('sqlite:')) {
    throw new UsageError(`--db ${db.split(':')[0] ?? ''}: only the embedded SQLite catalog is supported by this build (it is kept at ${catalog})`);
  }
  const file = db.slice('sqlite:'.length);
  if (file === '' || file.includes('?') || file.includes('#') || path.resolve(file) !== catalog) {
    throw new UsageError(`--db ${db}: the catalog is always the SQLite file ${catalog} (sqlite:${catalog}); another location is not supported — omit --db`);
  }
}

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
    .option('--db <url>', 'catalog database: only sqlite:<storage>/hub.db, the default, is supported')
    .option('--publisher-key <file.pub>', 'a minisign public key allowed to publish (repeatable)', collect, [])
    .option('--default-platform <p>', 'platform served to older clients without ?platform=', 'linux-x64')
    .option('--max-upload-bytes <n>', 'largest accepted package or model file')
    .option('--node-token <token>', 'bearer token nodes send with POST /api/model-unavailable (default: $MODELHUB_NODE_TOKEN)')
    .action(
      action(async (out, cmd) => {
        const parsed = serveOptions.safeParse(cmd.opts());
        if (!parsed.success) throw new UsageError(describeIssues(parsed.error));
        const o = parsed.data;
        if (o.db !== undefined) checkDb(o.db, o.storage);
        // Loaded on use: node commands should not pay for the server's modules at start-up.
        const { createHub } = await import('../../../hub/server.js');
        const { readPublicKeyFile } = await import('../../sign/keygen.js');
        const keys = await Promise.all(o.publisherKey.map((f) => readPublicKeyFile(f)));
        const token = process.env.MODELHUB_ADMIN_TOKEN;
        const nodeToken = o.nodeToken ?? process.env.MODELHUB_NODE_TOKEN;
        const hub = await createHub({
          storage: o.storage,
          port: o.port,
          host: o.host,
          publisherKeys: keys,
          adminToken: token === '' ? undefined : token,
          defaultPlatform: o.defaultPlatform,
          maxUploadBytes: o.maxUploadBytes,
          nodeToken: nodeToken === '' ? undefined : nodeToken,
        });
        out.event({ type: 'ready', url: hub.url });
        if (!out.json) process.stdout.write(`modelhub hub listening on ${hub.url}\n`);
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
}
