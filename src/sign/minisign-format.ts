// Parse and format the minisign public key and signature formats (secret keys: secret-key.ts).
// Pure: strings and bytes in, typed values out, no I/O. The layouts follow minisign's
// src/minisign.h (PubkeyStruct, SigStruct) and the parsing follows pubkey_load_file / sig_load
// in src/minisign.c, so that everything we accept the real `minisign` accepts too, and
// everything we write it can read.
//
// This module must not load libsodium: the node imports it to verify, and libsodium's RSS and
// start-up cost are kept to the admin side (secret-key.ts, sign.ts, keygen.ts).

import { ModelhubError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// Types

export interface PublicKey {
  /** 8 bytes, as stored in the files (minisign prints them as a little-endian uint64). */
  keyId: Uint8Array;
  /** 32-byte Ed25519 public key. */
  key: Uint8Array;
}

export interface SecretKey {
  keyId: Uint8Array;
  /** 64 bytes in libsodium form: seed (32) ‖ public key (32). */
  secretKey: Uint8Array;
  /** 32 bytes; equal to the last 32 bytes of `secretKey`. */
  publicKey: Uint8Array;
}

export interface MinisignSignature {
  /** `ED`: Ed25519 over BLAKE2b-512(file) (current default); `Ed`: over the raw file (legacy). */
  algorithm: 'ED' | 'Ed';
  keyId: Uint8Array;
  /** 64-byte Ed25519 signature. */
  signature: Uint8Array;
  /** Text after `trusted comment: `; covered by the global signature. */
  trustedComment: string;
  /** 64-byte Ed25519 signature over (signature ‖ UTF-8 bytes of trustedComment). */
  globalSignature: Uint8Array;
  /** Text after `untrusted comment: `; covered by nothing. */
  untrustedComment: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: 'malformed'; message: string };

/**
 * Like ParseResult, but keeps an unknown signature algorithm apart from other damage so the
 * verifier can report `unsupported_algorithm`. `parseSignature` folds it into `malformed`.
 */
export type SignatureParseResult =
  | ParseResult<MinisignSignature>
  | { ok: false; reason: 'unsupported_algorithm'; message: string };

// ---------------------------------------------------------------------------------------------
// Constants (src/minisign.h)

export const UNTRUSTED_COMMENT_PREFIX = 'untrusted comment: ';
export const TRUSTED_COMMENT_PREFIX = 'trusted comment: ';
/** The untrusted comment modelhub writes into signatures. */
export const DEFAULT_SIGNATURE_COMMENT = 'signature from modelhub secret key';

/**
 * minisign reads comment lines with `fgets(buf, COMMENTMAXBYTES = 1024)`: a line (with its
 * newline) longer than 1023 bytes spills into the next read and breaks the file.
 */
export const MAX_COMMENT_LINE_BYTES = 1023;
/**
 * minisign refuses to sign a trusted comment of `TRUSTEDCOMMENTMAXBYTES (8192) -
 * sizeof "trusted comment: " (18)` bytes or more, and reads the line with an 8192-byte fgets.
 */
export const MAX_TRUSTED_COMMENT_BYTES = 8192 - (TRUSTED_COMMENT_PREFIX.length + 1) - 1; // 8173

/** Public keys, secret keys and legacy signatures. */
export const SIGALG = 'Ed';
const SIGALG_HASHED = 'ED'; // signatures over BLAKE2b-512 of the message

export const KEY_ID_BYTES = 8;
export const PUBLIC_KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;

/** sig_alg (2) ‖ key id (8) ‖ public key (32) */
const PUBKEY_STRUCT_BYTES = 2 + KEY_ID_BYTES + PUBLIC_KEY_BYTES; // 42
/** sig_alg (2) ‖ key id (8) ‖ signature (64) */
const SIG_STRUCT_BYTES = 2 + KEY_ID_BYTES + SIGNATURE_BYTES; // 74

// ---------------------------------------------------------------------------------------------
// Small helpers (the exported ones are shared with secret-key.ts, not part of the sign API)

const utf8 = new TextEncoder();

/** UTF-8 bytes of a string, as minisign hashes and signs comment text. */
export function utf8Bytes(text: string): Uint8Array {
  return utf8.encode(text);
}

export function malformed<T>(message: string): ParseResult<T> {
  return { ok: false, reason: 'malformed', message };
}

export function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, end));
}

