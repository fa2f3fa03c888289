// Signing in minisign's format. Signatures are `ED` (Ed25519 over BLAKE2b-512 of the message),
// the default of current minisign; files are hashed while streaming, never read whole.

import { createReadStream } from 'node:fs';
import { basename } from 'node:path';

import { ModelhubError } from '../errors.js';
import { fileError } from './files.js';
import {
  DEFAULT_SIGNATURE_COMMENT,
  assertTrustedComment,
  formatSignature,
  globalSignatureMessage,
  type MinisignSignature,
  type SecretKey,
} from './minisign-format.js';
import { sodium } from './sodium.js';

const BLAKE2B_512_BYTES = 64;
const READ_CHUNK_BYTES = 1024 * 1024;

/** BLAKE2b-512 (unkeyed), the prehash of `ED` signatures. */
export function blake2b512(bytes: Uint8Array): Uint8Array {
  return sodium.crypto_generichash(BLAKE2B_512_BYTES, bytes, null);
}

/** BLAKE2b-512 of a file, streamed in 1 MiB chunks. */
export async function blake2b512File(path: string): Promise<Uint8Array> {
  const state = sodium.crypto_generichash_init(null, BLAKE2B_512_BYTES);
  let finished = false;
  try {
    const stream = createReadStream(path, { highWaterMark: READ_CHUNK_BYTES });
    for await (const chunk of stream) {
      sodium.crypto_generichash_update(state, chunk as Buffer);
    }
    finished = true;
    return sodium.crypto_generichash_final(state, BLAKE2B_512_BYTES);
  } catch (err) {
    throw fileError(path, err);
  } finally {
    // final() also frees the hashing state inside libsodium's heap: do it on failure too.
    if (!finished) {
      try {
        sodium.crypto_generichash_final(state, BLAKE2B_512_BYTES);
      } catch {
        // the state is already gone; nothing to release
      }
    }
  }
}

function assertSecretKey(sk: SecretKey): void {
  if (sk.keyId.length !== 8 || sk.secretKey.length !== 64) {
    throw new ModelhubError('INVALID_REQUEST', 'secret key: expected an 8-byte key id and a 64-byte Ed25519 secret key');
  }
}

function sign(algorithm: 'ED' | 'Ed', signed: Uint8Array, sk: SecretKey, trustedComment: string): MinisignSignature {
  assertTrustedComment(trustedComment);
  assertSecretKey(sk);
  const signature = sodium.crypto_sign_detached(signed, sk.secretKey);
  const globalSignature = sodium.crypto_sign_detached(globalSignatureMessage(signature, trustedComment), sk.secretKey);
  return {
    algorithm,
    keyId: sk.keyId.slice(),
    signature,
    trustedComment,
    globalSignature,
    untrustedComment: DEFAULT_SIGNATURE_COMMENT,
  };
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Sign a BLAKE2b-512 digest (algorithm `ED`). */
export function signPrehashed(prehash: Uint8Array, sk: SecretKey, trustedComment: string): MinisignSignature {
  if (prehash.length !== BLAKE2B_512_BYTES) {
    throw new ModelhubError('INVALID_REQUEST', `the prehash must be a ${BLAKE2B_512_BYTES}-byte BLAKE2b-512 digest, got ${prehash.length} bytes`);
  }
  return sign('ED', prehash, sk, trustedComment);
}

/**
 * Sign bytes in memory (algorithm `ED`). The default trusted comment is
 * `timestamp:<unix seconds>\thashed` (there is no file name).
 */
export function signBytes(message: Uint8Array, sk: SecretKey, trustedComment?: string): MinisignSignature {
  return signPrehashed(blake2b512(message), sk, trustedComment ?? `timestamp:${nowSeconds()}\thashed`);
}

/**
 * Sign bytes with the legacy `Ed` algorithm (Ed25519 over the raw message, `minisign -S -l`).
 * Only for compatibility with old verifiers; modelhub itself signs `ED`.
 */
export function signBytesLegacy(message: Uint8Array, sk: SecretKey, trustedComment?: string): MinisignSignature {
  return sign('Ed', message, sk, trustedComment ?? `timestamp:${nowSeconds()}`);
}

/**
 * Sign a file (algorithm `ED`, streamed) and return the `.minisig` text. The default trusted
 * comment is minisign's: `timestamp:<unix seconds>\tfile:<basename>\thashed`.
 */
export async function signFile(path: string, sk: SecretKey, opts: { trustedComment?: string } = {}): Promise<string> {
  const trustedComment = opts.trustedComment ?? `timestamp:${nowSeconds()}\tfile:${basename(path)}\thashed`;
  // Check everything that does not need the file before reading it.
  assertTrustedComment(trustedComment);
  assertSecretKey(sk);
  const prehash = await blake2b512File(path);
  return formatSignature(signPrehashed(prehash, sk, trustedComment));
}
