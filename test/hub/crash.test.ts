// A hub killed mid-upload shows no partial release after restart; a release directory left
// without its catalog row (killed between rename and commit) is not served, left alone at start,
// and moved aside by `modelhub hub orphans --quarantine`.
import http from 'node:http';
import { cp, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import { buildServiceRelease, makeKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('condition not reached');
}

async function startHubProcess(storage: string, pub: string): Promise<{ url: string; kill: () => Promise<void> }> {
  const child = spawnCli(['hub', 'serve', '--storage', storage, '--port', '0', '--publisher-key', pub, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
  const ready = await waitForLine(child, 'ready');
  return {
    url: String(ready.url),
    kill: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

describe('hub crash safety', () => {
  it('kill -9 during an upload leaves no partial release', async () => {
    const work = await tempDir();
    const key = await makeKey(work);
    const storage = path.join(work, 'storage');
    const rel = await buildServiceRelease(work, key, { version: '1.0.0', modelBytes: 8 << 20 });
    const pkg = await readFile(path.join(rel.dir, 'service.zip'));
    const hub = await startHubProcess(storage, key.pub);

    const boundary = 'modelhubtestboundary';
    const u = new URL(hub.url);
    const req = http.request({
      host: u.hostname,
      port: u.port,
      method: 'PUT',
      path: '/api/admin/services/demo-echo/1.0.0/linux-x64',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
    });
    req.on('error', () => undefined);
    // The signed manifest and its signature first, as the hub requires, then half the package.
    for (const [name, file] of [['manifest', 'manifest.json'], ['signature', 'manifest.json.minisig']] as const) {
      req.write(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${file}"\r\n\r\n`);
      req.write(await readFile(path.join(rel.dir, file)));
      req.write('\r\n');
    }
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="package"; filename="service.zip"\r\nContent-Type: application/zip\r\n\r\n`);
    req.write(pkg.subarray(0, pkg.length >> 1));

    const incoming = path.join(storage, '.incoming');
    await waitFor(async () => {
      const dirs = await readdir(incoming).catch(() => [] as string[]);
      if (dirs.length === 0) return false;
      const s = await stat(path.join(incoming, dirs[0]!, 'service.zip')).catch(() => null);
      return s !== null && s.size > 0;
    }, 10_000);
    await hub.kill();
    req.destroy();
    expect((await readdir(incoming)).length).toBe(1);

    const again = await startHubProcess(storage, key.pub);
    try {
      expect(await readdir(incoming).catch(() => 'gone')).toBe('gone');
      const r = await fetch(`${again.url}/api/services/demo-echo`);
      expect(r.status).toBe(404);
      expect(await (await fetch(`${again.url}/api/services`)).json()).toEqual([]);
      expect(await readdir(path.join(storage, 'services')).catch(() => [] as string[])).toEqual([]);
    } finally {
      await again.kill();
    }
  });

  it('a release directory without its catalog row is served by no hub, left alone at start, and moved aside only by `hub orphans --quarantine`', async () => {
    const work = await tempDir();
    const key = await makeKey(work);
    const storage = path.join(work, 'storage');
    const rel = await buildServiceRelease(work, key, { version: '1.0.0' });
    const orphan = path.join(storage, 'services', 'demo-echo', '1.0.0', 'linux-x64');
    const hub = await startHubProcess(storage, key.pub);
    try {
      // Planted while the hub runs: a publish killed between its rename and its commit looks so.
      await cp(rel.dir, orphan, { recursive: true });
      expect((await fetch(`${hub.url}/storage/services/demo-echo/1.0.0/linux-x64/service.zip`)).status).toBe(404);
      expect(await (await fetch(`${hub.url}/api/services`)).json()).toEqual([]);
    } finally {
      await hub.kill();
    }
    const again = await startHubProcess(storage, key.pub);
    try {
      expect(await readdir(path.dirname(orphan))).toEqual(['linux-x64']);
      expect((await fetch(`${again.url}/storage/services/demo-echo/1.0.0/linux-x64/service.zip`)).status).toBe(404);
      const r = await runCli(['hub', 'orphans', '--storage', storage, '--quarantine', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(await readdir(path.dirname(orphan))).toEqual([]);
      const [stamp, ...more] = await readdir(path.join(storage, '.orphans'));
      expect(more).toEqual([]);
      expect(r.result).toMatchObject({ ok: true, orphans: [{ path: 'services/demo-echo/1.0.0/linux-x64', moved_to: `.orphans/${stamp!}/services/demo-echo/1.0.0/linux-x64` }] });
      const kept = path.join(storage, '.orphans', stamp!, 'services', 'demo-echo', '1.0.0', 'linux-x64');
      expect((await readFile(path.join(kept, 'service.zip'))).equals(await readFile(path.join(rel.dir, 'service.zip')))).toBe(true);
    } finally {
      await again.kill();
    }
  });
});
