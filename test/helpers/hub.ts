// A real hub on port 0 for a test file.
import path from 'node:path';
import { afterAll } from 'vitest';
import { createHub, type Hub, type HubOptions } from '../../hub/server.js';
import { delegationDocument } from '../../src/metadata/statements.js';
import { readPublicKeyFile, readSecretKeyFile } from '../../src/sign/keygen.js';
import type { TestKey } from './releases.js';

export const TEST_TOKEN = 'test-admin-token-0123456789';

// Closed after the file's tests, wherever startHub was called (beforeAll included).
const started: Hub[] = [];
afterAll(async () => {
  await Promise.all(started.splice(0).map((h) => h.close()));
});

/**
 * A hub whose metadata key is certified by the first publisher key (as `certify-hub-key` does),
 * so nodes resolve "latest" from its signed snapshot. `certify: false` leaves it uncertified.
 */
export async function startHub(work: string, keys: TestKey[], extra: Partial<HubOptions> & { certify?: boolean } = {}): Promise<Hub> {
  const { certify = true, ...options } = extra;
  const hub = await createHub({
    storage: path.join(work, 'storage'),
    port: 0,
    publisherKeys: await Promise.all(keys.map((k) => readPublicKeyFile(k.pub))),
    adminToken: TEST_TOKEN,
    ...options,
  });
  started.push(hub);
  if (certify && keys[0] !== undefined) await certifyHub(hub, keys[0]);
  return hub;
}

/** The publisher key certifies the hub's metadata key for a year. */
export async function certifyHub(hub: Hub, key: TestKey, validMs = 365 * 86_400_000): Promise<void> {
  await hub.metadata.setDelegation(delegationDocument(hub.metadata.publicKey, await readSecretKeyFile(key.key), Date.now(), validMs));
}
