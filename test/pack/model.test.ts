import { readdir, readFile, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pack, packModel } from '../../src/pack/index.js';
import { modelManifestSchema } from '../../src/schemas/manifest.js';
import { cleanupTempDirs, makeModel, put, rejection, sha256File, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

async function allFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const r = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await allFiles(root, r)));
    else out.push(r);
  }
  return out.sort();
}

describe('pack: model', () => {
  it('copies the files beside model.json and writes a model manifest', async () => {
    const src = await makeModel();
    const out = await tempDir();
    const res = await pack(src, out);
    expect(res.kind).toBe('model');
    expect(res.id).toBe('m2m100-en-zh');
    expect(res.version).toBe('1.0.0');
    expect(res.platform).toBeUndefined();
    expect(res.archivePath).toBeUndefined();
    expect(res.manifestPath).toBe(path.join(out, 'manifest.json'));

    expect(await allFiles(out)).toEqual(['manifest.json', 'tokenizer.json', 'tools/convert.sh', 'weights/model.safetensors']);
    const text = await readFile(res.manifestPath, 'utf8');
    const m = JSON.parse(text) as Record<string, unknown> & { files: { path: string; sha256: string; size: number; mode: number }[] };
    expect(text).toBe(`${JSON.stringify(m, null, 2)}\n`);
    expect(modelManifestSchema.safeParse(m).success).toBe(true);
    expect(Object.keys(m)).toEqual(['schema', 'kind', 'id', 'version', 'files', 'model', 'created_at']);
    expect(m).toMatchObject({ schema: 1, kind: 'model', id: 'm2m100-en-zh', version: '1.0.0', created_at: '2025-12-17T00:00:00Z' });
    expect('platform' in m).toBe(false);
    expect('archive' in m).toBe(false);
    expect(m.model).toEqual({ name: 'M2M100 en→zh', task: 'translation', languages: ['en', 'zh'], license: 'MIT' });

    expect(m.files.map((f) => f.path)).toEqual(['tokenizer.json', 'tools/convert.sh', 'weights/model.safetensors']);
    for (const f of m.files) {
      const copy = path.join(out, f.path);
      expect(f.sha256).toBe(await sha256File(path.join(src, f.path)));
      expect(await sha256File(copy)).toBe(f.sha256);
      expect((await stat(copy)).size).toBe(f.size);
      const want = f.path === 'tools/convert.sh' ? 0o755 : 0o644;
      expect(f.mode).toBe(want);
      expect((await stat(copy)).mode & 0o7777).toBe(want);
    }
    expect(res.files).toBe(3);
    expect(res.bytes).toBe(m.files.reduce((n, f) => n + f.size, 0));
  });

  it('is byte-identical for identical input', async () => {
    const src = await makeModel();
    const a = await tempDir();
    const b = await tempDir();
    await packModel(src, a);
    await packModel(src, b);
    const files = await allFiles(a);
    expect(await allFiles(b)).toEqual(files);
    for (const f of files) expect((await readFile(path.join(a, f))).equals(await readFile(path.join(b, f)))).toBe(true);
  });

  it('packs into an --out directory inside the source without packing itself', async () => {
    const src = await makeModel();
    await put(src, '.git/config', '[core]\n');
    const out = path.join(src, 'out');
    const first = await pack(src, out);
    const second = await pack(src, out);
    expect(second.manifest.files.map((f) => f.path)).toEqual(['tokenizer.json', 'tools/convert.sh', 'weights/model.safetensors']);
    expect(second.manifest).toEqual(first.manifest);
  });

  it('copies a symlink to a file inside the model as a regular file', async () => {
    const src = await makeModel();
    await symlink('tokenizer.json', path.join(src, 'vocab.json'));
    const out = await tempDir();
    const res = await pack(src, out);
    const entry = res.manifest.files.find((f) => f.path === 'vocab.json');
    expect(entry?.sha256).toBe(await sha256File(path.join(src, 'tokenizer.json')));
    expect((await stat(path.join(out, 'vocab.json'))).isFile()).toBe(true);
  });

  const refusals: { name: string; over: Record<string, unknown>; field: RegExp }[] = [
    { name: 'missing model_id', over: { model_id: undefined }, field: /model_id/ },
    { name: 'missing version', over: { version: undefined }, field: /version/ },
    { name: 'invalid SemVer', over: { version: '1.0.0.0' }, field: /version.*SemVer/ },
    { name: 'missing name', over: { name: undefined }, field: /name/ },
    { name: 'missing task', over: { task: undefined }, field: /task/ },
    { name: 'languages that are not strings', over: { languages: [1] }, field: /languages/ },
    { name: 'an unsafe model_id', over: { model_id: '../evil' }, field: /model_id/ },
  ];
  for (const c of refusals) {
    it(`refuses ${c.name}`, async () => {
      const out = await tempDir();
      const err = await rejection(async () => pack(await makeModel(c.over), out));
      expect(err.code).toBe('MANIFEST_INVALID');
      expect(err.message).toMatch(/^model\.json: /);
      expect(err.message).toMatch(c.field);
      expect(await readdir(out)).toEqual([]);
    });
  }

  it('refuses a model with no files', async () => {
    const src = await tempDir();
    await put(src, 'model.json', JSON.stringify({ model_id: 'empty', version: '1.0.0', name: 'E', task: 't', languages: [] }));
    const err = await rejection(async () => pack(src, await tempDir()));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/files/);
  });

  it('refuses a symlink leaving the model, and an --out that contains the source', async () => {
    const outside = await tempDir();
    await put(outside, 'w.bin', 'x');
    const src = await makeModel();
    await symlink(path.join(outside, 'w.bin'), path.join(src, 'w.bin'));
    const err = await rejection(async () => pack(src, await tempDir()));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/symlink "w\.bin" points outside/);

    const src2 = await makeModel();
    const err2 = await rejection(() => pack(src2, path.dirname(src2)));
    expect(err2.code).toBe('INVALID_REQUEST');
    expect(err2.message).toMatch(/--out/);
  });

  it('refuses a directory holding both service.json and model.json', async () => {
    const src = await makeModel();
    await put(src, 'service.json', '{}');
    const err = await rejection(async () => pack(src, await tempDir(), { platform: 'linux-x64' }));
    expect(err.code).toBe('INVALID_REQUEST');
  });
});
