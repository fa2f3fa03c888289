// The node survives the loss of its own records (SPEC §13): engine.db deleted or overwritten
// with garbage while services and models are installed. The next command rebuilds the registry
// from the version folders (each checked against the signed manifest it keeps), `current` stays
// as it was, nothing is downloaded again, the job history says once that it was rebuilt, a
// folder that fails is quarantined, a rebuild killed midway is finished by the next command,
// and a half-written pointer is repaired.
import Database from 'better-sqlite3';
import { existsSync, openSync, readdirSync, statSync, writeSync, closeSync } from 'node:fs';
import { readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDb, openDbReadOnly } from '../../src/engine/db.js';
import { inspectDbFile, openCheckedDb } from '../../src/engine/db-open.js';
import { tempDir } from '../helpers/tmp.js';
import type { RecordsNotice } from '../../src/engine/records.js';
import { spawnCli } from '../helpers/cli.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;
const MiB = 1024 * 1024;

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: 2 * MiB });
  await b.publish({ version: '1.1.0', modelBytes: 2 * MiB + 1 });
  await b.publishModel({ id: 'rec-model', version: '1.0.0', files: { 'weights.bin': 3 * MiB, 'config.json': 100 } });
}, 120_000);

const zip = (v: string): string => `/storage/services/demo-echo/${v}/linux-x64/service.zip`;
const modelFile = '/storage/models/rec-model/1.0.0/weights.bin';

/** A home with demo-echo 1.0.0 and 1.1.0 (current) and rec-model 1.0.0 installed. */
async function installedHome(): Promise<string> {
  const home = await b.newHome();
  for (const args of [['install', 'demo-echo@1.0.0', '--no-start'], ['install', 'demo-echo@1.1.0', '--no-start'], ['models', 'pull', 'rec-model@1.0.0']]) {
    const r = await b.cli(home, args);
    expect(r.result, r.stderr).toMatchObject({ ok: true });
  }
  return home;
}

const INSTALLED = {
  services: [{ id: 'demo-echo', current: '1.1.0', versions: ['1.0.0', '1.1.0'], running: false }],
  models: [{ id: 'rec-model', versions: ['1.0.0'] }],
};

/** The records are back: list, current, jobs (one notice, no invented job), and nothing is fetched again. */
async function assertRebuilt(home: string, reason: 'missing' | 'corrupt'): Promise<void> {
  const list = await b.cli(home, ['list']);
  expect(list.result, list.stderr).toMatchObject({ ok: true, ...INSTALLED });
  expect(list.stderr).toMatch(/records are rebuilt/);
  expect(await currentOf(home, 'demo-echo')).toBe('1.1.0');
  const jobs = (await b.cli(home, ['jobs'])).result!;
  expect(jobs.jobs).toEqual([expect.objectContaining({ kind: 'rebuild', state: 'committed' })]);
  expect(jobs.records_rebuilt).toMatchObject({ reason, state: 'committed', intact: 3, quarantined: 0, unproven: 0 });
  expect(Date.parse((jobs.records_rebuilt as RecordsNotice).rebuilt_at)).toBeGreaterThan(Date.now() - 120_000);
  // Asked once more, the answer is the same: reported, not repeated as new jobs.
  expect((await b.cli(home, ['jobs'])).result!.jobs).toHaveLength(1);

  b.proxy.bytes.clear();
  const again = await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start']);
  expect(again.result, again.stderr).toMatchObject({ ok: true, current: '1.1.0' });
  const pulled = await b.cli(home, ['models', 'pull', 'rec-model@1.0.0']);
  expect(pulled.result, pulled.stderr).toMatchObject({ ok: true, path: path.join(home, 'models', 'rec-model', '1.0.0') });
  expect(b.proxy.bytes.get(zip('1.1.0')) ?? 0).toBe(0);
  expect(b.proxy.bytes.get(modelFile) ?? 0).toBe(0);
  // The rollback floor came back from what is installed.
  const down = await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start']);
  expect(down.result).toMatchObject({ ok: false, error: { code: 'DOWNGRADE_REFUSED' } });
}

