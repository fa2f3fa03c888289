// Admin commands for trust beyond one release (SPEC §11): certify a hub's metadata key, rotate
// a publisher key, revoke one. Each writes a minisign-signed JSON statement to a file and, with
// --hub, uploads it (admin token from $MODELHUB_ADMIN_TOKEN).
import type { Command } from 'commander';
import { writeFileAtomic } from '../../fs/durable.js';
import { ModelhubError } from '../../errors.js';
import type { SignedDocument } from '../../metadata/formats.js';
import { parseDuration } from '../download-options.js';
import { action, globalsOf, UsageError } from '../run.js';

function hubOf(cmd: Command): string | undefined {
  const h = globalsOf(cmd).hub ?? process.env.MODELHUB_HUB;
  return h === undefined || h === '' ? undefined : h;
}

function adminToken(): string {
  const token = process.env.MODELHUB_ADMIN_TOKEN;
  if (token === undefined || token === '') throw new ModelhubError('UNAUTHORIZED', 'MODELHUB_ADMIN_TOKEN is not set');
  return token;
}

async function writeDocument(file: string, doc: SignedDocument): Promise<void> {
  await writeFileAtomic(file, doc.text);
  await writeFileAtomic(`${file}.minisig`, doc.signature);
}

/** `365d` as well as what --max-wait takes (s, m, h). */
function parseValidity(text: string): number {
  const days = /^(\d+)\s*d$/i.exec(text.trim());
  if (days !== null) return Number(days[1]) * 86_400_000;
  return parseDuration(text);
}

export function registerKeyCommands(program: Command): void {
  program
    .command('certify-hub-key')
    .description("certify a hub's metadata key with a publisher key, so nodes trust its signed catalog snapshot")
    .argument('[hub.pub]', "the hub's metadata public key (offline; else fetched from --hub)")
    .requiredOption('--key <publisher.key>', 'the publisher secret key')
    .option('--expires <duration>', 'how long the delegation is valid, e.g. 365d', '365d')
    .option('--out <file>', 'write the delegation here (and FILE.minisig); required offline')
    .action(
      action(async (out, cmd, hubPub: string | undefined) => {
        const o = cmd.opts<{ key: string; expires: string; out?: string }>();
        const hub = hubOf(cmd);
        if (hubPub === undefined && hub === undefined) throw new UsageError('give HUB.pub, or --hub URL to fetch the key and upload the delegation');
        if (hubPub !== undefined && o.out === undefined && hub === undefined) throw new UsageError('offline: --out FILE is required');
        const { readPublicKeyFile, readSecretKeyFile } = await import('../../sign/keygen.js');
        const { delegationDocument } = await import('../../metadata/statements.js');
        const { fetchHubMetadataKey, uploadSigned } = await import('../../admin/metadata-client.js');
        const hubKey = hubPub !== undefined ? await readPublicKeyFile(hubPub) : await fetchHubMetadataKey(hub!);
        const doc = delegationDocument(hubKey, await readSecretKeyFile(o.key), Date.now(), parseValidity(o.expires));
        if (o.out !== undefined) await writeDocument(o.out, doc);
        const uploaded = hubPub === undefined || (hub !== undefined && o.out === undefined) ? await uploadSigned(hub!, adminToken(), 'metadata/delegation', doc) : null;
        const d = JSON.parse(doc.text) as { key_id: string; expires: string };
        out.result({ key_id: d.key_id, expires: d.expires, file: o.out ?? null, uploaded: uploaded !== null }, `certified metadata key ${d.key_id} until ${d.expires}${o.out !== undefined ? ` → ${o.out}` : ''}${uploaded !== null ? ' (uploaded)' : ''}`);
      }),
    );

  program
    .command('rotate-key')
    .description('sign, with the old publisher key, a statement that nodes trusting it should trust the new key')
    .requiredOption('--old <old.key>', 'the old publisher secret key')
    .requiredOption('--new <new.pub>', 'the new publisher public key')
    .option('--out <file>', 'write the statement here (and FILE.minisig)')
    .action(
      action(async (out, cmd) => {
        const o = cmd.opts<{ old: string; new: string; out?: string }>();
        const hub = hubOf(cmd);
        if (hub === undefined && o.out === undefined) throw new UsageError('give --hub URL to publish the rotation, or --out FILE');
        const { readPublicKeyFile, readSecretKeyFile } = await import('../../sign/keygen.js');
        const { rotationDocument } = await import('../../metadata/statements.js');
        const doc = rotationDocument(await readSecretKeyFile(o.old), await readPublicKeyFile(o.new), Date.now());
        if (o.out !== undefined) await writeDocument(o.out, doc);
        if (hub !== undefined) {
          const { uploadSigned } = await import('../../admin/metadata-client.js');
          await uploadSigned(hub, adminToken(), 'keys/statements', doc);
        }
        const r = JSON.parse(doc.text) as { old_key_id: string; new_key_id: string };
        out.result({ old_key_id: r.old_key_id, new_key_id: r.new_key_id, file: o.out ?? null, uploaded: hub !== undefined }, `rotation ${r.old_key_id} → ${r.new_key_id}${hub !== undefined ? ' published' : ''}`);
      }),
    );

  program
    .command('revoke-key')
    .description('publish a signed revocation: nodes drop the key and refuse what it signed')
    .argument('<keyid>', 'the key id to revoke')
    .requiredOption('--key <publisher.key>', 'a trusted publisher secret key that signs the revocation')
    .option('--reason <text>', 'why (kept in the statement)')
    .option('--out <file>', 'write the statement here (and FILE.minisig)')
    .action(
      action(async (out, cmd, keyIdText: string) => {
        const o = cmd.opts<{ key: string; reason?: string; out?: string }>();
        const hub = hubOf(cmd);
        if (hub === undefined && o.out === undefined) throw new UsageError('give --hub URL to publish the revocation, or --out FILE');
        const { normalizeKeyIdHex } = await import('../../sign/minisign-format.js');
        const keyId = normalizeKeyIdHex(keyIdText);
        if (keyId === undefined) throw new UsageError(`"${keyIdText}" is not a key id (16 hex digits)`);
        const { readSecretKeyFile } = await import('../../sign/keygen.js');
        const { revocationDocument } = await import('../../metadata/statements.js');
        const doc = revocationDocument(keyId, await readSecretKeyFile(o.key), Date.now(), o.reason);
        if (o.out !== undefined) await writeDocument(o.out, doc);
        if (hub !== undefined) {
          const { uploadSigned } = await import('../../admin/metadata-client.js');
          await uploadSigned(hub, adminToken(), 'keys/statements', doc);
        }
        out.result({ key_id: keyId, file: o.out ?? null, uploaded: hub !== undefined }, `revoked ${keyId}${hub !== undefined ? ' (published)' : ''}`);
      }),
    );
}
