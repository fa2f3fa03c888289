// Models: pull (resumable, verified, three files at a time), path (fails fast with the reason),
// list, ranking.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { TEST_TOKEN } from '../helpers/hub.js';
import { spawnCli } from '../helpers/cli.js';
import type { BuiltRelease } from '../helpers/releases.js';
import { makeBench, type Bench } from './fixture.js';

let b: Bench;
let model: BuiltRelease;

beforeAll(async () => {
  b = await makeBench();
  model = await b.publishModel({ id: 'tiny-nmt', version: '1.0.0', files: { 'weights/a.bin': 3 * 1024 * 1024, 'weights/b.bin': 3 * 1024 * 1024, 'vocab.txt': 4096, 'config.json': 0 } });
  await b.publishModel({ id: 'tiny-nmt', version: '1.1.0' });
});

describe('models', () => {
  it('pull → path → list, every file as signed', async () => {
    const home = await b.newHome();
    const missing = await b.cli(home, ['models', 'path', 'tiny-nmt']);
    expect(missing.code).toBe(1);
    expect(missing.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' } });

    const pulled = await b.cli(home, ['models', 'pull', 'tiny-nmt@1.0.0']);
    expect(pulled.result).toMatchObject({ ok: true, id: 'tiny-nmt', version: '1.0.0', path: path.join(home, 'models', 'tiny-nmt', '1.0.0') });
    if (model.manifest.kind !== 'model') throw new Error('model');
    for (const f of model.manifest.files) {
      const got = await readFile(path.join(home, 'models', 'tiny-nmt', '1.0.0', f.path));
      expect(got.equals(await readFile(path.join(model.dir, f.path))), f.path).toBe(true);
    }
    const p = await b.cli(home, ['models', 'path', 'tiny-nmt']);
    expect(p.result).toMatchObject({ ok: true, path: path.join(home, 'models', 'tiny-nmt', '1.0.0') });
    expect((await b.cli(home, ['models', 'path', 'tiny-nmt@1.1.0'])).result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'not_installed' } });
    expect((await b.cli(home, ['models', 'list'])).result).toMatchObject({ ok: true, models: [{ id: 'tiny-nmt', versions: ['1.0.0'] }] });
    expect((await b.cli(home, ['list'])).result).toMatchObject({ models: [{ id: 'tiny-nmt', versions: ['1.0.0'] }] });
    const again = await b.cli(home, ['models', 'pull', 'tiny-nmt@1.0.0']);
    expect(again.result).toMatchObject({ ok: true, path: path.join(home, 'models', 'tiny-nmt', '1.0.0') });
    const latest = await b.cli(home, ['models', 'pull', 'tiny-nmt']);
    expect(latest.result).toMatchObject({ ok: true, version: '1.1.0' });
  });

  it('a pull that fails verification says why in models path', async () => {
    const home = await b.newHome();
    const keyId = ((await b.cli(home, ['trust', 'list'])).result!.keys as { key_id: string }[])[0]!.key_id;
    await b.cli(home, ['trust', 'remove', keyId]);
    const r = await b.cli(home, ['models', 'pull', 'tiny-nmt@1.0.0']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'UNTRUSTED_KEY' } });
    expect((await b.cli(home, ['models', 'path', 'tiny-nmt@1.0.0'])).result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'error' } });
  });

  it('while a pull downloads, models path says downloading; a killed pull resumes', async () => {
    const home = await b.newHome();
    b.proxy.rate = 1024 * 1024;
    b.proxy.bytes.clear();
    try {
      const child = spawnCli(['models', 'pull', 'tiny-nmt@1.0.0', '--home', home, '--hub', b.proxy.url, '--json']);
      const exited = new Promise((r) => child.once('exit', r));
      const deadline = Date.now() + 20_000;
      let reason = '';
      while (Date.now() < deadline) {
        const p = await b.cli(home, ['models', 'path', 'tiny-nmt@1.0.0']);
        reason = String((p.result!.error as { reason?: string } | undefined)?.reason ?? '');
        if (reason === 'downloading' && [...b.proxy.bytes.values()].reduce((x, y) => x + y, 0) > 1024 * 1024) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(reason).toBe('downloading');
      child.kill('SIGKILL');
      await exited;
    } finally {
      b.proxy.rate = 0;
    }
    const r = await b.cli(home, ['models', 'pull', 'tiny-nmt@1.0.0']);
    expect(r.result).toMatchObject({ ok: true });
    const served = [...b.proxy.bytes.values()].reduce((x, y) => x + y, 0);
    if (model.manifest.kind !== 'model') throw new Error('model');
    const total = model.manifest.files.reduce((n, f) => n + f.size, 0);
    expect(served).toBeLessThan(1.25 * total);
    expect((await stat(path.join(home, 'models', 'tiny-nmt', '1.0.0', 'weights', 'b.bin'))).size).toBe(3 * 1024 * 1024);
    const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { kind: string; state: string; restores: number }[];
    // The killed job was finished by recovery (restored once); the new request then found it done.
    expect(jobs.map((j) => `${j.kind} ${j.state}`)).toEqual(['model_pull committed', 'model_pull committed']);
    expect(jobs[0]!.restores).toBe(1);
    const log = (await b.cli(home, ['events'])).result!.events as { job_id: string; type: string }[];
    expect(log.filter((e) => e.type === 'xstate.done.actor.downloadModelFiles')).toHaveLength(1);
  });

  it('ranking comes from the hub', async () => {
    await fetch(`${b.hub.url}/api/model-usage`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ model_id: 'tiny-nmt', count: 7 }) });
    const home = await b.newHome();
    const r = await b.cli(home, ['models', 'ranking']);
    expect(r.result).toMatchObject({ ok: true, ranking: [{ model_id: 'tiny-nmt', request_count: 7, rank: 1 }] });
  });
});
