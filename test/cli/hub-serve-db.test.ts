// `hub serve --db`: SQLite at <storage>/hub.db (the default, also as sqlite:<storage>/hub.db) or
// PostgreSQL (postgres://USER@HOST:PORT/DB). Every other value (another file, in-memory, a query
// string, another database, a PostgreSQL URL without a database) is refused as bad usage (exit 2)
// instead of being silently ignored.
import { postgres } from '../helpers/postgres.js';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import { tempDir } from '../helpers/tmp.js';

async function serveOnce(storage: string, db: string): Promise<{ url: string; catalog: string; stop: () => Promise<number | null> }> {
  const child = spawnCli(['hub', 'serve', '--storage', storage, '--port', '0', '--db', db, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const ready = await waitForLine(child, 'ready');
    return {
      url: String(ready.url),
      catalog: String(ready.catalog),
      stop: async () => {
        child.kill('SIGTERM');
        return exited;
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

describe('hub serve --db', () => {
  it('refuses what it would not honour: exit 2, a clear message, nothing created', async () => {
    const work = await tempDir();
    const storage = path.join(work, 'storage');
    const elsewhere = path.join(work, 'elsewhere', 'catalog.db');
    const refused = [
      'mysql://hub@127.0.0.1/modelhub',
      'postgres://hub@127.0.0.1:5432',
      'postgres://hub@127.0.0.1:5432/',
      'postgres://[bad',
      `sqlite:${elsewhere}`,
      'sqlite::memory:',
      'sqlite:',
      `sqlite:${path.join(storage, 'hub.db')}?mode=ro`,
      `sqlite:${path.join(storage, 'other.db')}`,
      path.join(storage, 'hub.db'),
    ];
    for (const db of refused) {
      // A refusal is immediate; a hub that starts anyway is killed by the timeout and fails here.
      const r = await runCli(['hub', 'serve', '--storage', storage, '--port', '0', '--db', db, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN }, 15_000);
      expect(r.code, `${db}: ${r.stdout}`).toBe(2);
      expect(r.result, db).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
      const message = String((r.result!.error as { message: string }).message);
      expect(message, db).toContain('--db');
      expect(message, db).toContain('postgres://USER@HOST:PORT/DB');
      expect(message, db).toContain(path.join(storage, 'hub.db'));
      expect(r.lines.some((l) => l.type === 'ready'), db).toBe(false);
    }
    expect(existsSync(storage)).toBe(false);
    expect(existsSync(path.dirname(elsewhere))).toBe(false);
  });

  it('accepts sqlite:<storage>/hub.db, and that is where the catalog is', async () => {
    const work = await tempDir();
    const storage = path.join(work, 'storage');
    const db = path.join(storage, 'hub.db');
    const hub = await serveOnce(storage, `sqlite:${db}`);
    try {
      expect(await (await fetch(`${hub.url}/health`)).json()).toEqual({ status: 'ok' });
      expect(await (await fetch(`${hub.url}/api/models`)).json()).toEqual([]);
      expect(existsSync(db)).toBe(true);
      expect(hub.catalog).toBe(db);
    } finally {
      expect(await hub.stop()).toBe(0);
    }
  });

  it('fails (exit 1, no ready line) when the PostgreSQL server cannot be reached', async () => {
    const work = await tempDir();
    // Port 1 on loopback: nothing listens there.
    const r = await runCli(['hub', 'serve', '--storage', path.join(work, 'storage'), '--port', '0', '--db', 'postgres://hub@127.0.0.1:1/modelhub', '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN }, 30_000);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false });
    expect(r.lines.some((l) => l.type === 'ready')).toBe(false);
  });

  describe.skipIf(!postgres.available)('on PostgreSQL', () => {
    it('keeps the catalog in the database: no hub.db, and a second hub sees what the first one stored', async () => {
      const url = await postgres.newDatabase();
      const storage = path.join(await tempDir(), 'storage');
      const first = await serveOnce(storage, url);
      try {
        const usage = await fetch(`${first.url}/api/model-usage`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_TOKEN}` },
          body: JSON.stringify({ model_id: 'whisper', count: 7 }),
        });
        expect(usage.status).toBe(200);
      } finally {
        expect(await first.stop()).toBe(0);
      }
      expect(existsSync(path.join(storage, 'hub.db'))).toBe(false);
      // With a password in the URL (trust authentication ignores it): never shown.
      const second = await serveOnce(storage, url.replace('postgres://postgres@', 'postgres://postgres:s3cret@'));
      try {
        expect(second.catalog).toBe(url.replace('postgres://postgres@', 'postgres://postgres:***@'));
        expect(await (await fetch(`${second.url}/api/model-usage/ranking`)).json()).toEqual([{ model_id: 'whisper', request_count: 7, unavailable_count: 0, rank: 1 }]);
      } finally {
        expect(await second.stop()).toBe(0);
      }
    });
  });
});