describe('engine.db lost', () => {
  it('deleted: list shows what is installed, current unchanged, no re-download', async () => {
    const home = await installedHome();
    await rm(path.join(home, 'engine.db'));
    await assertRebuilt(home, 'missing');
  });

  it('garbage: kept as engine.db.corrupt-<timestamp>, a new one built from disk', async () => {
    const home = await installedHome();
    const garbage = Buffer.alloc(64 * 1024, 0x5a);
    await writeFile(path.join(home, 'engine.db'), garbage);
    await assertRebuilt(home, 'corrupt');
    const kept = readdirSync(home).filter((n) => /^engine\.db\.corrupt-\d{4}-\d\d-\d\dT[\d-]+Z$/.test(n));
    expect(kept).toHaveLength(1);
    expect((await readFile(path.join(home, kept[0]!))).equals(garbage)).toBe(true);
    const jobs = (await b.cli(home, ['jobs'])).result!;
    expect(jobs.records_rebuilt).toMatchObject({ kept_as: path.join(home, kept[0]!) });
  });

  it('a tampered folder is quarantined; current falls back to the highest intact version', async () => {
    const home = await installedHome();
    await writeFile(path.join(home, 'services', 'demo-echo', '1.1.0', 'service.json'), '{"tampered": true}\n');
    await writeFile(path.join(home, 'models', 'rec-model', '1.0.0', 'config.json'), 'x');
    await rm(path.join(home, 'engine.db'));
    const list = await b.cli(home, ['list']);
    expect(list.result).toMatchObject({ ok: true, services: [{ id: 'demo-echo', current: '1.0.0', versions: ['1.0.0'] }], models: [] });
    expect(list.stderr).toMatch(/demo-echo 1\.1\.0: files differ from the signed manifest: 1 modified \(service\.json\)/);
    expect(list.stderr).toMatch(/current is now 1\.0\.0/);
    expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    const jobs = (await b.cli(home, ['jobs'])).result!;
    expect(jobs.records_rebuilt).toMatchObject({ intact: 1, quarantined: 2 });
    const jobId = (jobs.records_rebuilt as RecordsNotice).job_id;
    const q = path.join(home, 'quarantine', jobId);
    expect(await readFile(path.join(q, 'services', 'demo-echo', '1.1.0', 'service.json'), 'utf8')).toBe('{"tampered": true}\n');
    expect(existsSync(path.join(q, 'models', 'rec-model', '1.0.0', 'weights.bin'))).toBe(true);
    expect(existsSync(path.join(home, 'services', 'demo-echo', '1.1.0'))).toBe(false);
    // The rebuild is in the event log and replays.
    const exported = path.join(home, 'rebuild.jsonl');
    expect((await b.cli(home, ['events', jobId, '--export', exported])).result).toMatchObject({ ok: true });
    const replayed = await b.cli(home, ['replay', exported]);
    expect(replayed.result).toMatchObject({ ok: true, diverged_at: null });
    // Installing the quarantined version again fetches it and makes it current.
    const fixed = await b.cli(home, ['install', 'demo-echo@1.1.0', '--no-start']);
    expect(fixed.result, fixed.stderr).toMatchObject({ ok: true, current: '1.1.0' });
  });

  it('kill -9 during the rebuild: the next command finishes it, without scanning again', async () => {
    const home = await installedHome();
    await rm(path.join(home, 'engine.db'));
    // Held before judging the second of three folders (the first verdict is on disk), then killed.
    const child = spawnCli(['list', '--home', home, '--hub', b.proxy.url, '--json'], { MODELHUB_TEST_PAUSE_AT: 'rebuild:verify:2' });
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        err += chunk.toString('utf8');
        if (err.includes('"type":"paused"')) resolve();
      });
      void exit.then(() => reject(new Error(`exited before pausing: ${err}`)));
    });
    child.kill('SIGKILL');
    await exit;
    const db = openDbReadOnly(path.join(home, 'engine.db'))!;
    const row = db.prepare("SELECT id, state, active FROM jobs WHERE kind = 'rebuild'").get() as { id: string; state: string; active: number };
    const typesBefore = (db.prepare('SELECT type FROM events WHERE job_id = ? ORDER BY seq').all(row.id) as { type: string }[]).map((e) => e.type);
    db.close();
    expect(row).toMatchObject({ state: 'verifying', active: 1 });
    expect(typesBefore).toEqual(['xstate.init', 'xstate.done.actor.scanVersions', 'xstate.done.actor.verifyVersion']);

    const list = await b.cli(home, ['list']);
    expect(list.result, list.stderr).toMatchObject({ ok: true, ...INSTALLED });
    const after = openDbReadOnly(path.join(home, 'engine.db'))!;
    const types = (after.prepare('SELECT type FROM events WHERE job_id = ? ORDER BY seq').all(row.id) as { type: string }[]).map((e) => e.type);
    const job = after.prepare('SELECT state, restores FROM jobs WHERE id = ?').get(row.id);
    after.close();
    expect(job).toEqual({ state: 'committed', restores: 1 });
    expect(types.filter((t) => t === 'xstate.done.actor.scanVersions')).toHaveLength(1);
    expect(types.filter((t) => t === 'xstate.done.actor.verifyVersion')).toHaveLength(3);
    expect(types).toContain('RESTORED');
    expect(types[types.length - 1]).toBe('xstate.done.actor.restorePointers');
    const exported = path.join(home, 'rebuild.jsonl');
    await b.cli(home, ['events', row.id, '--export', exported]);
    expect((await b.cli(home, ['replay', exported])).result).toMatchObject({ ok: true, diverged_at: null });
  });

  it('a dangling pointer is repaired from the registry', async () => {
    const home = await installedHome();
    const current = path.join(home, 'services', 'demo-echo', 'current');
    await rm(current);
    await symlink('9.9.9', current);
    const r = await b.cli(home, ['recover']);
    expect(r.result).toMatchObject({ ok: true, pointers_repaired: [{ id: 'demo-echo', from: '9.9.9', to: '1.1.0' }] });
    expect(await currentOf(home, 'demo-echo')).toBe('1.1.0');
  });

  it('a dangling pointer with the records lost: the highest intact version, with a warning', async () => {
    const home = await installedHome();
    const current = path.join(home, 'services', 'demo-echo', 'current');
    await rm(current);
    await symlink('1.2.0', current);
    await rm(path.join(home, 'engine.db'));
    const list = await b.cli(home, ['list']);
    expect(list.result).toMatchObject({ ok: true, services: [{ id: 'demo-echo', current: '1.1.0', versions: ['1.0.0', '1.1.0'] }] });
    expect(list.stderr).toMatch(/demo-echo: the pointer names 1\.2\.0, which is not an intact version; current is now 1\.1\.0/);
    expect(await currentOf(home, 'demo-echo')).toBe('1.1.0');
  });

  it('a home that never had anything is not "rebuilt"', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['list'])).result).toMatchObject({ ok: true, services: [], models: [] });
    expect(existsSync(path.join(home, 'engine.db'))).toBe(false);
  });
});

