// The hub's online metadata key: a minisign key pair whose secret half signs the catalog
// snapshot. Loaded from --metadata-key, or created as <storage>/metadata.key (+ .pub) on the
// first start (SPEC §11). Mirrors copy services/ and models/ only, never this file.
import { access } from 'node:fs/promises';
import { ModelhubError } from '../../src/errors.js';
import { publicKeyOf, readSecretKeyFile, writeKeyPair } from '../../src/sign/keygen.js';
import type { PublicKey, SecretKey } from '../../src/sign/minisign-format.js';

export interface MetadataKey {
  secretKey: SecretKey;
  publicKey: PublicKey;
  file: string;
}

export async function loadOrCreateMetadataKey(file: string, create: boolean): Promise<MetadataKey> {
  const present = await access(file).then(
    () => true,
    () => false,
  );
  if (!present && create) {
    // Two hubs starting on one storage folder may both try; the second reads the first's key.
    await writeKeyPair(file.replace(/\.key$/, '')).catch((err: unknown) => {
      if (!(err instanceof ModelhubError && err.code === 'ALREADY_EXISTS')) throw err;
    });
  }
  const secretKey = await readSecretKeyFile(file);
  return { secretKey, publicKey: publicKeyOf(secretKey), file };
}
