// kill -9 of the real CLI in the middle of an update, then `recover`: `current` is always a
// complete old or new version, no job is left in flight, and resuming means the package is not
// fetched again from the start. A kill during the health check rolls back to the version that
// was running.
//
// Each kill lands where the test says, whatever the machine's speed: the test watches the job's
// persisted state in engine.db (read-only) and kills when the process under test has reached the
// state (and, while downloading, has written bytes), records the state persisted right after the
// kill, and asserts at the end that the kills landed in downloading, staging, switching and
// health checking. Each state is made to last with test-side means only: a rate-limited proxy
// (downloading), a package of many files staged without the streaming stager (staging), debris
// of an earlier attempt in the version directory that the switch must clear (switching), and a
// startup grace (health checking). A kill that still lands elsewhere (the process moved on before
// the signal arrived) is recorded, checked like any other, and that case is tried again.
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishDir } from '../../src/admin/publish-client.js';
import { writeDemoService } from '../../src/demo/fixtures.js';
import { openDbReadOnly } from '../../src/engine/db.js';
import { pack } from '../../src/pack/index.js';
import type { ServiceManifest } from '../../src/schemas/manifest.js';
import { spawnCli } from '../helpers/cli.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import { signManifest } from '../helpers/releases.js';
import { currentOf, makeBench, partBytes, type Bench } from './fixture.js';

let b: Bench;
const MiB = 1024 * 1024;
const PACKAGE_MODEL_BYTES = 16 * MiB;
/**
 * Files in the release whose staging is killed, and in the debris the switch must clear: enough
 * for staging (about 4 s here) and switching (about 1.5 s) to outlast a 5 ms poll by far.
 */
const MANY_FILES = 2000;
const DEBRIS_FILES = 30_000;
const manifests = new Map<string, ServiceManifest>();

/** A release of the demo service with `files` extra small files under data/ (staging takes a while). */
async function publishWithFiles(version: string, files: number): Promise<void> {
  const src = path.join(b.work, 'src', `many-${version}`);
  await writeDemoService(src, { version });
  mkdirSync(path.join(src, 'data'), { recursive: true });
  for (let i = 0; i < files; i++) writeFileSync(path.join(src, 'data', `f${String(i).padStart(5, '0')}.txt`), `file ${i}\n`.repeat(16));
  const out = path.join(b.work, 'out', `many-${version}`);
  await pack(src, out, { platform: 'linux-x64' });
  await signManifest(out, b.key);
  await publishDir(out, { hub: b.hub.url, token: TEST_TOKEN });
  manifests.set(version, JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')) as ServiceManifest);
}

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0', modelBytes: PACKAGE_MODEL_BYTES });
  await b.publish({ version: '1.1.0', modelBytes: PACKAGE_MODEL_BYTES + 1 });
  await b.publish({ version: '1.2.0', extra: { health_check: { type: 'http', endpoint: '/health', startup_grace_ms: 4000, interval_ms: 100, timeout_ms: 10_000 } } });
  for (const v of ['1.0.0', '1.1.0', '1.2.0']) {
    const m = b.releases.get(`demo-echo@${v}`)!.manifest;
    if (m.kind !== 'service') throw new Error('service');
    manifests.set(v, m);
  }
  await publishWithFiles('1.3.0', MANY_FILES);
}, 180_000);

function manifestOf(version: string): ServiceManifest {
  const m = manifests.get(version);
  if (m === undefined) throw new Error(`no release ${version}`);
  return m;
}

const zipOf = (version: string): string => `/storage/services/demo-echo/${version}/linux-x64/service.zip`;

/** Every file of the version `current` points to is there, whole, and nothing else of note. */
async function assertCompleteCurrent(home: string, allowed: string[]): Promise<string> {
  const current = await currentOf(home, 'demo-echo');
  expect(allowed).toContain(current);
  const dir = path.join(home, 'services', 'demo-echo', 'current');
  const svc = JSON.parse(await readFile(path.join(dir, 'service.json'), 'utf8')) as { version: string };
  expect(svc.version).toBe(current);
  for (const f of manifestOf(current!).files) expect((await stat(path.join(dir, f.path))).size, f.path).toBe(f.size);
  return current!;
}

type Target = 'downloading' | 'staging' | 'switching' | 'health_checking';

