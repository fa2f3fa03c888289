// The hub never touches release folders at start: hubs sharing a storage folder may start while
// another one publishes. A hub.db restored from an older backup has no rows for what was
// published since; those folders are served by no hub, and `modelhub hub orphans` lists them
// and, with --quarantine, moves each one to <storage>/.orphans/<timestamp>/<path> with a log
// line, byte for byte (never deleted).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { incomingOwnerPrefix, incomingScope, StorageLayout, sweepIncoming } from '../../hub/storage-layout.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { runCli } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

/** Every file below `root` (relative, '/'-separated) → its SHA-256. */
async function hashes(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(dir: string, rel: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
      else out.set(r, createHash('sha256').update(await readFile(path.join(dir, e.name))).digest('hex'));
    }
  }
  await walk(root, '');
  return out;
}

describe('a hub restarted with an old hub.db', () => {
  it('touches no release folder at start; `hub orphans` lists the ones its catalog lacks and --quarantine moves them byte for byte, with a log line', async () => {
    const work = await tempDir();
    const key = await makeKey(work);
    const storage = path.join(work, 'storage');
    const backup = path.join(work, 'hub.db.backup');

    // 1. Version 1.0.0 of a service and a model, then a backup of the catalog.
    let hub: Hub = await startHub(work, [key]);
    await publishDir((await buildServiceRelease(work, key, { version: '1.0.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
    await publishDir((await buildModelRelease(work, key, { version: '1.0.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
    await hub.close();
    await copyFile(path.join(storage, 'hub.db'), backup);

    // 2. Published since the backup: 1.1.0 of each.
    hub = await startHub(work, [key]);
    const again = await buildServiceRelease(work, key, { version: '1.1.0' });
    await publishDir(again.dir, { hub: hub.url, token: TEST_TOKEN });
    await publishDir((await buildModelRelease(work, key, { version: '1.1.0' })).dir, { hub: hub.url, token: TEST_TOKEN });
    await hub.close();
    const before = await hashes(path.join(storage, 'services'));
    const modelsBefore = await hashes(path.join(storage, 'models'));
    expect([...before.keys()].some((p) => p.startsWith('demo-echo/1.1.0/linux-x64/'))).toBe(true);
    expect([...modelsBefore.keys()].some((p) => p.startsWith('demo-tiny-nmt/1.1.0/'))).toBe(true);

    // 3. The catalog restored from the backup, and the hub started on it: it serves what the old
    // catalog knows, not the rest — and moves nothing (another hub sharing the storage folder
    // could be publishing).
    for (const f of ['hub.db', 'hub.db-wal', 'hub.db-shm']) await rm(path.join(storage, f), { force: true });
    await copyFile(backup, path.join(storage, 'hub.db'));
    hub = await startHub(work, [key]);
    expect((await fetch(`${hub.url}/storage/services/demo-echo/1.0.0/linux-x64/service.zip`)).status).toBe(200);
    expect((await fetch(`${hub.url}/api/models/demo-tiny-nmt/1.0.0/manifest`)).status).toBe(200);
    expect((await fetch(`${hub.url}/storage/services/demo-echo/1.1.0/linux-x64/service.zip`)).status).toBe(404);
    expect(await hashes(path.join(storage, 'services'))).toEqual(before);
    expect(await hashes(path.join(storage, 'models'))).toEqual(modelsBefore);
    await expect(stat(path.join(storage, '.orphans'))).rejects.toMatchObject({ code: 'ENOENT' });

    // A publish of a release whose folder is there without a row is refused, the folder untouched.
    await expect(publishDir(again.dir, { hub: hub.url, token: TEST_TOKEN })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    expect(await hashes(path.join(storage, 'services'))).toEqual(before);

    // 4. `hub orphans` lists them and moves nothing.
    const listed = await runCli(['hub', 'orphans', '--storage', storage, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.result).toMatchObject({ ok: true, quarantined: false });
    expect((listed.result!.orphans as { path: string }[]).map((o) => o.path).sort()).toEqual(['models/demo-tiny-nmt/1.1.0', 'services/demo-echo/1.1.0/linux-x64']);
    expect(await hashes(path.join(storage, 'services'))).toEqual(before);

    // 5. --quarantine moves each one, while the hub runs, with one log line each.
    const moved = await runCli(['hub', 'orphans', '--storage', storage, '--quarantine', '--json']);
    expect(moved.code, moved.stderr).toBe(0);
    const stamps = await readdir(path.join(storage, '.orphans'));
    expect(stamps).toHaveLength(1);
    expect(moved.result!.orphans).toEqual(
      expect.arrayContaining([
        { path: 'services/demo-echo/1.1.0/linux-x64', moved_to: `.orphans/${stamps[0]!}/services/demo-echo/1.1.0/linux-x64` },
        { path: 'models/demo-tiny-nmt/1.1.0', moved_to: `.orphans/${stamps[0]!}/models/demo-tiny-nmt/1.1.0` },
      ]),
    );

    // …kept: every file that was under services/ and models/ still exists, byte for byte,
    // either where it was or under .orphans/<timestamp>/ at the same relative path.
    const quarantine = path.join(storage, '.orphans', stamps[0]!);
    const afterServices = await hashes(path.join(storage, 'services'));
    const afterModels = await hashes(path.join(storage, 'models'));
    const movedServices = await hashes(path.join(quarantine, 'services'));
    const movedModels = await hashes(path.join(quarantine, 'models'));
    for (const [p, h] of before) expect(afterServices.get(p) ?? movedServices.get(p), `services/${p}`).toBe(h);
    for (const [p, h] of modelsBefore) expect(afterModels.get(p) ?? movedModels.get(p), `models/${p}`).toBe(h);
    expect([...movedServices.keys()].every((p) => p.startsWith('demo-echo/1.1.0/linux-x64/'))).toBe(true);
    expect([...movedModels.keys()].every((p) => p.startsWith('demo-tiny-nmt/1.1.0/'))).toBe(true);
    expect(movedServices.size).toBeGreaterThan(0);
    expect(movedModels.size).toBeGreaterThan(0);
    await expect(stat(path.join(storage, 'services', 'demo-echo', '1.1.0', 'linux-x64'))).rejects.toMatchObject({ code: 'ENOENT' });

    // One log line per quarantined folder, naming where it went.
    const lines = moved.stderr.split('\n').filter((l) => l.includes('.orphans/'));
    expect(lines).toHaveLength(2);
    expect(lines.some((l) => l.includes('services/demo-echo/1.1.0/linux-x64') && l.includes(`.orphans/${stamps[0]!}/services/demo-echo/1.1.0/linux-x64`))).toBe(true);
    expect(lines.some((l) => l.includes('models/demo-tiny-nmt/1.1.0'))).toBe(true);

    // The releases can be published again (the quarantine does not block them), and the
    // command run again finds nothing more.
    await publishDir(again.dir, { hub: hub.url, token: TEST_TOKEN });
    expect((await fetch(`${hub.url}/storage/services/demo-echo/1.1.0/linux-x64/service.zip`)).status).toBe(200);
    const none = await runCli(['hub', 'orphans', '--storage', storage, '--quarantine', '--json']);
    expect(none.result).toMatchObject({ ok: true, orphans: [] });
    expect(await readdir(path.join(storage, '.orphans'))).toEqual(stamps);
  });

  it('refuses a folder that holds no catalog, instead of calling every release an orphan', async () => {
    const work = await tempDir();
    const storage = path.join(work, 'storage');
    await mkdir(path.join(storage, 'services', 'demo-echo', '1.0.0', 'linux-x64'), { recursive: true });
    const r = await runCli(['hub', 'orphans', '--storage', storage, '--quarantine', '--json']);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false });
    expect(String((r.result!.error as { message: string }).message)).toContain('no catalog at');
    expect(await readdir(path.join(storage, 'services', 'demo-echo', '1.0.0'))).toEqual(['linux-x64']);
    const bad = await runCli(['hub', 'orphans', '--storage', storage, '--db', 'mysql://x/y', '--json']);
    expect(bad.code).toBe(2);
  });
});

describe('temp uploads at start', () => {
  it('removes those of hubs that are gone, keeps those of live hubs and of other hosts', async () => {
    const layout = new StorageLayout(path.join(await tempDir(), 'storage'));
    const host = encodeURIComponent(os.hostname());
    // A process that has exited (a hub killed mid-upload) and one that runs (a hub beside us).
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => gone.once('exit', r));
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const names = {
        dead: `${host}~${gone.pid!}~a`,
        live: `${host}~${live.pid!}~b`,
        elsewhere: `other-host.example~${gone.pid!}~c`,
        legacy: '3f1c7a52-9d0e-4c1b-8a8e-2b6f6f0e9b11',
        // Named as hubs name them now: host, boot and pid namespace. Another container or boot
        // on a host of the same name has its own pids: its uploads are never this host's dead ones.
        deadHere: `${incomingScope()}~${gone.pid!}~d`,
        liveHere: `${incomingScope()}~${live.pid!}~e`,
        otherContainer: `${host}@0000beef-1~${gone.pid!}~f`,
      };
      for (const n of Object.values(names)) {
        await mkdir(path.join(layout.incomingDir, n), { recursive: true });
        await writeFile(path.join(layout.incomingDir, n, 'service.zip'), 'partial');
      }
      const removed = await sweepIncoming(layout);
      expect(removed.sort()).toEqual([names.dead, names.legacy, names.deadHere].sort());
      expect((await readdir(layout.incomingDir)).sort()).toEqual([names.elsewhere, names.live, names.liveHere, names.otherContainer].sort());
      expect(incomingOwnerPrefix().startsWith(`${incomingScope()}~${process.pid}~`)).toBe(true);
    } finally {
      live.kill('SIGKILL');
    }
  });
});
