// `hub serve --db`: the hub keeps its catalog in SQLite at <storage>/hub.db. A --db naming that
// file is accepted; every other value (another file, in-memory, a query string, another
// database) is refused as bad usage (exit 2) instead of being silently ignored.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import { tempDir } from '../helpers/tmp.js';

describe('hub serve --db', () => {
  it('refuses what it would not honour: exit 2, a clear message, nothing created', async () => {
    const work = await tempDir();
    const storage = path.join(work, 'storage');
    const elsewhere = path.join(work, 'elsewhere', 'catalog.db');
    const refused = [
      'postgres://hub@127.0.0.1:5432/modelhub',
      'mysql://hub@127.0.0.1/modelhub',
      `sqlite:${elsewhere}`,
      'sqlite::memory:',
      'sqlite:',
      `sqlite:${path.join(storage, 'hub.db')}?mode=ro`,
      `sqlite:${path.join(storage, 'other.db')}`,
    ];
    for (const db of refused) {
      // A refusal is immediate; a hub that starts anyway is killed by the timeout and fails here.
      const r = await runCli(['hub', 'serve', '--storage', storage, '--port', '0', '--db', db, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN }, 15_000);
      expect(r.code, `${db}: ${r.stdout}`).toBe(2);
      expect(r.result, db).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
      const message = String((r.result!.error as { message: string }).message);
      expect(message, db).toContain('--db');
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
    const child = spawnCli(['hub', 'serve', '--storage', storage, '--port', '0', '--db', `sqlite:${db}`, '--json'], { MODELHUB_ADMIN_TOKEN: TEST_TOKEN });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      const ready = await waitForLine(child, 'ready');
      const url = String(ready.url);
      expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok' });
      expect(await (await fetch(`${url}/api/models`)).json()).toEqual([]);
      expect(existsSync(db)).toBe(true);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
