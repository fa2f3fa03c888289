// The hub's signed metadata (SPEC §11): the catalog snapshot signed with the online metadata
// key — re-signed whenever the catalog changes (also by another hub sharing it) and before half
// its ttl has passed —, the publisher's delegation of that key, and the key statements. The
// publisher keys the hub accepts uploads from are the configured ones, followed along verified
// rotations, minus revoked ones.
import { createHash } from 'node:crypto';
import { ModelhubError } from '../../src/errors.js';
import { canonicalJson, delegationSchema, revocationSchema, rotationSchema, type SignedDocument } from '../../src/metadata/formats.js';
import { applyKeyStatements, verifyDelegation } from '../../src/metadata/verify.js';
import { parseJsonOrThrow } from '../../src/schemas/parse.js';
import { formatPublicKey, formatSignature, keyIdHex, type PublicKey, type SecretKey } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { verifyOrThrow } from '../../src/sign/verify.js';
import type { CatalogStore } from '../catalog/store.js';
import { snapshotBody } from './snapshot-body.js';

export const DEFAULT_METADATA_TTL_SECONDS = 86_400;
const DELEGATION = 'delegation';

export interface HubMetadataOptions {
  catalog: CatalogStore;
  secretKey: SecretKey;
  publicKey: PublicKey;
  ttlSeconds?: number;
  publisherKeys: readonly PublicKey[];
  now?: () => number;
}

export class HubMetadata {
  private cached: { mark: string; refreshAfter: number; doc: SignedDocument } | undefined;
  /** One signing at a time per catalog state: concurrent requests share it. */
  private signing: { mark: string; doc: Promise<SignedDocument> } | undefined;
  /** The accepted publisher keys as of a catalog state (key statements may come from any hub). */
  private keys: { mark: string; keys: PublicKey[] } | undefined;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(private readonly o: HubMetadataOptions) {
    this.ttlMs = (o.ttlSeconds ?? DEFAULT_METADATA_TTL_SECONDS) * 1000;
    this.now = o.now ?? Date.now;
  }

  get keyId(): string {
    return keyIdHex(this.o.publicKey.keyId);
  }

  get publicKey(): PublicKey {
    return this.o.publicKey;
  }

  publicKeyText(): string {
    return formatPublicKey(this.o.publicKey);
  }

  /**
   * The signed snapshot, current for the catalog as it is now: re-signed when the catalog
   * changed (on any hub sharing it) and before half its ttl has passed.
   */
  async snapshot(): Promise<SignedDocument> {
    // The mark is read before the rows: a change committed in between only makes the next
    // request sign again, never keeps an old snapshot under a new mark.
    const mark = await this.o.catalog.changeMark();
    const now = this.now();
    if (this.cached !== undefined && this.cached.mark === mark && now < this.cached.refreshAfter) return this.cached.doc;
    if (this.signing !== undefined && this.signing.mark === mark) return this.signing.doc;
    const signing = { mark, doc: this.sign(mark, now) };
    this.signing = signing;
    try {
      return await signing.doc;
    } finally {
      if (this.signing === signing) this.signing = undefined;
    }
  }

  private async sign(mark: string, now: number): Promise<SignedDocument> {
    const [services, models] = await Promise.all([this.o.catalog.releases('service'), this.o.catalog.releases('model')]);
    const body = snapshotBody(services, models);
    const serial = await this.o.catalog.metadataSerial(createHash('sha256').update(canonicalJson(body)).digest('hex'), now);
    const text = canonicalJson({
      type: 'modelhub-snapshot',
      schema: 1,
      serial,
      issued_at: new Date(now).toISOString(),
      expires: new Date(now + this.ttlMs).toISOString(),
      ...body,
    });
    const doc = { text, signature: formatSignature(signBytes(Buffer.from(text, 'utf8'), this.o.secretKey, `modelhub snapshot ${serial}`)) };
    // Re-signed before half the ttl has passed, so a node never holds one close to expiry.
    this.cached = { mark, refreshAfter: now + this.ttlMs / 2, doc };
    return doc;
  }

