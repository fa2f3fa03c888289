// Parse and format minisign secret keys (SeckeyStruct in src/minisign.h, seckey_load in
// src/minisign.c). Kept apart from minisign-format.ts because it needs libsodium (BLAKE2b-256
// checksum, seed → key pair), which only the admin side may load; the node never reads a
// secret key.

import { ModelhubError } from '../errors.js';
import {
  KEY_ID_BYTES,
  MAX_COMMENT_LINE_BYTES,
  PUBLIC_KEY_BYTES,
  SIGALG,
  TRUSTED_COMMENT_PREFIX,
  UNTRUSTED_COMMENT_PREFIX,
  ascii,
  checkLength,
  commentLineTooLong,
  concat,
  decodeBase64,
  encodeBase64,
  equalBytes,
  malformed,
  printable,
  splitLines,
  utf8Bytes,
  type ParseResult,
  type SecretKey,
} from './minisign-format.js';
import { sodium } from './sodium.js';

/** The untrusted comment modelhub writes into secret key files (minisign ignores it). */
export const SECRET_KEY_COMMENT = 'minisign unencrypted secret key';

const KDFALG = 'Sc'; // scrypt-encrypted secret key
const CHKALG = 'B2'; // BLAKE2b-256 checksum of the secret key

const SECRET_KEY_BYTES = 64;
const CHECKSUM_BYTES = 32;
const KDF_SALT_BYTES = 32;

/**
 * sig_alg (2) ‖ kdf_alg (2) ‖ chk_alg (2) ‖ kdf_salt (32) ‖ kdf_opslimit_le (8) ‖
 * kdf_memlimit_le (8) ‖ key id (8) ‖ secret key (64) ‖ checksum (32)
 */
const SECKEY_STRUCT_BYTES = 2 + 2 + 2 + KDF_SALT_BYTES + 8 + 8 + KEY_ID_BYTES + SECRET_KEY_BYTES + CHECKSUM_BYTES; // 158
const SECKEY_KEYNUM_OFFSET = 2 + 2 + 2 + KDF_SALT_BYTES + 8 + 8; // 54

function isAllZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

/** minisign's seckey_compute_chk: BLAKE2b-256(sig_alg ‖ key id ‖ secret key). */
function secretKeyChecksum(keyId: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return sodium.crypto_generichash(CHECKSUM_BYTES, concat(utf8Bytes(SIGALG), keyId, secretKey), null);
}

/**
 * Parse an unencrypted minisign secret key (kdf_alg all zero, as `minisign -G -W` writes).
 * Encrypted keys (kdf_alg `Sc`) are refused: modelhub never asks for passwords.
 */
export function parseSecretKey(text: string): ParseResult<SecretKey> {
  const lines = splitLines(text);
  if (lines.length === 0) return malformed('secret key: the text is empty');
  const first = lines[0] ?? '';
  if (!first.startsWith(UNTRUSTED_COMMENT_PREFIX)) {
    return malformed(`secret key: the first line must start with "${UNTRUSTED_COMMENT_PREFIX}"`);
  }
  if (commentLineTooLong(first)) {
    return malformed(`secret key: the comment line is longer than minisign reads (${MAX_COMMENT_LINE_BYTES} bytes)`);
  }
  if (lines.length < 2) return malformed('secret key: the base64 key line after the comment line is missing');
  const second = lines[1] ?? '';
  if (second.startsWith(UNTRUSTED_COMMENT_PREFIX) || second.startsWith(TRUSTED_COMMENT_PREFIX)) {
    return malformed('secret key: line 2 must be the base64 key, found another comment line');
  }
  if (lines.length > 2) return malformed('secret key: unexpected content after the key line');
  const bytes = decodeBase64(second.trim());
  if (bytes === undefined) return malformed('secret key: the key line is not valid base64');
  if (bytes.length !== SECKEY_STRUCT_BYTES) {
    return malformed(`secret key: the key decodes to ${bytes.length} bytes, expected ${SECKEY_STRUCT_BYTES}`);
  }
  // seckey_load: sig_alg, then chk_alg, then kdf_alg.
  const sigAlg = ascii(bytes, 0, 2);
  if (sigAlg !== SIGALG) {
    return malformed(`secret key: unsupported signature algorithm ${printable(sigAlg)} (expected "Ed")`);
  }
  const chkAlg = ascii(bytes, 4, 6);
  if (chkAlg !== CHKALG) {
    return malformed(`secret key: unsupported checksum algorithm ${printable(chkAlg)} (expected "B2")`);
  }
  const kdfAlg = bytes.subarray(2, 4);
  if (ascii(bytes, 2, 4) === KDFALG) {
    return malformed('encrypted secret keys are not supported; create one with minisign -G -W or modelhub keygen');
  }
  if (!isAllZero(kdfAlg)) {
    return malformed(`secret key: unsupported key derivation function ${printable(ascii(bytes, 2, 4))}`);
  }
  let offset = SECKEY_KEYNUM_OFFSET;
  const keyId = bytes.slice(offset, (offset += KEY_ID_BYTES));
  const secretKey = bytes.slice(offset, (offset += SECRET_KEY_BYTES));
  const checksum = bytes.slice(offset, (offset += CHECKSUM_BYTES));
  // `minisign -G -W` computes the checksum only when it encrypts, so its unencrypted keys carry
  // 32 zero bytes; `minisign -C -W` and modelhub write the real one. A non-zero checksum must
  // match.
  if (!isAllZero(checksum) && !equalBytes(checksum, secretKeyChecksum(keyId, secretKey))) {
    return malformed('secret key: checksum mismatch, the key is corrupted');
  }
  // Whatever the checksum, the public half must be the one the seed derives.
  const seed = secretKey.subarray(0, 32);
  const publicKey = secretKey.slice(32);
  if (!equalBytes(sodium.crypto_sign_seed_keypair(seed).publicKey, publicKey)) {
    return malformed('secret key: the public half does not match the seed, the key is corrupted');
  }
  return { ok: true, value: { keyId, secretKey, publicKey } };
}

/**
 * The unencrypted form `minisign -G -W` writes (kdf_alg, salt and limits zero), readable by
 * `minisign -S -s FILE` without a password. Unlike `minisign -G -W` it fills in the checksum
 * (as `minisign -C -W` does), so corruption is detected.
 */
export function formatSecretKey(sk: SecretKey): string {
  checkLength('secret key id', sk.keyId, KEY_ID_BYTES);
  checkLength('secret key', sk.secretKey, SECRET_KEY_BYTES);
  checkLength('secret key public half', sk.publicKey, PUBLIC_KEY_BYTES);
  if (!equalBytes(sk.secretKey.subarray(32), sk.publicKey)) {
    throw new ModelhubError('INVALID_REQUEST', 'secret key: publicKey is not the public half of secretKey');
  }
  const struct = concat(
    utf8Bytes(SIGALG),
    new Uint8Array(2), // kdf_alg: none
    utf8Bytes(CHKALG),
    new Uint8Array(KDF_SALT_BYTES + 8 + 8), // kdf_salt, kdf_opslimit_le, kdf_memlimit_le
    sk.keyId,
    sk.secretKey,
    secretKeyChecksum(sk.keyId, sk.secretKey),
  );
  return `${UNTRUSTED_COMMENT_PREFIX}${SECRET_KEY_COMMENT}\n${encodeBase64(struct)}\n`;
}