interface Case {
  target: Target;
  /** The update that is killed; 1.0.0 is installed (and running, with `start`) before it. */
  version: string;
  start: boolean;
  env?: Record<string, string>;
  /** Makes the target state last (test-side only). */
  prepare?: (home: string) => Promise<void> | void;
  /** Besides the state: the process has done some of the state's work. */
  ready?: (home: string) => boolean;
  after?: () => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the update and SIGKILLs it once engine.db says its job is in `c.target` (and `c.ready`).
 * Returns the state it was seen in when killed (null: it never got there) and the state
 * persisted right after the kill.
 */
async function killWhenReached(home: string, c: Case): Promise<{ seen: string | null; landed: string }> {
  const target = `demo-echo@${c.version}`;
  const child = spawnCli(['install', target, ...(c.start ? [] : ['--no-start']), '--home', home, '--hub', b.proxy.url, '--json'], c.env ?? {});
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const db = openDbReadOnly(path.join(home, 'engine.db'));
  if (db === null) throw new Error('no engine.db: 1.0.0 was installed first');
  try {
    const job = db.prepare('SELECT state, active FROM jobs WHERE target = ? ORDER BY started_at DESC LIMIT 1');
    const read = (): { state: string; active: number } | undefined => job.get(target) as { state: string; active: number } | undefined;
    let seen: string | null = null;
    const giveUp = Date.now() + 120_000;
    while (!exited && Date.now() < giveUp) {
      const row = read();
      if (row !== undefined && row.active === 1 && row.state === c.target && (c.ready?.(home) ?? true)) {
        child.kill('SIGKILL');
        seen = row.state;
        break;
      }
      if (row !== undefined && row.active === 0) break; // over before it got there
      await sleep(5);
    }
    if (!exited) child.kill('SIGKILL');
    await exit;
    return { seen, landed: read()?.state ?? 'no job' };
  } finally {
    db.close();
  }
}

const cases: Case[] = [
  {
    target: 'downloading',
    version: '1.1.0',
    start: false,
    // About 8 s of download; killed once half the package is on disk, so that fetching it again
    // from the start would serve 1.5 times its size (the check below allows 1.25).
    prepare: () => {
      b.proxy.rate = 2 * MiB;
    },
    ready: (home) => partBytes(home) >= PACKAGE_MODEL_BYTES / 2,
    after: () => {
      b.proxy.rate = 0;
    },
  },
  {
    target: 'staging',
    version: '1.3.0',
    start: false,
    // Without the streaming stager the staging state extracts and fsyncs every one of the files.
    env: { MODELHUB_PRESTAGE: '0' },
  },
  {
    target: 'switching',
    version: '1.1.0',
    start: false,
    // An unregistered 1.1.0 directory (debris of an earlier attempt) that the switch must clear.
    prepare: (home) => {
      const debris = path.join(home, 'services', 'demo-echo', '1.1.0', 'debris');
      for (let d = 0; d < DEBRIS_FILES / 500; d++) {
        mkdirSync(path.join(debris, String(d)), { recursive: true });
        for (let i = 0; i < 500; i++) writeFileSync(path.join(debris, String(d), String(i)), '');
      }
    },
  },
  {
    target: 'health_checking',
    version: '1.2.0',
    start: true, // 1.2.0 waits 4 s before its first health check
  },
];

const landings: { target: Target; seen: string | null; landed: string }[] = [];

describe('kill -9 during an update, then recover', () => {
  for (const c of cases) {
    it(`a kill in ${c.target} leaves a complete old or new version, nothing in flight`, async () => {
      for (let attempt = 1; attempt <= 3; attempt++) {
        const home = await b.newHome();
        expect((await b.cli(home, ['install', 'demo-echo@1.0.0', ...(c.start ? [] : ['--no-start'])])).result).toMatchObject({ ok: true });
        await c.prepare?.(home);
        b.proxy.bytes.delete(zipOf(c.version));
        let kill;
        try {
          kill = await killWhenReached(home, c);
        } finally {
          c.after?.();
        }
        landings.push({ target: c.target, ...kill });

        const rec = await b.cli(home, ['recover']);
        expect(rec.code, rec.stderr).toBe(0);
        const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { state: string }[];
        for (const j of jobs) expect(['committed', 'failed', 'rolled_back', 'cancelled']).toContain(j.state);
        const current = await assertCompleteCurrent(home, ['1.0.0', c.version]);

        if (kill.landed === 'health_checking') {
          // After the switch and before the commit: back to the version that was running.
          expect(rec.result).toMatchObject({ ok: true, recovered: [{ from: 'health_checking', state: 'rolled_back' }] });
          expect(current).toBe('1.0.0');
          const status = (await b.cli(home, ['status'])).result!.services as { version: string; healthy: boolean; port: number }[];
          expect(status).toEqual([expect.objectContaining({ version: '1.0.0', healthy: true })]);
          const res = await fetch(`http://127.0.0.1:${status[0]!.port}/`);
          expect(await res.json()).toMatchObject({ version: '1.0.0' });
        } else if (current === '1.0.0') {
          // Interrupted before the switch: finishing the update must not start over.
          const fin = await b.cli(home, ['install', `demo-echo@${c.version}`, ...(c.start ? [] : ['--no-start'])]);
          expect(fin.result, fin.stderr).toMatchObject({ ok: true, current: c.version });
          await assertCompleteCurrent(home, [c.version]);
        }
        // Resumed, never fetched again from the start.
        expect(b.proxy.bytes.get(zipOf(c.version)) ?? 0).toBeLessThan(1.25 * manifestOf(c.version).archive.size);
        if (kill.landed === 'switching') {
          // The debris is gone; the new version is the signed one.
          await expect(stat(path.join(home, 'services', 'demo-echo', 'current', 'debris'))).rejects.toMatchObject({ code: 'ENOENT' });
        }
        if (c.start) await b.cli(home, ['uninstall', 'demo-echo']);
        if (kill.landed === c.target) break;
      }
      expect(landings.filter((l) => l.target === c.target).map((l) => l.landed)).toContain(c.target);
    }, 300_000);
  }

  it('the kills landed in downloading, staging, switching and health checking', async () => {
    const landed = new Set(landings.map((l) => l.landed));
    for (const t of cases.map((c) => c.target)) expect([...landed], JSON.stringify(landings)).toContain(t);
  });
});