describe('the check at open (src/engine/db-open.ts)', () => {
  it('a database with damaged pages fails quick_check and is kept aside; a sound one is used as it is', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'engine.db');
    const db = openDb(file);
    const ins = db.prepare("INSERT INTO events (job_id, ts, type, payload, state) VALUES ('j', 0, 't', ?, 's')");
    db.transaction(() => {
      for (let i = 0; i < 2000; i++) ins.run('x'.repeat(300));
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    expect(inspectDbFile(file)).toBe('ok');
    const sound = openCheckedDb(file, Date.now());
    expect(sound.loss).toBeNull();
    sound.db.close();

    // Pages in the middle of the file overwritten (a disk error): the header still says SQLite.
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(3 * 4096, 0xa5), 0, 3 * 4096, Math.floor(statSync(file).size / 2 / 4096) * 4096);
    closeSync(fd);
    expect(inspectDbFile(file)).toMatchObject({ problem: expect.any(String) as string });
    const now = Date.parse('2030-01-02T03:04:05.678Z');
    const opened = openCheckedDb(file, now);
    expect(opened.loss).toMatchObject({ reason: 'corrupt', keptAs: path.join(dir, 'engine.db.corrupt-2030-01-02T03-04-05-678Z') });
    expect(opened.db.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 0 });
    opened.db.close();
    expect(existsSync(path.join(dir, 'engine.db.corrupt-2030-01-02T03-04-05-678Z'))).toBe(true);
  });

  it('a -wal left without its database is kept aside for inspection; the new database starts empty', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'engine.db');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE jobs (id TEXT)');
    db.exec("INSERT INTO jobs VALUES ('from-the-lost-file')");
    // The process dies with its writes in the WAL; then engine.db alone is deleted.
    const wal = await readFile(`${file}-wal`);
    db.close();
    await rm(file);
    await writeFile(`${file}-wal`, wal);
    const opened = openCheckedDb(file, Date.parse('2030-01-01T00:00:00Z'));
    expect(opened.loss).toMatchObject({ reason: 'missing' });
    expect(opened.db.prepare('SELECT count(*) AS n FROM jobs').get()).toEqual({ n: 0 });
    opened.db.close();
    expect(existsSync(path.join(dir, 'engine.db.orphan-2030-01-01T00-00-00-000Z-wal'))).toBe(true);
  });
});
