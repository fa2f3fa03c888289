// The signing module: minisign-compatible keys and signatures (SPEC §3).
export { sodium } from './sodium.js';
export {
  DEFAULT_SIGNATURE_COMMENT,
  MAX_TRUSTED_COMMENT_BYTES,
  TRUSTED_COMMENT_PREFIX,
  UNTRUSTED_COMMENT_PREFIX,
  decodeSignature,
  formatPublicKey,
  formatSignature,
  keyIdHex,
  normalizeKeyIdHex,
  parsePublicKey,
  parseSignature,
  publicKeyBase64,
  type MinisignSignature,
  type ParseResult,
  type PublicKey,
  type SecretKey,
  type SignatureParseResult,
} from './minisign-format.js';
export { formatSecretKey, parseSecretKey } from './secret-key.js';
export { verifyOrThrow, verifySignature, type VerifyFailure, type VerifyInput, type VerifyResult } from './verify.js';
export { blake2b512, blake2b512File, signBytes, signBytesLegacy, signFile, signPrehashed } from './sign.js';
export { generateKeyPair, publicKeyOf, readPublicKeyFile, readSecretKeyFile, writeKeyPair } from './keygen.js';
