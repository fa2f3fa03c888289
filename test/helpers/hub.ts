// A real hub on port 0 for a test file.
import path from 'node:path';
import { afterAll } from 'vitest';
import { createHub, type Hub, type HubOptions } from '../../hub/server.js';
import { readPublicKeyFile } from '../../src/sign/keygen.js';
import type { TestKey } from './releases.js';

export const TEST_TOKEN = 'test-admin-token-0123456789';

// Closed after the file's tests, wherever startHub was called (beforeAll included).
const started: Hub[] = [];
afterAll(async () => {
  await Promise.all(started.splice(0).map((h) => h.close()));
});

export async function startHub(work: string, keys: TestKey[], extra: Partial<HubOptions> = {}): Promise<Hub> {
  const hub = await createHub({
    storage: path.join(work, 'storage'),
    port: 0,
    publisherKeys: await Promise.all(keys.map((k) => readPublicKeyFile(k.pub))),
    adminToken: TEST_TOKEN,
    ...extra,
  });
  started.push(hub);
  return hub;
}