export function printable(alg: string): string {
  return JSON.stringify(alg);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict standard base64 with padding (sodium_base64_VARIANT_ORIGINAL); canonical only. */
export function decodeBase64(text: string): Uint8Array | undefined {
  if (text.length === 0 || !BASE64.test(text)) return undefined;
  const decoded = Buffer.from(text, 'base64');
  if (decoded.toString('base64') !== text) return undefined; // non-zero padding bits
  return new Uint8Array(decoded); // a private copy, not a view of Buffer's shared pool
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Split a minisign file into lines the way fgets + trim() sees them: `\n` ends a line, a
 * trailing `\r` is dropped (files edited on Windows), a leading BOM is ignored and trailing
 * empty lines do not count.
 */
export function splitLines(text: string): string[] {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const lines = body.split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export function commentLineTooLong(line: string): boolean {
  return utf8Bytes(line).length + 1 > MAX_COMMENT_LINE_BYTES;
}

export function checkLength(what: string, bytes: Uint8Array, expected: number): void {
  if (bytes.length !== expected) {
    throw new ModelhubError('INVALID_REQUEST', `${what} must be ${expected} bytes, got ${bytes.length}`);
  }
}

/** Reasons a comment cannot be written on one minisign line; undefined when it can. */
function commentProblem(comment: string): string | undefined {
  if (/[\r\n]/.test(comment)) return 'must not contain line breaks';
  if (comment.includes('\0')) return 'must not contain NUL characters';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Key ids

/**
 * The key id as minisign prints it: `%016" PRIX64` of `le64_load(keynum)`, i.e. the 8 bytes
 * reversed, as 16 uppercase hex digits.
 */
export function keyIdHex(keyId: Uint8Array): string {
  if (keyId.length !== KEY_ID_BYTES) {
    throw new ModelhubError('INVALID_REQUEST', `a key id must be ${KEY_ID_BYTES} bytes, got ${keyId.length}`);
  }
  let hex = '';
  for (let i = keyId.length - 1; i >= 0; i--) hex += (keyId[i] ?? 0).toString(16).padStart(2, '0');
  return hex.toUpperCase();
}

/**
 * A key id typed or copied by a user, in keyIdHex form, or undefined if it is not one.
 * minisign 0.11 prints ids without leading zeros (`%" PRIX64`, e.g. `5357D0D5DA878B3`) where
 * 0.12 pads them to 16 digits; both, in either case, name the same key.
 */
export function normalizeKeyIdHex(text: string): string | undefined {
  const trimmed = text.trim();
  if (!/^[0-9A-Fa-f]{1,16}$/.test(trimmed)) return undefined;
  return trimmed.toUpperCase().padStart(16, '0');
}

// ---------------------------------------------------------------------------------------------
// Public keys

/**
 * Parse a minisign public key: the file (`untrusted comment: …` then base64), or the bare
 * base64 line that `minisign -P` takes.
 */
export function parsePublicKey(text: string): ParseResult<PublicKey> {
  const lines = splitLines(text);
  let encoded: string;
  if (lines.length === 0) return malformed('public key: the text is empty');
  const first = lines[0] ?? '';
  if (lines.length === 1) {
    if (first.startsWith(UNTRUSTED_COMMENT_PREFIX)) {
      return malformed('public key: the comment line is there but the base64 key line after it is missing');
    }
    encoded = first.trim(); // bare key, as given to `minisign -P`
  } else {
    if (!first.startsWith(UNTRUSTED_COMMENT_PREFIX)) {
      return malformed(`public key: the first line must start with "${UNTRUSTED_COMMENT_PREFIX}"`);
    }
    if (commentLineTooLong(first)) {
      return malformed(`public key: the comment line is longer than minisign reads (${MAX_COMMENT_LINE_BYTES} bytes)`);
    }
    const second = lines[1] ?? '';
    if (second.startsWith(UNTRUSTED_COMMENT_PREFIX) || second.startsWith(TRUSTED_COMMENT_PREFIX)) {
      return malformed('public key: line 2 must be the base64 key, found another comment line');
    }
    if (lines.length > 2) return malformed('public key: unexpected content after the key line');
    encoded = second.trim();
  }
  const bytes = decodeBase64(encoded);
  if (bytes === undefined) return malformed('public key: the key line is not valid base64');
  if (bytes.length !== PUBKEY_STRUCT_BYTES) {
    return malformed(`public key: the key decodes to ${bytes.length} bytes, expected ${PUBKEY_STRUCT_BYTES}`);
  }
  const alg = ascii(bytes, 0, 2);
  if (alg !== SIGALG) {
    return malformed(`public key: unsupported signature algorithm ${printable(alg)} (expected "Ed")`);
  }
  return {
    ok: true,
    value: { keyId: bytes.slice(2, 2 + KEY_ID_BYTES), key: bytes.slice(2 + KEY_ID_BYTES) },
  };
}

/** `untrusted comment: minisign public key <KEYID>\n<base64>\n`, as `minisign -G` writes it. */
export function formatPublicKey(pk: PublicKey): string {
  checkLength('public key id', pk.keyId, KEY_ID_BYTES);
  checkLength('public key', pk.key, PUBLIC_KEY_BYTES);
  const struct = concat(utf8Bytes(SIGALG), pk.keyId, pk.key);
  return `${UNTRUSTED_COMMENT_PREFIX}minisign public key ${keyIdHex(pk.keyId)}\n${encodeBase64(struct)}\n`;
}

/** The line minisign takes after `-P`. */
export function publicKeyBase64(pk: PublicKey): string {
  checkLength('public key id', pk.keyId, KEY_ID_BYTES);
  checkLength('public key', pk.key, PUBLIC_KEY_BYTES);
  return encodeBase64(concat(utf8Bytes(SIGALG), pk.keyId, pk.key));
}

// ---------------------------------------------------------------------------------------------
// Signatures

/**
 * Parse a `.minisig`, keeping an unknown algorithm apart (`unsupported_algorithm`). Steps in
 * the order of minisign's sig_load.
 */
export function decodeSignature(text: string): SignatureParseResult {
  const lines = splitLines(text);
  if (lines.length === 0) return malformed('signature: the text is empty');
  // 1. Line 1 must be the untrusted comment.
  const untrustedLine = lines[0] ?? '';
  if (!untrustedLine.startsWith(UNTRUSTED_COMMENT_PREFIX)) {
    if (untrustedLine.startsWith(TRUSTED_COMMENT_PREFIX)) {
      return malformed(`signature: line 1 is the trusted comment; it must be the "${UNTRUSTED_COMMENT_PREFIX}" line`);
    }
    return malformed(`signature: line 1 must start with "${UNTRUSTED_COMMENT_PREFIX}"`);
  }
  if (commentLineTooLong(untrustedLine)) {
    return malformed(`signature: the untrusted comment line is longer than minisign reads (${MAX_COMMENT_LINE_BYTES} bytes)`);
  }
  if (lines.length < 4) {
    return malformed(`signature: truncated, expected 4 lines (comment, signature, trusted comment, global signature), found ${lines.length}`);
  }
  if (lines.length > 4) return malformed('signature: unexpected content after the global signature line');
  const sigLine = (lines[1] ?? '').trim();
  const trustedLine = lines[2] ?? '';
  const globalLine = (lines[3] ?? '').trim();
  // 2. Line 2 is the signature, not a comment.
  if (sigLine.startsWith(UNTRUSTED_COMMENT_PREFIX.trim()) || sigLine.startsWith(TRUSTED_COMMENT_PREFIX.trim())) {
    return malformed('signature: line 2 must be the base64 signature, found a comment line');
  }
  // 3. Line 3 must be the trusted comment.
  if (!trustedLine.startsWith(TRUSTED_COMMENT_PREFIX)) {
    return malformed(`signature: line 3 must start with "${TRUSTED_COMMENT_PREFIX}"`);
  }
  const trustedComment = trustedLine.slice(TRUSTED_COMMENT_PREFIX.length);
  if (trustedComment.includes('\r') || trustedComment.includes('\0')) {
    return malformed('signature: the trusted comment contains a carriage return or NUL character');
  }
  if (utf8Bytes(trustedComment).length > MAX_TRUSTED_COMMENT_BYTES) {
    return malformed(`signature: the trusted comment is longer than minisign allows (${MAX_TRUSTED_COMMENT_BYTES} bytes)`);
  }
  // 4. The signature struct: base64 of sig_alg ‖ key id ‖ signature.
  const sigBytes = decodeBase64(sigLine);
  if (sigBytes === undefined) return malformed('signature: the signature line (line 2) is not valid base64');
  if (sigBytes.length !== SIG_STRUCT_BYTES) {
    return malformed(`signature: the signature line decodes to ${sigBytes.length} bytes, expected ${SIG_STRUCT_BYTES}`);
  }
  // 5. The algorithm: `Ed` (legacy, raw message) or `ED` (BLAKE2b-512 prehash).
  const algorithm = ascii(sigBytes, 0, 2);
  if (algorithm !== SIGALG && algorithm !== SIGALG_HASHED) {
    return {
      ok: false,
      reason: 'unsupported_algorithm',
      message: `signature: unsupported signature algorithm ${printable(algorithm)} (expected "ED" or "Ed")`,
    };
  }
  // 6. The global signature: 64 bytes.
  const globalSignature = decodeBase64(globalLine);
  if (globalSignature === undefined) {
    return malformed('signature: the global signature line (line 4) is not valid base64');
  }
  if (globalSignature.length !== SIGNATURE_BYTES) {
    return malformed(`signature: the global signature decodes to ${globalSignature.length} bytes, expected ${SIGNATURE_BYTES}`);
  }
  return {
    ok: true,
    value: {
      algorithm,
      keyId: sigBytes.slice(2, 2 + KEY_ID_BYTES),
      signature: sigBytes.slice(2 + KEY_ID_BYTES),
      trustedComment,
      globalSignature,
      untrustedComment: untrustedLine.slice(UNTRUSTED_COMMENT_PREFIX.length),
    },
  };
}

/** Parse a `.minisig`; an unknown algorithm is reported as `malformed`. */
export function parseSignature(text: string): ParseResult<MinisignSignature> {
  const result = decodeSignature(text);
  if (result.ok) return result;
  return { ok: false, reason: 'malformed', message: result.message };
}

/** The 4-line `.minisig` text, with a trailing newline, as `minisign -S` writes it. */
export function formatSignature(sig: MinisignSignature): string {
  if (sig.algorithm !== SIGALG && sig.algorithm !== SIGALG_HASHED) {
    throw new ModelhubError('INVALID_REQUEST', `signature: unsupported algorithm ${printable(String(sig.algorithm))}`);
  }
  checkLength('signature key id', sig.keyId, KEY_ID_BYTES);
  checkLength('signature', sig.signature, SIGNATURE_BYTES);
  checkLength('global signature', sig.globalSignature, SIGNATURE_BYTES);
  const untrustedProblem = commentProblem(sig.untrustedComment);
  if (untrustedProblem !== undefined) {
    throw new ModelhubError('INVALID_REQUEST', `the untrusted comment ${untrustedProblem}`);
  }
  const untrustedLine = UNTRUSTED_COMMENT_PREFIX + sig.untrustedComment;
  if (commentLineTooLong(untrustedLine)) {
    throw new ModelhubError('INVALID_REQUEST', `the untrusted comment line is longer than minisign reads (${MAX_COMMENT_LINE_BYTES} bytes)`);
  }
  assertTrustedComment(sig.trustedComment);
  const struct = concat(utf8Bytes(sig.algorithm), sig.keyId, sig.signature);
  return (
    `${untrustedLine}\n${encodeBase64(struct)}\n` +
    `${TRUSTED_COMMENT_PREFIX}${sig.trustedComment}\n${encodeBase64(sig.globalSignature)}\n`
  );
}

/**
 * A trusted comment must fit on one line and within minisign's limit; otherwise
 * ModelhubError('INVALID_REQUEST').
 */
export function assertTrustedComment(trustedComment: string): void {
  const problem = commentProblem(trustedComment);
  if (problem !== undefined) throw new ModelhubError('INVALID_REQUEST', `the trusted comment ${problem}`);
  const length = utf8Bytes(trustedComment).length;
  if (length > MAX_TRUSTED_COMMENT_BYTES) {
    throw new ModelhubError(
      'INVALID_REQUEST',
      `the trusted comment is ${length} bytes; minisign allows at most ${MAX_TRUSTED_COMMENT_BYTES}`,
    );
  }
}

/** signature ‖ trusted comment bytes: what the global signature covers. */
export function globalSignatureMessage(signature: Uint8Array, trustedComment: string): Uint8Array {
  return concat(signature, utf8Bytes(trustedComment));
}

/** Constant-time equality for byte strings of equal length. */
export { equalBytes };
