// Key pairs in minisign's format: generation, writing `BASE.pub` / `BASE.key`, reading them.

import { dirname } from 'node:path';

import { discard, alreadyExists, commitFile, ensureDirectory, pathExists, prepareFile, type PreparedFile } from './files.js';
import { formatPublicKey, keyIdHex, type PublicKey, type SecretKey } from './minisign-format.js';
import { readKeyFile } from './public-key-file.js';
import { formatSecretKey, parseSecretKey } from './secret-key.js';
import { sodium } from './sodium.js';

// Public keys are read by the node without libsodium (public-key-file.ts); re-exported here
// for the admin code and tests that import it from keygen.js.
export { readPublicKeyFile } from './public-key-file.js';

/** A fresh Ed25519 key pair with a random 8-byte key id, as `minisign -G` makes. */
export function generateKeyPair(): { publicKey: PublicKey; secretKey: SecretKey } {
  const keyId = sodium.randombytes_buf(8);
  const pair = sodium.crypto_sign_keypair();
  return {
    publicKey: { keyId: keyId.slice(), key: pair.publicKey.slice() },
    secretKey: { keyId, secretKey: pair.privateKey, publicKey: pair.publicKey },
  };
}

/** The public key belonging to a secret key. */
export function publicKeyOf(sk: SecretKey): PublicKey {
  return { keyId: sk.keyId.slice(), key: sk.publicKey.slice() };
}

/**
 * Generate a key pair and write `BASE.pub` (0644) and `BASE.key` (0600, unencrypted, usable by
 * `minisign -S -s BASE.key`). Each file goes temp file → fsync → rename. Existing files are
 * never replaced unless `force` (ModelhubError('ALREADY_EXISTS')).
 */
export async function writeKeyPair(
  base: string,
  opts: { force?: boolean } = {},
): Promise<{ publicKeyPath: string; secretKeyPath: string; keyId: string }> {
  const force = opts.force ?? false;
  const publicKeyPath = `${base}.pub`;
  const secretKeyPath = `${base}.key`;
  if (!force) {
    for (const path of [secretKeyPath, publicKeyPath]) {
      if (await pathExists(path)) throw alreadyExists(path);
    }
  }
  await ensureDirectory(dirname(secretKeyPath));
  const { publicKey, secretKey } = generateKeyPair();

  const prepared: PreparedFile[] = [];
  try {
    prepared.push(await prepareFile(secretKeyPath, formatSecretKey(secretKey), 0o600));
    prepared.push(await prepareFile(publicKeyPath, formatPublicKey(publicKey), 0o644));
  } catch (err) {
    await Promise.all(prepared.map((p) => discard(p.tempPath)));
    throw err;
  }
  const [secretFile, publicFile] = prepared as [PreparedFile, PreparedFile];

  try {
    await commitFile(secretFile, force);
  } catch (err) {
    await discard(publicFile.tempPath);
    throw err;
  }
  try {
    await commitFile(publicFile, force);
  } catch (err) {
    // Do not leave a secret key without its public key behind (only one we created ourselves).
    if (!force) await discard(secretKeyPath);
    throw err;
  }
  return { publicKeyPath, secretKeyPath, keyId: keyIdHex(publicKey.keyId) };
}

/** Read an unencrypted minisign secret key file. */
export async function readSecretKeyFile(path: string): Promise<SecretKey> {
  return readKeyFile(path, parseSecretKey);
}
