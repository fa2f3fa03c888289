// Verifying signed metadata. Pure: documents, keys and the time in, typed results out; every
// step that is not a complete success throws its code (fail-closed). The order follows TUF's
// client workflow (§5): keys first (rotations, revocations), then the delegation of the online
// key, then the snapshot it signed, checked for expiry (freeze) and serial (rollback).
import { ModelhubError } from '../errors.js';
import { parseJsonOrThrow } from '../schemas/parse.js';
import { keyIdHex, parsePublicKey, type PublicKey } from '../sign/minisign-format.js';
import { verifyOrThrow, verifySignature } from '../sign/verify.js';
import { delegationSchema, revocationSchema, rotationSchema, snapshotSchema, type SignedDocument, type Snapshot } from './formats.js';

function publicKeyOf(line: string, keyId: string, what: string): PublicKey {
  const parsed = parsePublicKey(line);
  if (!parsed.ok || keyIdHex(parsed.value.keyId) !== keyId) throw new ModelhubError('MANIFEST_INVALID', `${what}: the key does not parse or does not have id ${keyId}`);
  return parsed.value;
}

/** Step 1 (TUF 5.3, root): the publisher's delegation of the hub's metadata key. */
export function verifyDelegation(doc: SignedDocument, trusted: readonly PublicKey[], now: number): { key: PublicKey; keyId: string; expires: number } {
  if (trusted.length === 0) throw new ModelhubError('UNTRUSTED_KEY', 'the trust store is empty: add the publisher key with `modelhub trust add KEY.pub`');
  const { keyId: signer } = verifyOrThrow({ message: Buffer.from(doc.text, 'utf8'), signature: doc.signature, trustedKeys: trusted });
  const d = parseJsonOrThrow(delegationSchema, doc.text, 'MANIFEST_INVALID', 'metadata delegation');
  const expires = Date.parse(d.expires);
  if (expires <= now) throw new ModelhubError('METADATA_EXPIRED', `the delegation of the hub's metadata key (by ${signer}) expired at ${d.expires}`, { details: { expires: d.expires } });
  return { key: publicKeyOf(d.key, d.key_id, 'metadata delegation'), keyId: d.key_id, expires };
}

/** Steps 2–4 (TUF 5.4/5.5, timestamp and snapshot): signature, freshness, no rollback. */
export function verifySnapshot(doc: SignedDocument, metadataKey: PublicKey, now: number, lastSerial: number | null): Snapshot {
  const r = verifySignature({ message: Buffer.from(doc.text, 'utf8'), signature: doc.signature, trustedKeys: [metadataKey] });
  if (!r.ok) {
    const code = r.reason === 'unknown_key' ? 'UNTRUSTED_KEY' : 'SIGNATURE_INVALID';
    throw new ModelhubError(code, `catalog snapshot: ${r.reason === 'unknown_key' ? 'not signed by the certified metadata key' : r.message}`, { details: { reason: r.reason } });
  }
  const s = parseJsonOrThrow(snapshotSchema, doc.text, 'MANIFEST_INVALID', 'catalog snapshot');
  if (Date.parse(s.expires) <= now) throw new ModelhubError('METADATA_EXPIRED', `the hub's catalog snapshot ${s.serial} expired at ${s.expires} (a frozen or replayed answer)`, { details: { serial: s.serial, expires: s.expires } });
  if (lastSerial !== null && s.serial < lastSerial) {
    throw new ModelhubError('ROLLBACK_DETECTED', `the hub's catalog snapshot ${s.serial} is older than ${lastSerial}, which this node already saw (a replayed answer)`, { details: { serial: s.serial, seen: lastSerial } });
  }
  return s;
}

export interface KeyState {
  keyId: string;
  key: PublicKey;
  revoked: boolean;
}

export interface KeyChanges {
  added: { keyId: string; key: PublicKey; rotatedFrom: string }[];
  revoked: { keyId: string; by: string }[];
}

/**
 * Applies the hub's rotation and revocation statements to the keys a node trusts. A rotation
 * counts only when signed by the old key itself; a revocation when signed by any key still
 * trusted. Repeated until nothing changes, so a chain A → B → C is followed whatever the order.
 * A revoked key signs nothing any more, statements included.
 */
export function applyKeyStatements(keys: readonly KeyState[], statements: readonly SignedDocument[]): KeyChanges {
  const state = new Map(keys.map((k) => [k.keyId, { ...k }]));
  const changes: KeyChanges = { added: [], revoked: [] };
  for (let changed = true; changed; ) {
    changed = false;
    for (const doc of statements) {
      const active = [...state.values()].filter((k) => !k.revoked).map((k) => k.key);
      const r = verifySignature({ message: Buffer.from(doc.text, 'utf8'), signature: doc.signature, trustedKeys: active });
      if (!r.ok) continue;
      let json: unknown;
      try {
        json = JSON.parse(doc.text);
      } catch {
        continue;
      }
      const rotation = rotationSchema.safeParse(json);
      if (rotation.success && rotation.data.old_key_id === r.keyId && !state.has(rotation.data.new_key_id)) {
        const key = publicKeyOf(rotation.data.new_key, rotation.data.new_key_id, 'key rotation');
        state.set(rotation.data.new_key_id, { keyId: rotation.data.new_key_id, key, revoked: false });
        changes.added.push({ keyId: rotation.data.new_key_id, key, rotatedFrom: r.keyId });
        changed = true;
      }
      const revocation = revocationSchema.safeParse(json);
      const target = revocation.success ? state.get(revocation.data.key_id) : undefined;
      if (target !== undefined && !target.revoked) {
        target.revoked = true;
        changes.revoked.push({ keyId: target.keyId, by: r.keyId });
        changed = true;
      }
    }
  }
  return changes;
}
