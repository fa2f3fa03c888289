// Certifying a hub's metadata key is one admin step (SPEC §11): online (`certify-hub-key --hub`
// fetches the key, signs the delegation, uploads it) or offline (`certify-hub-key HUB.pub --out`
// then `hub serve --metadata-delegation FILE`). Before it, nodes resolve no "latest"; after it
// they do. The delegation is minisign-format: the real minisign verifies it.
import { execFile, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { publishDir } from '../../src/admin/publish-client.js';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { buildServiceRelease, makeKey, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const TOKEN = 'certify-test-token-0123456789';
let work: string;
let key: TestKey;
const hubs: ChildProcess[] = [];

beforeAll(async () => {
  work = await tempDir();
  key = await makeKey(work);
});

afterEach(() => {
  for (const h of hubs.splice(0)) h.kill('SIGTERM');
});

async function serve(storage: string, extra: string[] = []): Promise<string> {
  const child = spawnCli(['hub', 'serve', '--storage', storage, '--port', '0', '--publisher-key', key.pub, '--json', ...extra], { MODELHUB_ADMIN_TOKEN: TOKEN });
  hubs.push(child);
  return String((await waitForLine(child, 'ready')).url);
}

async function node(): Promise<string> {
  const home = path.join(await tempDir(), 'home');
  expect((await runCli(['trust', 'add', key.pub, '--home', home, '--json'])).code).toBe(0);
  return home;
}

describe('certify-hub-key', () => {
  it('online: fetch the key, sign, upload; nodes then resolve latest from the signed snapshot', async () => {
    const storage = path.join(work, 'online');
    const hub = await serve(storage);
    const r = await buildServiceRelease(work, key, { version: '1.0.0' });
    await publishDir(r.dir, { hub, token: TOKEN });
    const home = await node();
    expect((await runCli(['install', 'demo-echo', '--no-start', '--home', home, '--hub', hub, '--json'])).result).toMatchObject({ ok: false, error: { code: 'UNTRUSTED_KEY' } });

    const certified = await runCli(['certify-hub-key', '--hub', hub, '--key', key.key, '--expires', '30d', '--json'], { MODELHUB_ADMIN_TOKEN: TOKEN });
    expect(certified.result).toMatchObject({ ok: true, uploaded: true });
    const served = path.join(work, 'served-delegation.json');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(served, await (await fetch(`${hub}/api/metadata/delegation`)).text());
    await writeFile(`${served}.minisig`, await (await fetch(`${hub}/api/metadata/delegation.minisig`)).text());
    await run('minisign', ['-V', '-p', key.pub, '-m', served]);
    const expires = Date.parse(String(certified.result!.expires));
    expect(expires - Date.now()).toBeGreaterThan(29 * 86_400_000);

    expect((await runCli(['install', 'demo-echo', '--no-start', '--home', home, '--hub', hub, '--json'])).result).toMatchObject({ ok: true, version: '1.0.0' });
    // Without the admin token nothing is uploaded.
    expect((await runCli(['certify-hub-key', '--hub', hub, '--key', key.key, '--json'], { MODELHUB_ADMIN_TOKEN: '' })).result).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
  });

  it('offline: sign the hub key file, then hub serve --metadata-delegation', async () => {
    const storage = path.join(work, 'offline');
    await serve(storage); // creates <storage>/metadata.key and .pub
    hubs.pop()!.kill('SIGTERM');
    const file = path.join(work, 'delegation.json');
    const signed = await runCli(['certify-hub-key', path.join(storage, 'metadata.pub'), '--key', key.key, '--out', file, '--json']);
    expect(signed.result).toMatchObject({ ok: true, file, uploaded: false });
    await run('minisign', ['-V', '-p', key.pub, '-m', file]);
    const hub = await serve(storage, ['--metadata-delegation', file]);
    const r = await buildServiceRelease(work, key, { version: '2.0.0' });
    await publishDir(r.dir, { hub, token: TOKEN });
    const home = await node();
    expect((await runCli(['install', 'demo-echo', '--no-start', '--home', home, '--hub', hub, '--json'])).result).toMatchObject({ ok: true, version: '2.0.0' });
    // Offline without --out is bad usage.
    expect((await runCli(['certify-hub-key', path.join(storage, 'metadata.pub'), '--key', key.key, '--json'])).code).toBe(2);
  });
});
