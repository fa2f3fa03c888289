// Real download tools against the hub: curl resuming a truncated file, aria2c with 8
// connections. Both must end with exactly the published bytes.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishDir } from '../../src/admin/publish-client.js';
import type { Hub } from '../../hub/server.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildServiceRelease, makeKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
let hub: Hub;
let work: string;
let zip: Buffer;
let url: string;

beforeAll(async () => {
  work = await tempDir();
  const key = await makeKey(work);
  hub = await startHub(work, [key]);
  const rel = await buildServiceRelease(work, key, { version: '1.0.0', modelBytes: 6 * 1024 * 1024 });
  await publishDir(rel.dir, { hub: hub.url, token: TEST_TOKEN });
  zip = await readFile(path.join(rel.dir, 'service.zip'));
  url = `${hub.url}/storage/services/demo-echo/1.0.0/linux-x64/service.zip`;
});

describe('standard download tools', () => {
  it('curl -C - completes a truncated download', async () => {
    const out = path.join(work, 'curl.zip');
    await writeFile(out, zip.subarray(0, 1_234_567));
    const r = await run('curl', ['-sS', '-f', '-C', '-', '-o', out, url]);
    expect(r.stderr).toBe('');
    const got = await readFile(out);
    expect(got.length).toBe(zip.length);
    expect(got.equals(zip)).toBe(true);
  });

  it('aria2c -x8 -s8 fetches the same bytes over 8 connections', async () => {
    const dir = path.join(work, 'aria');
    await run('aria2c', ['-q', '-x8', '-s8', '-k1M', '--allow-overwrite=true', '--auto-file-renaming=false', '-d', dir, '-o', 'a.zip', url]);
    const got = await readFile(path.join(dir, 'a.zip'));
    expect(got.equals(zip)).toBe(true);
  });
});
