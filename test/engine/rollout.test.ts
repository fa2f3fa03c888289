// Staged rollout end to end (SPEC §12): `publish --rollout`, `modelhub rollout`, the share in
// the signed snapshot, each node's own answer, stable across runs; 0 halts, 100 completes.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { inRollout } from '../../src/metadata/rollout.js';
import { runCli } from '../helpers/cli.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import { buildServiceRelease } from '../helpers/releases.js';
import { makeBench, type Bench } from './fixture.js';

let b: Bench;
const admin = { MODELHUB_ADMIN_TOKEN: TEST_TOKEN };

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0' });
});

/** A node whose id we choose, so we know on which side of the rollout it falls. */
async function nodeWithId(nodeId: string): Promise<string> {
  const home = await b.newHome();
  await mkdir(home, { recursive: true });
  await writeFile(path.join(home, 'node_id'), nodeId + '\n');
  return home;
}

function nodeIds(percent: number, inside: boolean): string {
  for (let i = 0; ; i++) {
    const id = `node-${i}`;
    if (inRollout(id, 'demo-echo', '2.0.0', percent) === inside) return id;
  }
}

describe('staged rollout', () => {
  it('offers the release to the share of nodes in the signed snapshot; 0 halts, 100 completes', async () => {
    const r = await buildServiceRelease(b.work, b.key, { version: '2.0.0' });
    const published = await runCli(['publish', r.dir, '--rollout', '20', '--hub', b.hub.url, '--json'], admin);
    expect(published.result).toMatchObject({ ok: true, version: '2.0.0', rollout: 20 });
    const snapshot = JSON.parse(await (await fetch(`${b.hub.url}/api/metadata/snapshot`)).text()) as { services: Record<string, Record<string, { latest: string; versions: Record<string, { rollout: number }> }>> };
    expect(snapshot.services['demo-echo']!['linux-x64']).toMatchObject({ latest: '1.0.0', versions: { '2.0.0': { rollout: 20 } } });
    // The plain listing offers only what every node gets.
    expect(((await (await fetch(`${b.hub.url}/api/services/demo-echo`)).json()) as { latest_version: string }).latest_version).toBe('1.0.0');

    const inside = await nodeWithId(nodeIds(20, true));
    const outside = await nodeWithId(nodeIds(20, false));
    expect((await b.cli(inside, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '2.0.0' });
    expect((await b.cli(outside, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '1.0.0' });
    // Stable per node: asking again changes nothing.
    expect((await b.cli(outside, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '1.0.0' });

    // 0 % halts it: a node that was not offered it does not get it.
    const late = await nodeWithId(nodeIds(20, true).replace('node', 'late'));
    expect((await runCli(['rollout', 'demo-echo', '2.0.0', '0', '--hub', b.hub.url, '--json'], admin)).result).toMatchObject({ ok: true, rollout: 0 });
    expect((await b.cli(late, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '1.0.0' });
    // A node that already has it keeps it: "latest" never asks it to go back.
    expect((await b.cli(inside, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '2.0.0', current: '2.0.0' });

    // 100 % completes it: everyone.
    expect((await runCli(['rollout', 'demo-echo', '2.0.0', '100', '--hub', b.hub.url, '--json'], admin)).result).toMatchObject({ ok: true, rollout: 100 });
    expect((await b.cli(outside, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '2.0.0' });
    expect((await b.cli(late, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '2.0.0' });
  });

  it('refuses what is not a rollout', async () => {
    expect((await runCli(['rollout', 'demo-echo', '2.0.0', '101', '--hub', b.hub.url, '--json'], admin)).code).toBe(2);
    expect((await runCli(['rollout', 'demo-echo', '9.9.9', '10', '--hub', b.hub.url, '--json'], admin)).result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect((await runCli(['rollout', 'demo-echo', '1.0.0', '10', '--hub', b.hub.url, '--json'], { MODELHUB_ADMIN_TOKEN: 'wrong' })).result).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
  });
});
