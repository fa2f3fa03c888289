// Admin commands: keygen → pack → sign → publish.
import type { Command } from 'commander';
import { writeFileAtomic } from '../../fs/durable.js';
import { ModelhubError } from '../../errors.js';
import { action, globalsOf, UsageError } from '../run.js';


function hubAndToken(cmd: Command): { url: string; token: string } {
  const hub = globalsOf(cmd).hub ?? process.env.MODELHUB_HUB;
  if (hub === undefined || hub === '') throw new UsageError('no hub: pass --hub URL or set MODELHUB_HUB');
  const token = process.env.MODELHUB_ADMIN_TOKEN;
  if (token === undefined || token === '') throw new ModelhubError('UNAUTHORIZED', 'MODELHUB_ADMIN_TOKEN is not set');
  return { url: hub, token };
}

function percentOf(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 100) throw new UsageError(`${what}: "${text}" is not a whole percentage from 0 to 100`);
  return n;
}

export function registerAdminCommands(program: Command): void {
  program
    .command('keygen')
    .description('write BASE.pub (minisign public key) and BASE.key (secret key)')
    .requiredOption('--out <base>', 'path prefix of the key files')
    .option('--force', 'overwrite existing key files')
    .action(
      action(async (out, cmd) => {
        const o = cmd.opts<{ out: string; force?: boolean }>();
        const { writeKeyPair } = await import('../../sign/keygen.js');
        const r = await writeKeyPair(o.out, { force: o.force === true });
        out.result(
          { key_id: r.keyId, public_key: r.publicKeyPath, secret_key: r.secretKeyPath },
          `key ${r.keyId}\n  public: ${r.publicKeyPath}\n  secret: ${r.secretKeyPath} (keep it safe)`,
        );
      }),
    );

  program
    .command('pack')
    .description('validate SRC_DIR (service.json or model.json) and write manifest.json plus service.zip or the model files')
    .argument('<src_dir>')
    .requiredOption('--out <dir>', 'output directory')
    .option('--platform <p>', 'platform of a service package (linux-x64, windows-x64, darwin-arm64, darwin-x64)')
    .action(
      action(async (out, cmd, src: string) => {
        const o = cmd.opts<{ out: string; platform?: string }>();
        const { pack } = await import('../../pack/index.js');
        const r = await pack(src, o.out, { platform: o.platform });
        out.result(
          { kind: r.kind, id: r.id, version: r.version, ...(r.platform ? { platform: r.platform } : {}), manifest: r.manifestPath, archive: r.archivePath ?? null, files: r.files, bytes: r.bytes },
          `packed ${r.kind} ${r.id} ${r.version}${r.platform ? ` (${r.platform})` : ''}: ${r.files} files, ${r.bytes} bytes → ${r.manifestPath}`,
        );
      }),
    );

  program
    .command('sign')
    .description('write FILE.minisig, a minisign signature of FILE')
    .argument('<file>')
    .requiredOption('--key <base.key>', 'secret key written by modelhub keygen or minisign -G -W')
    .option('--trusted-comment <text>', 'trusted comment (signed)')
    .action(
      action(async (out, cmd, file: string) => {
        const o = cmd.opts<{ key: string; trustedComment?: string }>();
        const { readSecretKeyFile } = await import('../../sign/keygen.js');
        const { signFile } = await import('../../sign/sign.js');
        const sk = await readSecretKeyFile(o.key);
        const text = await signFile(file, sk, { trustedComment: o.trustedComment });
        const sigPath = `${file}.minisig`;
        await writeFileAtomic(sigPath, text);
        out.result({ signature: sigPath }, `signed ${file} → ${sigPath}`);
      }),
    );

  program
    .command('publish')
    .description('upload what pack wrote in DIR, with manifest.json.minisig (token from $MODELHUB_ADMIN_TOKEN)')
    .argument('<dir>')
    .option('--stable', 'mark the version stable')
    .option('--rollout <percent>', 'a staged rollout: offer this service release to PERCENT % of nodes at first (0-100)')
    .action(
      action(async (out, cmd, dir: string) => {
        const o = cmd.opts<{ stable?: boolean; rollout?: string }>();
        const hub = hubAndToken(cmd);
        const rollout = o.rollout === undefined ? undefined : percentOf(o.rollout, '--rollout');
        const { publishDir } = await import('../../admin/publish-client.js');
        const r = await publishDir(dir, { hub: hub.url, token: hub.token, stable: o.stable === true, rollout });
        out.result(
          { ...r, ...(rollout !== undefined ? { rollout } : {}) },
          `published ${r.kind} ${r.id} ${r.version}${r.platform ? ` (${r.platform})` : ''}${r.stable ? ', stable' : ''}${rollout !== undefined ? `, rolled out to ${rollout} %` : ''}`,
        );
      }),
    );

  program
    .command('rollout')
    .description("set the share of nodes a service version is offered to as latest: 0 halts a rollout, 100 completes it")
    .argument('<id>')
    .argument('<version>')
    .argument('<percent>', '0-100')
    .action(
      action(async (out, cmd, id: string, version: string, percentText: string) => {
        const percent = percentOf(percentText, 'PERCENT');
        const hub = hubAndToken(cmd);
        const { setRollout } = await import('../../admin/publish-client.js');
        const r = await setRollout({ hub: hub.url, token: hub.token, id, version, percent });
        out.result({ id: r.id, version: r.version, rollout: r.rollout }, `${r.id} ${r.version} rolled out to ${r.rollout} % of nodes`);
      }),
    );
}
