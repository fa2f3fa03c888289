// The admin flow through the real CLI: keygen → pack → sign → publish, --json result lines,
// exit codes 0/1/2, and the hub's own error code when it refuses a publish.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeDemoModel, writeDemoService } from '../../src/demo/fixtures.js';
import type { Hub } from '../../hub/server.js';
import { runCli } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { makeKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
let work: string;
let hub: Hub;

beforeAll(async () => {
  work = await tempDir();
  const trusted = await makeKey(work, 'trusted');
  hub = await startHub(work, [trusted]);
});

describe('admin CLI', () => {
  it('keygen → pack → sign → publish, each with one JSON result line', async () => {
    const key = await runCli(['keygen', '--out', path.join(work, 'k1'), '--json']);
    expect(key.code).toBe(0);
    expect(key.lines).toHaveLength(1);
    expect(key.result).toMatchObject({ type: 'result', ok: true, key_id: expect.stringMatching(/^[0-9A-F]{16}$/) as unknown });
    const again = await runCli(['keygen', '--out', path.join(work, 'k1'), '--json']);
    expect(again.code).toBe(1);
    expect(again.result).toMatchObject({ ok: false, error: { code: 'ALREADY_EXISTS' } });

    const src = await writeDemoService(path.join(work, 'svc'), { version: '2.0.0' });
    const packed = await runCli(['pack', src, '--out', path.join(work, 'svc-out'), '--platform', 'linux-x64', '--json']);
    expect(packed.code).toBe(0);
    expect(packed.result).toMatchObject({ ok: true, kind: 'service', id: 'demo-echo', version: '2.0.0', platform: 'linux-x64' });

    const manifest = path.join(work, 'svc-out', 'manifest.json');
    const signed = await runCli(['sign', manifest, '--key', path.join(work, 'k1.key'), '--json']);
    expect(signed.code).toBe(0);
    expect(signed.result).toMatchObject({ ok: true, signature: `${manifest}.minisig` });
    // The real minisign accepts what we wrote.
    await run('minisign', ['-V', '-q', '-p', path.join(work, 'k1.pub'), '-m', manifest]);

    // The hub only trusts "trusted": the publish is refused with the hub's code.
    const refused = await runCli(['publish', path.join(work, 'svc-out'), '--hub', hub.url, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
    expect(refused.code).toBe(1);
    expect(refused.result).toMatchObject({ ok: false, error: { code: 'UNTRUSTED_KEY' } });

    const resigned = await runCli(['sign', manifest, '--key', path.join(work, 'trusted.key'), '--json']);
    expect(resigned.code).toBe(0);
    const published = await runCli(['publish', path.join(work, 'svc-out'), '--hub', hub.url, '--stable', '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
    expect(published.code).toBe(0);
    expect(published.result).toMatchObject({ ok: true, kind: 'service', id: 'demo-echo', version: '2.0.0', platform: 'linux-x64', stable: true });
    const detail = (await (await fetch(`${hub.url}/api/services/demo-echo`)).json()) as { stable_version: string };
    expect(detail.stable_version).toBe('2.0.0');

    const dup = await runCli(['publish', path.join(work, 'svc-out'), '--hub', hub.url, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
    expect(dup.result).toMatchObject({ ok: false, error: { code: 'ALREADY_EXISTS' } });

    const noToken = await runCli(['publish', path.join(work, 'svc-out'), '--hub', hub.url, '--json'], { MODELHUB_ADMIN_TOKEN: '' });
    expect(noToken.code).toBe(1);
    expect(noToken.result).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
  });

  it('publishes a model with its files', async () => {
    const src = await writeDemoModel(path.join(work, 'model'), { id: 'cli-model', version: '1.0.0' });
    const out = path.join(work, 'model-out');
    expect((await runCli(['pack', src, '--out', out, '--json'])).code).toBe(0);
    expect((await runCli(['sign', path.join(out, 'manifest.json'), '--key', path.join(work, 'trusted.key')])).code).toBe(0);
    const r = await runCli(['publish', out, '--hub', hub.url, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
    expect(r.result).toMatchObject({ ok: true, kind: 'model', id: 'cli-model', version: '1.0.0' });
    const file = await fetch(`${hub.url}/storage/models/cli-model/1.0.0/tokenizer/vocab.txt`);
    expect(Buffer.from(await file.arrayBuffer()).equals(await readFile(path.join(out, 'tokenizer', 'vocab.txt')))).toBe(true);
  });

  it('bad usage exits 2, with a JSON result when --json', async () => {
    const missing = await runCli(['pack', '--json']);
    expect(missing.code).toBe(2);
    expect(missing.result).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect((await runCli(['no-such-command'])).code).toBe(2);
    const badPort = await runCli(['hub', 'serve', '--storage', path.join(work, 's'), '--port', 'abc', '--json']);
    expect(badPort.code).toBe(2);
    const manifestInvalid = await runCli(['pack', path.join(work, 'svc'), '--out', path.join(work, 'x'), '--platform', 'darwin-arm64', '--json']);
    // The demo names every platform, so packing for darwin works; an unknown platform is usage.
    expect(manifestInvalid.code).toBe(0);
    const unknown = await runCli(['pack', path.join(work, 'svc'), '--out', path.join(work, 'y'), '--platform', 'amiga-68k', '--json']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.result).toMatchObject({ ok: false });
  });

  it('hub serve prints its URL and answers', async () => {
    const { spawnCli, waitForLine } = await import('../helpers/cli.js');
    const child = spawnCli(['hub', 'serve', '--storage', path.join(work, 'served'), '--port', '0', '--json']);
    try {
      const ready = await waitForLine(child, 'ready');
      const res = await fetch(`${String(ready.url)}/health`);
      expect(await res.json()).toEqual({ status: 'ok' });
    } finally {
      child.kill('SIGTERM');
    }
  });
});
