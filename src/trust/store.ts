// The node's trust store: minisign public key files in <home>/trust/, one per key id
// (SPEC §5 trust add/list/remove). Several keys may be trusted at once, so a publisher can
// rotate keys without shipping a new app.
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { writeFileAtomic } from '../fs/durable.js';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { readPublicKeyFile } from '../sign/keygen.js';
import { formatPublicKey, keyIdHex, normalizeKeyIdHex, parsePublicKey, type PublicKey } from '../sign/minisign-format.js';

export interface TrustedKey {
  key_id: string;
  file: string;
  public_key: string;
}

export class TrustStore {
  constructor(readonly dir: string) {}

  private fileOf(keyId: string): string {
    return path.join(this.dir, `${keyId}.pub`);
  }

  /** Trusts the key in a minisign public key file. */
  async add(pubFile: string): Promise<TrustedKey> {
    return this.trustKey(await readPublicKeyFile(pubFile));
  }

  /** Trusts a key given as text (a minisign public key file's content, or the bare base64 line), e.g. from app config. */
  async addKey(text: string): Promise<TrustedKey> {
    const parsed = parsePublicKey(text);
    if (!parsed.ok) throw new ModelhubError('INVALID_REQUEST', `not a minisign public key: ${parsed.message}`, { details: { reason: parsed.reason } });
    return this.trustKey(parsed.value);
  }

  private async trustKey(key: PublicKey): Promise<TrustedKey> {
    const keyId = keyIdHex(key.keyId);
    const text = formatPublicKey(key);
    await mkdir(this.dir, { recursive: true });
    const file = this.fileOf(keyId);
    await writeFileAtomic(file, text);
    return { key_id: keyId, file, public_key: text };
  }

  async list(): Promise<TrustedKey[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: TrustedKey[] = [];
    for (const name of names.filter((n) => n.endsWith('.pub')).sort()) {
      const file = path.join(this.dir, name);
      const parsed = parsePublicKey(await readFile(file, 'utf8'));
      if (parsed.ok) out.push({ key_id: keyIdHex(parsed.value.keyId), file, public_key: formatPublicKey(parsed.value) });
    }
    return out;
  }

  async keys(): Promise<PublicKey[]> {
    const list = await this.list();
    const keys: PublicKey[] = [];
    for (const k of list) {
      const parsed = parsePublicKey(k.public_key);
      if (parsed.ok) keys.push(parsed.value);
    }
    return keys;
  }

  async remove(keyIdText: string): Promise<string> {
    const keyId = normalizeKeyIdHex(keyIdText);
    if (keyId === undefined) throw new ModelhubError('INVALID_REQUEST', `"${keyIdText}" is not a key id (16 hex digits)`);
    try {
      await unlink(this.fileOf(keyId));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ModelhubError('NOT_FOUND', `key ${keyId} is not trusted`);
      throw err;
    }
    return keyId;
  }
}
