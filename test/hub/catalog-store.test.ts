// The catalog interface (hub/catalog/store.ts) against both stores: SQLite in the storage folder
// and PostgreSQL in a throwaway cluster. The same expectations for both, with two store
// instances on one catalog standing for two hubs sharing it.
import { postgres } from '../helpers/postgres.js';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { openCatalog, parseCatalogUrl, type CatalogSpec } from '../../hub/catalog/open.js';
import { loadMigrations, migrationsDir, PgCatalogStore } from '../../hub/catalog/pg-store.js';
import type { CatalogStore, NewRelease } from '../../hub/catalog/store.js';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/** Two stores on one new catalog: two hubs sharing it. */
type Open = () => Promise<[CatalogStore, CatalogStore]>;

// Stores the tests opened, closed after the file (before the cluster stops).
const opened: CatalogStore[] = [];
afterAll(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

async function track(store: Promise<CatalogStore>): Promise<CatalogStore> {
  const s = await store;
  opened.push(s);
  return s;
}

const variants: { name: string; skip: boolean; open: Open }[] = [
  {
    name: 'SQLite',
    skip: false,
    open: async () => {
      const spec = parseCatalogUrl(undefined, path.join(await tempDir(), 'storage'));
      if (spec.dialect === 'sqlite') await mkdir(path.dirname(spec.file), { recursive: true });
      return [await track(openCatalog(spec)), await track(openCatalog(spec))];
    },
  },
  {
    name: 'PostgreSQL',
    skip: !postgres.available,
    open: async () => {
      const spec: CatalogSpec = { dialect: 'postgres', url: await postgres.newDatabase() };
      return [await track(openCatalog(spec)), await track(openCatalog(spec))];
    },
  },
];

function release(over: Partial<NewRelease> = {}): NewRelease {
  return {
    kind: 'service',
    id: 'demo-echo',
    version: '1.0.0',
    platform: 'linux-x64',
    size_bytes: 1234,
    sha256: 'a'.repeat(64),
    manifest: '{"schema":1}',
    key_id: '0123456789ABCDEF',
    stable: 0,
    created_at: '2026-01-01T00:00:00Z',
    published_at: '2026-01-02T00:00:00Z',
    ...over,
  };
}

/** A promise and its resolve, to hold a publish inside its transaction. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

for (const v of variants) {
  describe.skipIf(v.skip)(`the catalog on ${v.name}`, () => {
    it('lists releases newest first per id, inserts once (immutable), and keeps 64-bit sizes', async () => {
      const [a] = await v.open();
      for (const [version, platform] of [['1.0.0', 'linux-x64'], ['1.10.0', 'linux-x64'], ['1.2.0', 'windows-x64'], ['1.2.0', 'linux-x64'], ['2.0.0-rc.1', 'linux-x64']] as const) {
        expect(await a.insert(release({ version, platform }))).toBe(true);
      }
      expect(await a.insert(release({ id: 'another', size_bytes: 5 * 1024 ** 3 }))).toBe(true);
      expect(await a.insert(release({ kind: 'model', id: 'demo-tiny-nmt', platform: '' }))).toBe(true);
      // A second publish of the same release is refused, whatever it carries.
      expect(await a.insert(release({ sha256: 'b'.repeat(64) }))).toBe(false);

      const services = await a.releases('service');
      expect(services.map((r) => `${r.id}@${r.version}/${r.platform}`)).toEqual([
        'another@1.0.0/linux-x64',
        'demo-echo@2.0.0-rc.1/linux-x64',
        'demo-echo@1.10.0/linux-x64',
        'demo-echo@1.2.0/linux-x64',
        'demo-echo@1.2.0/windows-x64',
        'demo-echo@1.0.0/linux-x64',
      ]);
      expect((await a.releases('service', 'another'))[0]!.size_bytes).toBe(5 * 1024 ** 3);
      expect(await a.releases('model')).toEqual([{ ...release({ kind: 'model', id: 'demo-tiny-nmt', platform: '' }), rollout: 100 }]);
      expect(await a.release('service', 'demo-echo', '1.0.0', 'linux-x64')).toEqual({ ...release(), rollout: 100 });
      expect(await a.release('service', 'demo-echo', '1.0.0', 'darwin-arm64')).toBeUndefined();
      expect(await a.releases('service', 'ghost')).toEqual([]);
    });

    it('marks stable and sets the rollout share per version, every platform at once', async () => {
      const [a, b] = await v.open();
      await a.insert(release({ platform: 'linux-x64' }));
      await a.insert(release({ platform: 'windows-x64' }));
      await a.insert(release({ version: '1.1.0', rollout: 10 }));
      expect(await a.markStable('service', 'demo-echo', '1.0.0')).toBe(2);
      expect(await a.markStable('service', 'demo-echo', '9.9.9')).toBe(0);
      expect(await b.setRollout('service', 'demo-echo', '1.0.0', 25)).toBe(2);
      expect(await b.setRollout('service', 'ghost', '1.0.0', 25)).toBe(0);
      const rows = await b.releases('service', 'demo-echo');
      expect(rows.map((r) => [r.version, r.platform, r.stable, r.rollout])).toEqual([
        ['1.1.0', 'linux-x64', 0, 10],
        ['1.0.0', 'linux-x64', 1, 25],
        ['1.0.0', 'windows-x64', 1, 25],
      ]);
      for (const bad of [-1, 101, 2.5]) {
        await expect(a.setRollout('service', 'demo-echo', '1.0.0', bad)).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
      }
      await expect(a.insert(release({ version: '3.0.0', rollout: 250 }))).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
      expect(await a.setRollout('service', 'demo-echo', '1.1.0', 0)).toBe(1);
      expect((await a.release('service', 'demo-echo', '1.1.0', 'linux-x64'))!.rollout).toBe(0);
    });

    it("changeMark moves with every change another hub makes, and rests while nothing changes", async () => {
      const [a, b] = await v.open();
      const steps: [string, () => Promise<unknown>][] = [
        ['insert', () => b.insert(release())],
        ['markStable', () => b.markStable('service', 'demo-echo', '1.0.0')],
        ['setRollout', () => b.setRollout('service', 'demo-echo', '1.0.0', 50)],
        ['setMetadataDoc', () => b.setMetadataDoc('delegation', { text: 't', signature: 's' })],
        ['addKeyStatement', () => b.addKeyStatement({ kind: 'revocation', text: 'r', signature: 's' })],
        ['publish', () => b.publish(release({ version: '2.0.0' }), async () => undefined)],
      ];
      let mark = await a.changeMark();
      expect(await a.changeMark()).toBe(mark);
      for (const [what, step] of steps) {
        await step();
        const next = await a.changeMark();
        expect(next, what).not.toBe(mark);
        expect(await a.changeMark(), what).toBe(next);
        mark = next;
      }
      // A's own writes move its mark too.
      await a.insert(release({ version: '3.0.0' }));
      expect(await a.changeMark()).not.toBe(mark);
    });

    it('agrees on the snapshot serial across hubs: the same content keeps it, new content raises it', async () => {
      const [a, b] = await v.open();
      const now = Date.UTC(2026, 0, 1);
      const first = await a.metadataSerial('c1', now);
      expect(first).toBeGreaterThanOrEqual(Math.floor(now / 1000));
      expect(await b.metadataSerial('c1', now + 5000)).toBe(first);
      // Hubs asking at once for new content get one serial between them.
      const [x, y] = await Promise.all([a.metadataSerial('c2', now), b.metadataSerial('c2', now)]);
      expect(x).toBe(y);
      expect(x).toBeGreaterThan(first);
      // A clock behind the stored serial still moves it up.
      expect(await b.metadataSerial('c3', 0)).toBe(x + 1);
    });

    it('stores the delegation and key statements, in order, each statement once', async () => {
      const [a, b] = await v.open();
      expect(await a.metadataDoc('delegation')).toBeUndefined();
      await a.setMetadataDoc('delegation', { text: 'one', signature: 'sig1' });
      await b.setMetadataDoc('delegation', { text: 'two', signature: 'sig2' });
      expect(await a.metadataDoc('delegation')).toEqual({ text: 'two', signature: 'sig2' });
      expect(await a.addKeyStatement({ kind: 'rotation', text: 'rot', signature: 's1' })).toBe(true);
      expect(await b.addKeyStatement({ kind: 'revocation', text: 'rev', signature: 's2' })).toBe(true);
      expect(await a.addKeyStatement({ kind: 'rotation', text: 'rot', signature: 's1' })).toBe(false);
      expect(await b.keyStatements()).toEqual([
        { kind: 'rotation', text: 'rot', signature: 's1' },
        { kind: 'revocation', text: 'rev', signature: 's2' },
      ]);
    });

    it('counts demand and unmet demand from every hub, and ranks them together', async () => {
      const [a, b] = await v.open();
      expect(await a.ranking(10)).toEqual([]);
      expect(await a.addUsage('whisper', 4)).toBe(4);
      expect(await b.addUsage('whisper', 3_000_000_000)).toBe(3_000_000_004);
      expect(await a.addUsage('Beta', 2)).toBe(2);
      expect(await b.addUnavailable('marian', '2026-01-01T00:00:00Z')).toBe(1);
      expect(await a.addUnavailable('marian', '2026-01-01T00:00:01Z')).toBe(2);
      expect(await a.addUsage('alpha', 2)).toBe(2);
      expect(await b.addUnavailable('zeta', '2026-01-01T00:00:02Z')).toBe(1);
      expect(await a.addUsage('zeta', 1)).toBe(1);
      // Ties by model id in byte order: "Beta" < "alpha" < "marian" < "zeta".
      expect(await b.ranking(10)).toEqual([
        { model_id: 'whisper', request_count: 3_000_000_004, unavailable_count: 0 },
        { model_id: 'Beta', request_count: 2, unavailable_count: 0 },
        { model_id: 'alpha', request_count: 2, unavailable_count: 0 },
        { model_id: 'marian', request_count: 0, unavailable_count: 2 },
        { model_id: 'zeta', request_count: 1, unavailable_count: 1 },
      ]);
      expect(await a.ranking(2)).toHaveLength(2);
    });

    it('publish: the insert decides, the row commits only after the files are placed, a failed placement leaves nothing', async () => {
      const [a, b] = await v.open();
      // While `place` runs, no hub sees the release; once it resolved, every hub does.
      const hold = deferred();
      const entered = deferred();
      const publishing = a.publish(release(), async () => {
        entered.resolve();
        await hold.promise;
      });
      await entered.promise;
      expect(await b.release('service', 'demo-echo', '1.0.0', 'linux-x64')).toBeUndefined();
      expect(await b.releases('service')).toEqual([]);
      // Other writes of this hub and the other one go on meanwhile.
      const usage = Promise.all([a.addUsage('m', 1), b.addUsage('m', 1)]);
      hold.resolve();
      expect(await publishing).toBe(true);
      expect((await usage).sort()).toEqual([1, 2]);
      expect(await b.release('service', 'demo-echo', '1.0.0', 'linux-x64')).toMatchObject({ version: '1.0.0' });

      // It exists: false, and the placement never runs.
      let placed = false;
      expect(await b.publish(release({ sha256: 'c'.repeat(64) }), async () => void (placed = true))).toBe(false);
      expect(placed).toBe(false);
      expect((await a.release('service', 'demo-echo', '1.0.0', 'linux-x64'))!.sha256).toBe('a'.repeat(64));

      // The placement fails: the error comes through and no row is left; a later publish succeeds.
      await expect(a.publish(release({ version: '1.1.0' }), async () => Promise.reject(new Error('disk full')))).rejects.toThrow('disk full');
      expect(await b.release('service', 'demo-echo', '1.1.0', 'linux-x64')).toBeUndefined();
      expect(await b.publish(release({ version: '1.1.0' }), async () => undefined)).toBe(true);
    });

    it('publish: hubs racing for one release — exactly one places and wins, every time', async () => {
      const [a, b] = await v.open();
      for (let i = 0; i < 10; i++) {
        const version = `1.0.${i}`;
        const placedBy: string[] = [];
        const results = await Promise.all(
          [a, b, a, b].map((store, n) =>
            store.publish(release({ version, sha256: String(n).repeat(64) }), async () => {
              placedBy.push(String(n));
              await new Promise((r) => setTimeout(r, 5));
            }),
          ),
        );
        expect(results.filter((r) => r)).toHaveLength(1);
        expect(placedBy).toHaveLength(1);
        const winner = results.indexOf(true);
        expect(placedBy).toEqual([String(winner)]);
        expect((await b.release('service', 'demo-echo', version, 'linux-x64'))!.sha256).toBe(String(winner).repeat(64));
      }
    });

    it('withReleaseLock waits for a publish in flight and then sees its row', async () => {
      const [a, b] = await v.open();
      const hold = deferred();
      const entered = deferred();
      const publishing = a.publish(release(), async () => {
        entered.resolve();
        await hold.promise;
      });
      await entered.promise;
      const seen = b.withReleaseLock('service', 'demo-echo', '1.0.0', 'linux-x64', async (row) => row?.version ?? 'no row');
      const other = b.withReleaseLock('service', 'demo-echo', '9.0.0', 'linux-x64', async (row) => row?.version ?? 'no row');
      hold.resolve();
      expect(await publishing).toBe(true);
      expect(await seen).toBe('1.0.0');
      expect(await other).toBe('no row');
    });

    it('close is idempotent, and a closed store refuses work', async () => {
      const [a] = await v.open();
      await a.close();
      await a.close();
      await expect(a.releases('service')).rejects.toThrow();
    });
  });
}

describe.skipIf(!postgres.available)('PostgreSQL migrations', () => {
  it('are numbered SQL files found from the sources and from dist/, and shipped in the package', async () => {
    const fromSources = migrationsDir();
    expect(fromSources).toBe(path.join(REPO, 'hub', 'catalog', 'migrations', 'pg'));
    const compiled = (await import(path.join(REPO, 'dist', 'hub', 'catalog', 'pg-store.js'))) as { migrationsDir: () => string };
    expect(compiled.migrationsDir()).toBe(fromSources);
    expect((await loadMigrations()).map((m) => m.name)).toEqual(['001_init.sql', '002_rollout.sql']);
    const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files.some((f) => f.startsWith('hub/catalog/migrations'))).toBe(true);
  });

  it('are applied once under the advisory lock, however many hubs start at once', async () => {
    const url = await postgres.newDatabase();
    const stores = await Promise.all([1, 2, 3, 4].map(() => track(PgCatalogStore.open(url))));
    expect(await (stores[0] as PgCatalogStore).appliedMigrations()).toEqual([1, 2]);
    expect(await stores[3]!.insert(release())).toBe(true);
    expect(await stores[1]!.releases('service')).toHaveLength(1);
  });

  it('bring a catalog at migration 1 up to date with its rows untouched', async () => {
    const url = await postgres.newDatabase();
    const [first] = await loadMigrations();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('CREATE TABLE modelhub_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
      await client.query(first!.sql);
      await client.query("INSERT INTO modelhub_migrations (version, name) VALUES (1, '001_init.sql')");
      await client.query(
        "INSERT INTO releases (kind, id, version, platform, size_bytes, sha256, manifest, key_id, stable, created_at, published_at) VALUES ('service', 'old', '1.0.0', 'linux-x64', 7, 'ab', '{}', 'K', 1, 'c', 'p')",
      );
    } finally {
      await client.end();
    }
    const store = (await track(PgCatalogStore.open(url))) as PgCatalogStore;
    expect(await store.appliedMigrations()).toEqual([1, 2]);
    expect(await store.releases('service')).toEqual([
      { kind: 'service', id: 'old', version: '1.0.0', platform: 'linux-x64', size_bytes: 7, sha256: 'ab', manifest: '{}', key_id: 'K', stable: 1, rollout: 100, created_at: 'c', published_at: 'p' },
    ]);
  });

  it('refuse a database newer than this hub, and (for admin commands) one that holds no catalog', async () => {
    const url = await postgres.newDatabase();
    await expect(PgCatalogStore.open(url, { mustExist: true })).rejects.toThrow(/holds no modelhub catalog/);
    const store = await track(PgCatalogStore.open(url));
    await store.close();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query("INSERT INTO modelhub_migrations (version, name) VALUES (99, '099_future.sql')");
    await client.end();
    await expect(PgCatalogStore.open(url)).rejects.toThrow(/newer than this hub knows/);
  });
});

describe('opening the SQLite catalog for an admin command', () => {
  it('refuses a storage folder without hub.db instead of creating an empty catalog', async () => {
    const storage = path.join(await tempDir(), 'storage');
    await expect(openCatalog(parseCatalogUrl(undefined, storage), { mustExist: true })).rejects.toThrow(/no catalog at/);
  });
});
