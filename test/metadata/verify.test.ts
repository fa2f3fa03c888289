// The pure metadata verifier: every failure has its code, every success is complete.
import { describe, expect, it } from 'vitest';
import { canonicalJson, type SignedDocument } from '../../src/metadata/formats.js';
import { delegationDocument, revocationDocument, rotationDocument } from '../../src/metadata/statements.js';
import { applyKeyStatements, verifyDelegation, verifySnapshot, type KeyState } from '../../src/metadata/verify.js';
import { generateKeyPair } from '../../src/sign/keygen.js';
import { formatSignature, keyIdHex } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';

const now = Date.parse('2026-06-01T00:00:00Z');
const publisher = generateKeyPair();
const hubKey = generateKeyPair();
const other = generateKeyPair();

function snapshot(serial: number, expires: number, key = hubKey): SignedDocument {
  const text = canonicalJson({ type: 'modelhub-snapshot', schema: 1, serial, issued_at: new Date(now).toISOString(), expires: new Date(expires).toISOString(), services: {}, models: {} });
  return { text, signature: formatSignature(signBytes(Buffer.from(text), key.secretKey)) };
}

const state = (k: ReturnType<typeof generateKeyPair>, revoked = false): KeyState => ({ keyId: keyIdHex(k.publicKey.keyId), key: k.publicKey, revoked });

describe('verifyDelegation', () => {
  const doc = delegationDocument(hubKey.publicKey, publisher.secretKey, now, 86_400_000);
  it('gives the certified key', () => {
    expect(verifyDelegation(doc, [publisher.publicKey], now + 1000).keyId).toBe(keyIdHex(hubKey.publicKey.keyId));
  });
  it('refuses an untrusted signer, a tampered document, an expired one, an empty trust store', () => {
    expect(() => verifyDelegation(doc, [other.publicKey], now)).toThrow(expect.objectContaining({ code: 'UNTRUSTED_KEY' }));
    expect(() => verifyDelegation({ ...doc, text: doc.text.replace('metadata', 'metadatx') }, [publisher.publicKey], now)).toThrow(expect.objectContaining({ code: 'SIGNATURE_INVALID' }));
    expect(() => verifyDelegation(doc, [publisher.publicKey], now + 86_400_001)).toThrow(expect.objectContaining({ code: 'METADATA_EXPIRED' }));
    expect(() => verifyDelegation(doc, [], now)).toThrow(expect.objectContaining({ code: 'UNTRUSTED_KEY' }));
  });
});

describe('verifySnapshot', () => {
  it('accepts a fresh one at or above the serial seen', () => {
    expect(verifySnapshot(snapshot(5, now + 10_000), hubKey.publicKey, now, 5).serial).toBe(5);
    expect(verifySnapshot(snapshot(6, now + 10_000), hubKey.publicKey, now, null).serial).toBe(6);
  });
  it('refuses another signer, expiry, and a lower serial', () => {
    expect(() => verifySnapshot(snapshot(5, now + 10_000, other), hubKey.publicKey, now, null)).toThrow(expect.objectContaining({ code: 'UNTRUSTED_KEY' }));
    expect(() => verifySnapshot(snapshot(5, now - 1), hubKey.publicKey, now, null)).toThrow(expect.objectContaining({ code: 'METADATA_EXPIRED' }));
    expect(() => verifySnapshot(snapshot(4, now + 10_000), hubKey.publicKey, now, 5)).toThrow(expect.objectContaining({ code: 'ROLLBACK_DETECTED' }));
  });
});

describe('applyKeyStatements', () => {
  const b = generateKeyPair();
  const c = generateKeyPair();
  it('follows a chain A → B → C in any order, each link signed by its old key', () => {
    const ab = rotationDocument(publisher.secretKey, b.publicKey, now);
    const bc = rotationDocument(b.secretKey, c.publicKey, now);
    const changes = applyKeyStatements([state(publisher)], [bc, ab]);
    expect(changes.added.map((a) => [a.keyId, a.rotatedFrom])).toEqual([
      [keyIdHex(b.publicKey.keyId), keyIdHex(publisher.publicKey.keyId)],
      [keyIdHex(c.publicKey.keyId), keyIdHex(b.publicKey.keyId)],
    ]);
  });
  it('ignores a rotation signed by anyone but the old key, and statements by unknown keys', () => {
    const forged = rotationDocument(other.secretKey, b.publicKey, now);
    expect(applyKeyStatements([state(publisher)], [forged])).toEqual({ added: [], revoked: [] });
  });
  it('revokes by a trusted key; a revoked key signs nothing more', () => {
    const revokeB = revocationDocument(keyIdHex(b.publicKey.keyId), publisher.secretKey, now);
    const bc = rotationDocument(b.secretKey, c.publicKey, now);
    const changes = applyKeyStatements([state(publisher), state(b)], [revokeB, bc]);
    expect(changes.revoked).toEqual([{ keyId: keyIdHex(b.publicKey.keyId), by: keyIdHex(publisher.publicKey.keyId) }]);
    expect(changes.added).toEqual([]);
    expect(applyKeyStatements([state(publisher), state(b, true)], [bc])).toEqual({ added: [], revoked: [] });
  });
});
