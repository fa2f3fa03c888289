// The node's trust store: minisign public key files in <home>/trust/, one per key id
// (SPEC §5 trust add/list/remove). Several keys may be trusted at once, so a publisher can
// rotate keys without shipping a new app. How each key came to be trusted — added by a user,
// or rotated from another key by a statement that key signed — and whether it was revoked is
// kept in <home>/trust/provenance.json (SPEC §11). A revoked key stays listed but signs nothing.
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { writeFileAtomic } from '../fs/durable.js';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { readPublicKeyFile } from '../sign/public-key-file.js';
import { z } from 'zod';
import type { SignedDocument } from '../metadata/formats.js';
import { applyKeyStatements, type KeyChanges } from '../metadata/verify.js';
import { equalBytes, formatPublicKey, keyIdHex, normalizeKeyIdHex, parsePublicKey, publicKeyBase64, type PublicKey } from '../sign/minisign-format.js';

export interface TrustedKey {
  key_id: string;
  file: string;
  public_key: string;
  /** `added` by a user (trust add), or `rotated` from `rotated_from` by a signed statement. */
  source: 'added' | 'rotated';
  rotated_from: string | null;
  /** The key that signed its revocation, when it was revoked. */
  revoked_by: string | null;
  revoked_at: string | null;
}

interface Provenance {
  source: 'added' | 'rotated';
  rotated_from?: string;
  since: string;
  revoked?: { by: string; at: string };
}

const provenanceSchema = z.record(
  z.string(),
  z.object({ source: z.enum(['added', 'rotated']), rotated_from: z.string().optional(), since: z.string(), revoked: z.object({ by: z.string(), at: z.string() }).optional() }),
);

export class TrustStore {
  constructor(readonly dir: string) {}

  private fileOf(keyId: string): string {
    return path.join(this.dir, `${keyId}.pub`);
  }

  private get provenanceFile(): string {
    return path.join(this.dir, 'provenance.json');
  }

  private async provenance(): Promise<Record<string, Provenance>> {
    try {
      const parsed = provenanceSchema.safeParse(JSON.parse(await readFile(this.provenanceFile, 'utf8')));
      return parsed.success ? parsed.data : {};
    } catch {
      return {};
    }
  }

  private async saveProvenance(p: Record<string, Provenance>): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await writeFileAtomic(this.provenanceFile, JSON.stringify(p, null, 2) + '\n');
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

  /**
   * Key ids are chosen by whoever makes the key, so two different keys may share one: a key id
   * already trusted for another key is refused (KEY_ID_CONFLICT), never replaced. Adding the
   * very same key again is a no-op.
   */
  private async trustKey(key: PublicKey, origin: Provenance = { source: 'added', since: new Date().toISOString() }): Promise<TrustedKey> {
    const keyId = keyIdHex(key.keyId);
    const text = formatPublicKey(key);
    await mkdir(this.dir, { recursive: true });
    const file = this.fileOf(keyId);
    const existing = await this.trustedAt(file);
    const provenance = await this.provenance();
    if (existing !== undefined) {
      // The same key again (e.g. an app adding its key at every start) changes nothing: a
      // revoked key stays revoked until a user removes it.
      if (equalBytes(existing.key, key.key)) return this.record(keyId, file, existing, provenance[keyId]);
      throw new ModelhubError('KEY_ID_CONFLICT', `a different key with key id ${keyId} is already trusted; remove it first (modelhub trust remove ${keyId}) if the new one is meant to replace it`, {
        details: { key_id: keyId, trusted: publicKeyBase64(existing), offered: publicKeyBase64(key) },
      });
    }
    await writeFileAtomic(file, text);
    provenance[keyId] = origin;
    await this.saveProvenance(provenance);
    return this.record(keyId, file, key, origin);
  }

  private record(keyId: string, file: string, key: PublicKey, p: Provenance | undefined): TrustedKey {
    return {
      key_id: keyId,
      file,
      public_key: formatPublicKey(key),
      source: p?.source ?? 'added',
      rotated_from: p?.rotated_from ?? null,
      revoked_by: p?.revoked?.by ?? null,
      revoked_at: p?.revoked?.at ?? null,
    };
  }

  /**
   * Follows the hub's rotation and revocation statements (verified against the keys trusted
   * now, metadata/verify.ts): rotated-to keys are trusted, revoked keys stop counting.
   */
  async applyStatements(statements: readonly SignedDocument[]): Promise<KeyChanges> {
    if (statements.length === 0) return { added: [], revoked: [] };
    const all = await this.list();
    const states = all.flatMap((k) => {
      const parsed = parsePublicKey(k.public_key);
      return parsed.ok ? [{ keyId: k.key_id, key: parsed.value, revoked: k.revoked_by !== null }] : [];
    });
    const changes = applyKeyStatements(states, statements);
    const now = new Date().toISOString();
    for (const a of changes.added) await this.trustKey(a.key, { source: 'rotated', rotated_from: a.rotatedFrom, since: now });
    if (changes.revoked.length > 0) {
      const provenance = await this.provenance();
      for (const r of changes.revoked) provenance[r.keyId] = { ...(provenance[r.keyId] ?? { source: 'added', since: now }), revoked: { by: r.by, at: now } };
      await this.saveProvenance(provenance);
    }
    return changes;
  }

  /** Key ids that were trusted and then revoked. */
  async revokedIds(): Promise<Set<string>> {
    return new Set((await this.list()).filter((k) => k.revoked_by !== null).map((k) => k.key_id));
  }

  /** The key stored under a key id's file, or undefined when there is none (or it is unreadable). */
  private async trustedAt(file: string): Promise<PublicKey | undefined> {
    let stored: string;
    try {
      stored = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = parsePublicKey(stored);
    return parsed.ok ? parsed.value : undefined;
  }

  async list(): Promise<TrustedKey[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const provenance = await this.provenance();
    const out: TrustedKey[] = [];
    for (const name of names.filter((n) => n.endsWith('.pub')).sort()) {
      const file = path.join(this.dir, name);
      const parsed = parsePublicKey(await readFile(file, 'utf8'));
      if (parsed.ok) out.push(this.record(keyIdHex(parsed.value.keyId), file, parsed.value, provenance[keyIdHex(parsed.value.keyId)]));
    }
    return out;
  }

  /** The keys signatures are checked against: every trusted key that was not revoked. */
  async keys(): Promise<PublicKey[]> {
    const keys: PublicKey[] = [];
    for (const k of await this.list()) {
      const parsed = parsePublicKey(k.public_key);
      if (parsed.ok && k.revoked_by === null) keys.push(parsed.value);
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
    const provenance = await this.provenance();
    if (keyId in provenance) {
      delete provenance[keyId];
      await this.saveProvenance(provenance);
    }
    return keyId;
  }
}
