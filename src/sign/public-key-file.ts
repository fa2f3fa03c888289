// Reading key files. Apart from keygen.ts so that the node (trust store) can read public keys
// without loading libsodium, which keygen.ts needs for generation and secret keys.

import { ModelhubError } from '../errors.js';
import { readSmallTextFile } from './files.js';
import { parsePublicKey, type ParseResult, type PublicKey } from './minisign-format.js';

/** Key files are a few hundred bytes; anything much larger is not a key. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

/** Read a small key file and parse it; a parse failure is ModelhubError('INVALID_REQUEST'). */
export async function readKeyFile<T>(path: string, parse: (text: string) => ParseResult<T>): Promise<T> {
  const result = parse(await readSmallTextFile(path, MAX_KEY_FILE_BYTES));
  if (result.ok) return result.value;
  throw new ModelhubError('INVALID_REQUEST', `${path}: ${result.message}`, {
    details: { path, reason: result.reason },
  });
}

/** Read a minisign public key file (or a file holding the bare base64 key). */
export async function readPublicKeyFile(path: string): Promise<PublicKey> {
  return readKeyFile(path, parsePublicKey);
}
