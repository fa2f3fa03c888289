// A node test bench: a real hub with published demo releases, a proxy in front of it, and a
// fresh node home driven through the real CLI.
import { readdirSync, statSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import path from 'node:path';
import { publishDir } from '../../src/admin/publish-client.js';
import type { DemoServiceOptions } from '../../src/demo/fixtures.js';
import type { Hub } from '../../hub/server.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

export interface Bench {
  work: string;
  hub: Hub;
  proxy: Proxy;
  key: TestKey;
  releases: Map<string, BuiltRelease>;
  publish(o: DemoServiceOptions & { platform?: string }): Promise<BuiltRelease>;
  publishModel(o: { id?: string; version: string; files?: Record<string, number> }): Promise<BuiltRelease>;
  newHome(): Promise<string>;
  cli(home: string, args: string[], env?: Record<string, string>): Promise<CliResult>;
}

export async function makeBench(hubOptions: Parameters<typeof startHub>[2] = {}): Promise<Bench> {
  const work = await tempDir();
  const key = await makeKey(work);
  const hub = await startHub(work, [key], hubOptions);
  const proxy = await startProxy(hub.url);
  const releases = new Map<string, BuiltRelease>();
  const bench: Bench = {
    work,
    hub,
    proxy,
    key,
    releases,
    async publish(o) {
      const r = await buildServiceRelease(work, key, o);
      await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
      releases.set(`${o.id ?? 'demo-echo'}@${o.version}`, r);
      return r;
    },
    async publishModel(o) {
      const r = await buildModelRelease(work, key, o);
      await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
      return r;
    },
    async newHome() {
      const home = path.join(await tempDir('modelhub-node-'), 'home');
      const r = await runCli(['trust', 'add', key.pub, '--home', home, '--json']);
      if (r.code !== 0) throw new Error(`trust add failed: ${r.stdout} ${r.stderr}`);
      return home;
    },
    cli(home, args, env = {}) {
      return runCli([...args, '--home', home, '--hub', proxy.url, '--json'], env);
    },
  };
  return bench;
}

export async function currentOf(home: string, id: string): Promise<string | null> {
  try {
    return await readlink(path.join(home, 'services', id, 'current'));
  } catch {
    return null;
  }
}

/** Bytes of the service package's `.part` in a home's downloads/ (0 when there is none yet). */
export function partBytes(home: string): number {
  try {
    const dir = path.join(home, 'downloads');
    const part = readdirSync(dir).find((f) => f.endsWith('.zip.part'));
    return part === undefined ? 0 : statSync(path.join(dir, part)).size;
  } catch {
    return 0;
  }
}
