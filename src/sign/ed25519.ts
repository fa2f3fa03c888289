// The two primitives a node needs to check signatures — Ed25519 verification and BLAKE2b-512 —
// from node:crypto (OpenSSL) rather than libsodium. Loading libsodium-wrappers costs ~13 MB of
// RSS and ~25 ms of start-up, which the installer's 150 MB peak-RSS budget and the CLI's start
// time cannot spare; signing and key generation (admin side) keep using libsodium.
//
// OpenSSL's Ed25519 verification follows RFC 8032 §5.1.7 (cofactorless, s < L, R compared as
// encoded), which accepts the same signatures as libsodium's crypto_sign_verify_detached for
// every honestly generated key. The checks where the two differ (libsodium also refuses
// small-order or non-canonical public keys) matter only for attacker-chosen keys, and the keys
// passed here are only ever trusted keys. test/sign/ed25519.test.ts compares both.

import { createHash, createPublicKey, verify } from 'node:crypto';

const PUBLIC_KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;

/**
 * Ed25519 verification of a detached signature with a raw 32-byte public key. Never throws:
 * wrong lengths, a key that is not a curve point or anything OpenSSL refuses give false.
 */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBLIC_KEY_BYTES) return false;
  try {
    const x = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64url');
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

/** BLAKE2b-512 (unkeyed), the prehash of minisign's `ED` signatures. */
export function blake2b512(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('blake2b512').update(bytes).digest());
}
