// The test proxy (proxy-server.ts) for vitest files: every proxy a test file starts is closed
// after its tests.
import { afterAll } from 'vitest';
import { startProxyServer, type Proxy } from './proxy-server.js';

export type { Misbehaviour, Proxy } from './proxy-server.js';

const proxies: Proxy[] = [];
afterAll(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

/** A loopback proxy in front of a real hub that counts what it serves and misbehaves when told. */
export async function startProxy(target: string): Promise<Proxy> {
  const p = await startProxyServer(target);
  proxies.push(p);
  return p;
}
