// Writing the signed statements an admin makes: the delegation of a hub's metadata key, a key
// rotation (signed by the old key) and a revocation. Each is canonical JSON signed as it is, in
// minisign's format, so `minisign -V -p KEY.pub -m FILE` verifies it.
import { ModelhubError } from '../errors.js';
import { formatSignature, keyIdHex, publicKeyBase64, type PublicKey, type SecretKey } from '../sign/minisign-format.js';
import { signBytes } from '../sign/sign.js';
import { canonicalJson, type SignedDocument } from './formats.js';

function signed(value: object, sk: SecretKey, comment: string): SignedDocument {
  const text = canonicalJson(value);
  return { text, signature: formatSignature(signBytes(Buffer.from(text, 'utf8'), sk, comment)) };
}

export function delegationDocument(hubKey: PublicKey, publisher: SecretKey, now: number, validMs: number): SignedDocument {
  if (validMs <= 0) throw new ModelhubError('INVALID_REQUEST', '--expires must be in the future');
  return signed(
    {
      type: 'modelhub-delegation',
      schema: 1,
      role: 'metadata',
      key: publicKeyBase64(hubKey),
      key_id: keyIdHex(hubKey.keyId),
      issued_at: new Date(now).toISOString(),
      expires: new Date(now + validMs).toISOString(),
    },
    publisher,
    `modelhub delegation of metadata key ${keyIdHex(hubKey.keyId)}`,
  );
}

export function rotationDocument(oldKey: SecretKey, newKey: PublicKey, now: number): SignedDocument {
  return signed(
    { type: 'modelhub-key-rotation', schema: 1, old_key_id: keyIdHex(oldKey.keyId), new_key: publicKeyBase64(newKey), new_key_id: keyIdHex(newKey.keyId), issued_at: new Date(now).toISOString() },
    oldKey,
    `modelhub rotation ${keyIdHex(oldKey.keyId)} -> ${keyIdHex(newKey.keyId)}`,
  );
}

export function revocationDocument(keyId: string, signer: SecretKey, now: number, reason?: string): SignedDocument {
  return signed(
    { type: 'modelhub-key-revocation', schema: 1, key_id: keyId, issued_at: new Date(now).toISOString(), ...(reason !== undefined ? { reason } : {}) },
    signer,
    `modelhub revocation of ${keyId}`,
  );
}
