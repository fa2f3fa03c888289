// The runtime table's start_time (issue 9: a recorded pid reused by another process): the column
// is added to an engine.db of an older version, a read-only open of such a file still works, a
// row without a start time keeps the old checks (a live pid, on Linux a supervisor's command
// line), and a row whose start time differs from the live process's is stale: not running, and
// deleted by a writer, without the process being signalled.
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb, openDbReadOnly } from '../../src/engine/db.js';
import { Registry } from '../../src/engine/registry.js';
import { platformAdapter } from '../../src/platform/adapter.js';
import { tempDir } from '../helpers/tmp.js';

let dir: string;
/** A process whose command line is a modelhub supervisor's (`node …/supervisor.js --service x@v`), and is none. */
let lookalike: ChildProcess;
let lookalikePid: number;

beforeAll(async () => {
  dir = await tempDir('modelhub-runtime-rows-');
  const script = path.join(dir, 'supervisor.js');
  await writeFile(script, 'setInterval(() => {}, 1000);\n');
  lookalike = spawn(process.execPath, [script, '--service', 'svc@1.0.0'], { stdio: 'ignore' });
  lookalikePid = lookalike.pid ?? 0;
});

afterAll(() => {
  lookalike.kill('SIGKILL');
});

/** An engine.db as an older version left it: the runtime table without start_time. */
function oldDb(name: string, rows: { id: string; pid: number }[]): string {
  const file = path.join(dir, name, 'engine.db');
  const db = openDb(file);
  db.exec('ALTER TABLE runtime DROP COLUMN start_time');
  for (const r of rows) {
    db.prepare('INSERT INTO services (id, current, previous, updated_at) VALUES (?, ?, NULL, 0)').run(r.id, '1.0.0');
    db.prepare("INSERT INTO service_versions (id, version, manifest, key_id, installed_at) VALUES (?, '1.0.0', '{}', NULL, 0)").run(r.id);
    db.prepare("INSERT INTO runtime (id, version, pid, port, started_at, log) VALUES (?, '1.0.0', ?, 1, 0, 'x.log')").run(r.id, r.pid);
  }
  db.close();
  return file;
}

function columns(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try {
    return (db.pragma('table_info(runtime)') as { name: string }[]).map((c) => c.name);
  } finally {
    db.close();
  }
}

describe('runtime rows: start_time', () => {
  it('a read-only open of an older engine.db works; rows without a start time keep the old checks', () => {
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const file = oldDb('old-ro', [
        { id: 'looks-like-ours', pid: lookalikePid },
        { id: 'not-a-supervisor', pid: other.pid ?? 0 },
        { id: 'dead', pid: 2 ** 22 + 12345 },
      ]);
      expect(columns(file)).not.toContain('start_time');
      const db = openDbReadOnly(file)!;
      try {
        const registry = new Registry(db);
        expect(registry.runtimeOf('looks-like-ours')?.start_time).toBeUndefined();
        // Without a start time: alive, and (Linux) a supervisor's command line → running, as before.
        expect(registry.liveRuntimeOf('looks-like-ours')).toMatchObject({ pid: lookalikePid });
        expect(registry.installedState('looks-like-ours').running).toBe(true);
        // Alive but not a supervisor (Linux shows its command line), or dead: not running.
        expect(registry.liveRuntimeOf('not-a-supervisor')).toBeUndefined();
        expect(registry.liveRuntimeOf('dead')).toBeUndefined();
        expect(registry.services().map((s) => [s.id, s.running])).toEqual([
          ['dead', false],
          ['looks-like-ours', true],
          ['not-a-supervisor', false],
        ]);
        // A read-only view deletes nothing.
        expect(registry.runtimeOf('not-a-supervisor')).toBeDefined();
      } finally {
        db.close();
      }
      expect(platformAdapter.isAlive(other.pid ?? 0)).toBe(true);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('openDb adds the column to an older engine.db, once, keeping its rows', () => {
    const file = oldDb('old-rw', [{ id: 'svc', pid: lookalikePid }]);
    const first = openDb(file);
    first.close();
    expect(columns(file)).toContain('start_time');
    const again = openDb(file); // already migrated: nothing to do, no error
    try {
      expect(again.prepare('SELECT id, pid, start_time FROM runtime').all()).toEqual([{ id: 'svc', pid: lookalikePid, start_time: null }]);
    } finally {
      again.close();
    }
    expect(columns(file).filter((c) => c === 'start_time')).toHaveLength(1);
  });

  it('a row with another start time than the live process is stale: not running, deleted by a writer, nothing signalled', () => {
    const file = path.join(dir, 'new', 'engine.db');
    const db = openDb(file);
    try {
      const real = platformAdapter.processStartTime(lookalikePid);
      expect(real).not.toBeNull();
      db.prepare("INSERT INTO services (id, current, previous, updated_at) VALUES ('svc', '1.0.0', NULL, 0)").run();
      db.prepare("INSERT INTO service_versions (id, version, manifest, key_id, installed_at) VALUES ('svc', '1.0.0', '{}', NULL, 0)").run();
      const insert = db.prepare("INSERT OR REPLACE INTO runtime (id, version, pid, port, started_at, log, start_time) VALUES ('svc', '1.0.0', ?, 1, 0, 'x.log', ?)");
      const registry = new Registry(db);

      insert.run(lookalikePid, real);
      expect(registry.liveRuntimeOf('svc')).toMatchObject({ pid: lookalikePid, start_time: real });
      expect(registry.installedState('svc').running).toBe(true);

      // The command line passes for a supervisor's; only the start time tells it is another process.
      insert.run(lookalikePid, real!.replace(/\d+$/, (t) => String(Number(t) - 1)));
      const ro = openDbReadOnly(file)!;
      try {
        expect(new Registry(ro).liveRuntimeOf('svc')).toBeUndefined();
        expect(new Registry(ro).runtimeOf('svc')).toBeDefined(); // left to a writer
      } finally {
        ro.close();
      }
      expect(registry.installedState('svc').running).toBe(false);
      expect(registry.runtimeOf('svc')).toBeUndefined(); // deleted
      expect(registry.services()).toMatchObject([{ id: 'svc', running: false }]);
      expect(lookalike.exitCode).toBeNull();
      expect(lookalike.signalCode).toBeNull();
      expect(platformAdapter.isAlive(lookalikePid)).toBe(true);
    } finally {
      db.close();
    }
  });
});
