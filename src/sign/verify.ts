// The minisign verifier. Pure: message bytes (or their BLAKE2b-512), the .minisig text and the
// trusted keys in, a typed result out. No I/O, nothing thrown by verifySignature, and every
// path that is not a complete success is a failure (fail-closed).
//
// Each step names the part of minisign's verify() (src/minisign.c) and of
// /work/shared/NOTES.md "Signatures" that it implements.

import { ModelhubError } from '../errors.js';
import { blake2b512, ed25519Verify } from './ed25519.js';
import { decodeSignature, equalBytes, globalSignatureMessage, keyIdHex, type PublicKey } from './minisign-format.js';

export type VerifyFailure = 'malformed' | 'unknown_key' | 'bad_signature' | 'bad_global_signature' | 'unsupported_algorithm';

export type VerifyResult =
  | { ok: true; keyId: string; algorithm: 'ED' | 'Ed'; trustedComment: string }
  | { ok: false; reason: VerifyFailure; message: string; keyId?: string };

export interface VerifyInput {
  /** The signed bytes, or their BLAKE2b-512 digest when the caller hashed while streaming. */
  message: Uint8Array | { blake2b512: Uint8Array };
  /** The `.minisig` text. */
  signature: string;
  /** The keys this verification trusts; the signature's key id picks one. */
  trustedKeys: readonly PublicKey[];
}

const BLAKE2B_512_BYTES = 64;

function fail(reason: VerifyFailure, message: string, keyId?: string): VerifyResult {
  return keyId === undefined ? { ok: false, reason, message } : { ok: false, reason, message, keyId };
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array || (ArrayBuffer.isView(value) && value.constructor.name === 'Uint8Array');
}

/** Verify a minisign signature. Never throws; any doubt is a failure. */
export function verifySignature(input: VerifyInput): VerifyResult {
  try {
    return verifyUnchecked(input);
  } catch (err) {
    // Fail-closed: an exception anywhere (e.g. node:crypto refusing an input) is a rejection.
    const detail = err instanceof Error ? err.message : String(err);
    return fail('malformed', `signature verification could not be completed: ${detail}`);
  }
}

function verifyUnchecked(input: VerifyInput): VerifyResult {
  // Step 0 (caller contract): the trusted keys must be well-formed; a broken trust store must
  // never be mistaken for "no matching key".
  for (const [index, key] of input.trustedKeys.entries()) {
    if (!isBytes(key.keyId) || key.keyId.length !== 8 || !isBytes(key.key) || key.key.length !== 32) {
      return fail('malformed', `trusted key #${index} is malformed (expected an 8-byte key id and a 32-byte key)`);
    }
  }
  if (typeof input.signature !== 'string') {
    return fail('malformed', 'signature: expected the .minisig text');
  }

  // Step 1 (minisign sig_load; NOTES: "Signature file: untrusted comment, base64 of algorithm ‖
  // key id ‖ signature, trusted comment, global signature"): parse the four lines, check both
  // comment prefixes, the decoded lengths (74 and 64 bytes) and the algorithm (`ED` or `Ed`).
  const parsed = decodeSignature(input.signature);
  if (!parsed.ok) return fail(parsed.reason, parsed.message);
  const sig = parsed.value;
  const keyId = keyIdHex(sig.keyId);

  // Step 2 (minisign verify: "Signature key id … but the key id in the public key is …";
  // NOTES: more than one trusted key): the signature names its key by id; it must be one we
  // trust. Only then is any cryptography done.
  const candidates = input.trustedKeys.filter((k) => equalBytes(k.keyId, sig.keyId));
  if (candidates.length === 0) {
    return fail('unknown_key', `signature was made by key ${keyId}, which is not a trusted key`, keyId);
  }

  // Step 3 (minisign message_load; NOTES: "`ED` signs BLAKE2b-512 of the file, `Ed` signs the
  // raw file (legacy)"): the bytes the Ed25519 signature covers.
  let signed: Uint8Array;
  const message = input.message;
  if (sig.algorithm === 'ED') {
    if (isBytes(message)) {
      signed = blake2b512(message);
    } else if (isBytes(message.blake2b512) && message.blake2b512.length === BLAKE2B_512_BYTES) {
      signed = message.blake2b512;
    } else {
      return fail('malformed', `the message prehash must be a ${BLAKE2B_512_BYTES}-byte BLAKE2b-512 digest`, keyId);
    }
  } else {
    if (!isBytes(message)) {
      return fail(
        'bad_signature',
        'legacy "Ed" signature covers the raw message, but only its BLAKE2b-512 digest was given; it cannot be checked',
        keyId,
      );
    }
    signed = message;
  }

  // Step 4 (minisign verify: crypto_sign_verify_detached(sig, message, pk) → "Signature
  // verification failed"): the signature over the message.
  // Step 5 (minisign verify: crypto_sign_verify_detached(global_sig, sig ‖ trusted_comment, pk)
  // → "Comment signature verification failed"; NOTES: "global signature = Ed25519 over (the
  // 64-byte signature ‖ the trusted comment text)"): the trusted comment is authentic only if
  // the global signature holds.
  // Both use node:crypto (ed25519.ts), not libsodium, so that verifying loads no WebAssembly.
  let firstFailure: VerifyResult | undefined;
  for (const key of candidates) {
    if (!ed25519Verify(sig.signature, signed, key.key)) {
      firstFailure ??= fail('bad_signature', `signature by key ${keyId} does not match the message`, keyId);
      continue;
    }
    const globalMessage = globalSignatureMessage(sig.signature, sig.trustedComment);
    if (!ed25519Verify(sig.globalSignature, globalMessage, key.key)) {
      firstFailure ??= fail(
        'bad_global_signature',
        `the global signature by key ${keyId} does not match the trusted comment (the comment was altered)`,
        keyId,
      );
      continue;
    }
    // Step 6: both signatures hold; only now is the trusted comment reported.
    return { ok: true, keyId, algorithm: sig.algorithm, trustedComment: sig.trustedComment };
  }
  return firstFailure ?? fail('bad_signature', `signature by key ${keyId} could not be verified`, keyId);
}

/**
 * verifySignature, throwing on failure: `unknown_key` → ModelhubError('UNTRUSTED_KEY'), every
 * other reason → ModelhubError('SIGNATURE_INVALID'). `details` carries `reason` and `keyId`.
 */
export function verifyOrThrow(input: VerifyInput): { keyId: string; trustedComment: string } {
  const result = verifySignature(input);
  if (result.ok) return { keyId: result.keyId, trustedComment: result.trustedComment };
  const details: Record<string, unknown> = { reason: result.reason };
  if (result.keyId !== undefined) details['keyId'] = result.keyId;
  const code = result.reason === 'unknown_key' ? 'UNTRUSTED_KEY' : 'SIGNATURE_INVALID';
  throw new ModelhubError(code, `${result.reason}: ${result.message}`, { details });
}