  /**
   * Stored per metadata key: hubs sharing one catalog may each have their own key (their own
   * --metadata-key), each certified on its own. A delegation stored by an older hub under the
   * plain name still counts when it names this hub's key.
   */
  async delegation(): Promise<SignedDocument | undefined> {
    const own = await this.o.catalog.metadataDoc(this.delegationName);
    if (own !== undefined) return own;
    const legacy = await this.o.catalog.metadataDoc(DELEGATION);
    if (legacy === undefined) return undefined;
    const d = delegationSchema.safeParse(safeJson(legacy.text));
    return d.success && d.data.key_id === this.keyId ? legacy : undefined;
  }

  private get delegationName(): string {
    return `${DELEGATION}:${this.keyId}`;
  }

  /** Stores a delegation after checking a publisher key signed it for this hub's key. */
  async setDelegation(doc: SignedDocument): Promise<{ keyId: string; expires: string }> {
    const d = verifyDelegation(doc, await this.acceptedKeys(), this.now());
    if (d.keyId !== this.keyId) throw new ModelhubError('MANIFEST_INVALID', `the delegation certifies key ${d.keyId}, but this hub's metadata key is ${this.keyId}`);
    await this.o.catalog.setMetadataDoc(this.delegationName, doc);
    return { keyId: d.keyId, expires: parseJsonOrThrow(delegationSchema, doc.text, 'MANIFEST_INVALID', 'delegation').expires };
  }

  async statements(): Promise<SignedDocument[]> {
    return (await this.o.catalog.keyStatements()).map((s) => ({ text: s.text, signature: s.signature }));
  }

  /** Stores a rotation or revocation signed by a key the hub accepts; answers what it changed. */
  async addStatement(doc: SignedDocument): Promise<{ kind: 'rotation' | 'revocation'; added: boolean }> {
    const keys = await this.acceptedKeys();
    verifyOrThrow({ message: Buffer.from(doc.text, 'utf8'), signature: doc.signature, trustedKeys: keys });
    let json: unknown;
    try {
      json = JSON.parse(doc.text);
    } catch (err) {
      throw new ModelhubError('MANIFEST_INVALID', 'the key statement is not JSON', { cause: err });
    }
    const kind = rotationSchema.safeParse(json).success ? 'rotation' : revocationSchema.safeParse(json).success ? 'revocation' : null;
    if (kind === null) throw new ModelhubError('MANIFEST_INVALID', 'not a key rotation or revocation statement');
    const changes = applyKeyStatements(keyStates(keys), [doc]);
    if (changes.added.length === 0 && changes.revoked.length === 0 && !(await this.o.catalog.keyStatements()).some((s) => s.text === doc.text)) {
      throw new ModelhubError('INVALID_REQUEST', kind === 'rotation' ? 'a rotation must be signed by the old key itself and name a new key' : 'the revoked key is not one this hub accepts');
    }
    const added = await this.o.catalog.addKeyStatement({ kind, text: doc.text, signature: doc.signature });
    this.keys = undefined;
    return { kind, added };
  }

  /**
   * The publisher keys uploads are checked against now: the configured ones, followed along
   * verified rotations, minus revoked ones — statements any hub sharing the catalog stored.
   */
  async acceptedKeys(): Promise<readonly PublicKey[]> {
    const mark = await this.o.catalog.changeMark();
    if (this.keys !== undefined && this.keys.mark === mark) return this.keys.keys;
    const configured = keyStates(this.o.publisherKeys);
    const changes = applyKeyStatements(configured, await this.statements());
    const revoked = new Set(changes.revoked.map((r) => r.keyId));
    const keys = [...configured.map((k) => k.key), ...changes.added.map((a) => a.key)].filter((k) => !revoked.has(keyIdHex(k.keyId)));
    this.keys = { mark, keys };
    return keys;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function keyStates(keys: readonly PublicKey[]) {
  return keys.map((key) => ({ keyId: keyIdHex(key.keyId), key, revoked: false }));
}
