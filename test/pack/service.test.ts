import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { access, constants, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pack, packService } from '../../src/pack/index.js';
import { serviceManifestSchema } from '../../src/schemas/manifest.js';
import { cleanupTempDirs, makeService, put, readZip, rejection, sha256File, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

async function allFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const r = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await allFiles(root, r)));
    else out.push(r);
  }
  return out;
}

describe('pack: service', () => {
  it('writes service.zip and manifest.json that describe the source exactly', async () => {
    const src = await makeService();
    const out = path.join(await tempDir(), 'nested', 'out');
    const res = await pack(src, out, { platform: 'linux-x64' });

    expect(res.kind).toBe('service');
    expect(res.id).toBe('nmt-demo');
    expect(res.version).toBe('1.2.0');
    expect(res.platform).toBe('linux-x64');
    expect(res.archivePath).toBe(path.join(out, 'service.zip'));
    expect(res.manifestPath).toBe(path.join(out, 'manifest.json'));
    expect((await readdir(out)).sort()).toEqual(['manifest.json', 'service.zip']);

    const text = await readFile(res.manifestPath, 'utf8');
    const m = JSON.parse(text) as Record<string, unknown> & {
      files: { path: string; sha256: string; size: number; mode: number }[];
      archive: { path: string; sha256: string; size: number };
      service: Record<string, unknown>;
    };
    expect(text).toBe(`${JSON.stringify(m, null, 2)}\n`);
    expect(Object.keys(m)).toEqual(['schema', 'kind', 'id', 'version', 'platform', 'archive', 'files', 'service', 'created_at']);
    expect(serviceManifestSchema.safeParse(m).success).toBe(true);
    expect(m.schema).toBe(1);
    expect(m.created_at).toBe('2025-12-17T00:00:00Z');

    // Every source file is listed, with its real hash, size and normalised mode.
    const srcFiles = (await allFiles(src)).sort();
    expect(m.files.map((f) => f.path).sort()).toEqual(srcFiles);
    for (const f of m.files) {
      const p = path.join(src, f.path);
      expect(f.sha256).toBe(await sha256File(p));
      expect(f.size).toBe((await stat(p)).size);
      expect(f.mode).toBe(f.path === 'runtime/bin/run.sh' ? 0o755 : 0o644);
    }
    expect(res.files).toBe(srcFiles.length);
    expect(res.bytes).toBe(m.files.reduce((n, f) => n + f.size, 0));

    // The archive entry matches the file on disk.
    expect(m.archive.path).toBe('service.zip');
    expect(m.archive.sha256).toBe(await sha256File(path.join(out, 'service.zip')));
    expect(m.archive.size).toBe((await stat(path.join(out, 'service.zip'))).size);

    // The descriptor is kept verbatim, unknown fields and all (no schema defaults added).
    const original = JSON.parse(await readFile(path.join(src, 'service.json'), 'utf8')) as unknown;
    expect(m.service).toEqual(original);
    expect(m.service.x_future_field).toEqual({ nested: [1, 2, 3], flag: true });
    expect((res.manifest as { service: Record<string, unknown> }).service.x_future_field).toEqual({ nested: [1, 2, 3], flag: true });
  });

  it('stores entries sorted, with fixed times, normalised modes and per-file compression', async () => {
    const src = await makeService();
    await put(src, 'app/Zeta.py', 'z = 1\n'.repeat(100));
    await put(src, 'app-extra.txt', 'sorts before app/ in byte order\n'.repeat(50));
    const out = await tempDir();
    const res = await packService(src, out, { platform: 'linux-x64' });
    const entries = await readZip(path.join(out, 'service.zip'));
    const names = entries.map((e) => e.name);

    const byteSorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(names).toEqual(byteSorted);
    expect(names.indexOf('app-extra.txt')).toBeLessThan(names.indexOf('app/Zeta.py'));
    expect(names.indexOf('app/Zeta.py')).toBeLessThan(names.indexOf('app/__init__.py'));
    expect(names).toEqual(res.manifest.files.map((f) => f.path));
    expect(names.some((n) => n.endsWith('/'))).toBe(false);

    const get = (n: string) => {
      const e = entries.find((x) => x.name === n);
      if (e === undefined) throw new Error(`no entry ${n}`);
      return e;
    };
    expect(get('runtime/bin/run.sh').unixMode).toBe(0o100755);
    expect(get('app/main.py').unixMode).toBe(0o100644);
    expect(get('models/w.bin').compressionMethod).toBe(0); // by extension
    expect(get('data/random.dat').compressionMethod).toBe(0); // by the sample test
    expect(get('app/__init__.py').compressionMethod).toBe(0); // empty
    expect(get('app/main.py').compressionMethod).toBe(8);
    expect(get('service.json').compressionMethod).toBe(8);
    for (const e of entries) {
      // DOS date 1980-01-01 ((0 << 9) | (1 << 5) | 1), time 00:00:00.
      expect(e.lastModFileDate).toBe(33);
      expect(e.lastModFileTime).toBe(0);
      const listed = res.manifest.files.find((f) => f.path === e.name);
      expect(listed?.size).toBe(e.content.length);
      expect(e.content.equals(await readFile(path.join(src, e.name)))).toBe(true);
    }
  });

  it('keeps the exec bit through /usr/bin/unzip', async () => {
    const src = await makeService();
    const out = await tempDir();
    await pack(src, out, { platform: 'linux-x64' });
    const dest = await tempDir();
    execFileSync('/usr/bin/unzip', ['-q', path.join(out, 'service.zip'), '-d', dest]);
    const script = path.join(dest, 'runtime/bin/run.sh');
    expect((await stat(script)).mode & 0o777).toBe(0o755);
    await access(script, constants.X_OK);
    expect((await stat(path.join(dest, 'app/main.py'))).mode & 0o777).toBe(0o644);
    expect(execFileSync('/usr/bin/unzip', ['-tq', path.join(out, 'service.zip')]).toString()).toMatch(/No errors/);
  });

  it('is byte-identical for identical input, whatever the mtimes and time zone', async () => {
    const src = await makeService();
    const [a, b, c, d] = [await tempDir(), await tempDir(), await tempDir(), await tempDir()];
    await pack(src, a, { platform: 'linux-x64' });
    await pack(src, b, { platform: 'linux-x64' });

    const later = new Date(Date.now() + 86_400_000);
    for (const f of await allFiles(src)) await utimes(path.join(src, f), later, later);
    await pack(src, c, { platform: 'linux-x64' });

    const tz = process.env.TZ;
    process.env.TZ = 'Pacific/Kiritimati';
    try {
      await pack(src, d, { platform: 'linux-x64' });
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }

    for (const name of ['service.zip', 'manifest.json']) {
      const first = await readFile(path.join(a, name));
      for (const other of [b, c, d]) expect((await readFile(path.join(other, name))).equals(first)).toBe(true);
    }
  });

  it('skips .git and an --out directory inside the source', async () => {
    const src = await makeService();
    await put(src, '.git/HEAD', 'ref: refs/heads/main\n');
    await put(src, 'app/.gitignore', '*.pyc\n'); // dot files elsewhere are kept
    const out = path.join(src, 'dist');
    const first = await pack(src, out, { platform: 'linux-x64' });
    const second = await pack(src, out, { platform: 'linux-x64' });
    const paths = second.manifest.files.map((f) => f.path);
    expect(paths).toContain('app/.gitignore');
    expect(paths.some((p) => p.startsWith('.git/') || p.startsWith('dist/'))).toBe(false);
    expect(second.manifest).toEqual(first.manifest);
  });

  it('packs a symlink to a file inside the package as a regular file with its content', async () => {
    const src = await makeService();
    await symlink('main.py', path.join(src, 'app/alias.py'));
    await symlink('../runtime/bin/run.sh', path.join(src, 'app/run-link'));
    const out = await tempDir();
    const res = await pack(src, out, { platform: 'linux-x64' });
    const entries = await readZip(path.join(out, 'service.zip'));
    const alias = entries.find((e) => e.name === 'app/alias.py');
    const link = entries.find((e) => e.name === 'app/run-link');
    expect(alias?.unixMode).toBe(0o100644);
    expect(alias?.content.equals(await readFile(path.join(src, 'app/main.py')))).toBe(true);
    expect(link?.unixMode).toBe(0o100755); // the target's mode, never a symlink entry (0o120000)
    expect(res.manifest.files.find((f) => f.path === 'app/alias.py')?.sha256).toBe(await sha256File(path.join(src, 'app/main.py')));
  });

  it('accepts a bare program name (a PATH lookup)', async () => {
    const src = await makeService({
      platforms: { 'linux-x64': { exec: { type: 'argv', program: 'python3', args: ['app/main.py'] } } },
    });
    const res = await pack(src, await tempDir(), { platform: 'linux-x64' });
    expect(res.kind).toBe('service');
  });

  it('takes created_at from the option, then service.json, then SOURCE_DATE_EPOCH', async () => {
    const explicit = await pack(await makeService(), await tempDir(), { platform: 'linux-x64', createdAt: '2030-01-02T03:04:05Z' });
    expect(explicit.manifest.created_at).toBe('2030-01-02T03:04:05Z');

    const old = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    try {
      const fromJson = await pack(await makeService(), await tempDir(), { platform: 'linux-x64' });
      expect(fromJson.manifest.created_at).toBe('2025-12-17T00:00:00Z');
      const fromEnv = await pack(await makeService({ created_at: undefined }), await tempDir(), { platform: 'linux-x64' });
      expect(fromEnv.manifest.created_at).toBe('2023-11-14T22:13:20Z');
    } finally {
      if (old === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = old;
    }
  });

  it('drops a stale manifest.json.minisig only when the manifest changes', async () => {
    const src = await makeService();
    const out = await tempDir();
    await pack(src, out, { platform: 'linux-x64' });
    const sig = path.join(out, 'manifest.json.minisig');
    await writeFile(sig, 'signature');
    await pack(src, out, { platform: 'linux-x64' });
    expect(await readFile(sig, 'utf8')).toBe('signature');
    await put(src, 'app/new.py', 'x = 1\n');
    await pack(src, out, { platform: 'linux-x64' });
    await expect(stat(sig)).rejects.toThrow();
  });
});

describe('pack: service refusals', () => {
  const cases: { name: string; over: Record<string, unknown>; field: RegExp }[] = [
    {
      name: 'program outside the package (../x)',
      over: { platforms: { 'linux-x64': { exec: { type: 'argv', program: '../x', args: [] } } } },
      field: /platforms\.linux-x64\.exec\.program/,
    },
    {
      name: 'absolute program (/bin/sh)',
      over: { platforms: { 'linux-x64': { exec: { type: 'argv', program: '/bin/sh', args: [] } } } },
      field: /platforms\.linux-x64\.exec\.program.*\/bin\/sh/,
    },
    {
      name: 'program that does not exist in the package',
      over: { platforms: { 'linux-x64': { exec: { type: 'argv', program: 'runtime/bin/missing', args: [] } } } },
      field: /platforms\.linux-x64\.exec\.program.*does not exist/,
    },
    { name: 'invalid SemVer', over: { version: '1.0' }, field: /version.*SemVer/ },
    { name: 'SemVer with a leading v', over: { version: 'v1.0.0' }, field: /version/ },
    { name: 'missing service_id', over: { service_id: undefined }, field: /service_id/ },
    { name: 'missing version', over: { version: undefined }, field: /version/ },
    { name: 'missing platforms', over: { platforms: undefined }, field: /platforms/ },
    {
      name: 'missing exec.program',
      over: { platforms: { 'linux-x64': { exec: { type: 'argv', args: [] } } } },
      field: /platforms\.linux-x64\.exec\.program/,
    },
    { name: 'bad health check endpoint', over: { health_check: { type: 'http', endpoint: 'health' } }, field: /health_check\.endpoint/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const src = await makeService(c.over);
      const out = await tempDir();
      const err = await rejection(() => pack(src, out, { platform: 'linux-x64' }));
      expect(err.code).toBe('MANIFEST_INVALID');
      expect(err.message).toMatch(c.field);
      expect(await readdir(out)).toEqual([]);
    });
  }

  it('refuses a platform with no entry in platforms', async () => {
    const err = await rejection(async () => pack(await makeService(), await tempDir(), { platform: 'windows-x64' }));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/platforms\.windows-x64/);
  });

  it('requires --platform for a service, and a known one', async () => {
    const src = await makeService();
    const missing = await rejection(async () => pack(src, await tempDir()));
    expect(missing.code).toBe('INVALID_REQUEST');
    expect(missing.message).toBe('--platform is required for a service');
    const unknown = await rejection(async () => pack(src, await tempDir(), { platform: 'amiga-m68k' }));
    expect(unknown.code).toBe('INVALID_REQUEST');
    expect(unknown.message).toMatch(/--platform/);
  });

  it('refuses a symlink whose target leaves the package', async () => {
    const outside = await tempDir();
    await put(outside, 'secret.txt', 'do not ship\n');
    const src = await makeService();
    await symlink(path.join(outside, 'secret.txt'), path.join(src, 'app/secret.txt'));
    const err = await rejection(async () => pack(src, await tempDir(), { platform: 'linux-x64' }));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/files: symlink "app\/secret\.txt" points outside the package/);

    const src2 = await makeService();
    await symlink('../../etc', path.join(src2, 'app/etc'));
    const err2 = await rejection(async () => pack(src2, await tempDir(), { platform: 'linux-x64' }));
    expect(err2.code).toBe('MANIFEST_INVALID');
    expect(err2.message).toMatch(/app\/etc/);
  });

  it('refuses dangling and directory symlinks', async () => {
    const src = await makeService();
    await symlink('nowhere.txt', path.join(src, 'app/dangling'));
    const err = await rejection(async () => pack(src, await tempDir(), { platform: 'linux-x64' }));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/"app\/dangling" is dangling/);

    const src2 = await makeService();
    await symlink('../runtime', path.join(src2, 'app/rt'));
    const err2 = await rejection(async () => pack(src2, await tempDir(), { platform: 'linux-x64' }));
    expect(err2.code).toBe('MANIFEST_INVALID');
    expect(err2.message).toMatch(/"app\/rt"/);
  });

  it('refuses file names that differ only in case or are not safe relative paths', async () => {
    const src = await makeService();
    await put(src, 'app/Readme.txt', 'a');
    await put(src, 'app/README.txt', 'b');
    const err = await rejection(async () => pack(src, await tempDir(), { platform: 'linux-x64' }));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/files: .*differ only in case/);

    const src2 = await makeService();
    await put(src2, 'App/x.txt', 'a');
    await put(src2, 'app/y.txt', 'b');
    const err2 = await rejection(async () => pack(src2, await tempDir(), { platform: 'linux-x64' }));
    expect(err2.code).toBe('MANIFEST_INVALID');
    expect(err2.message).toMatch(/differ only in case/);

    const src3 = await makeService();
    await put(src3, 'app/win\\path.txt', 'a');
    const err3 = await rejection(async () => pack(src3, await tempDir(), { platform: 'linux-x64' }));
    expect(err3.code).toBe('MANIFEST_INVALID');
    expect(err3.message).toMatch(/files: "app\/win\\path\.txt" is not a safe relative path/);
  });

  it('refuses service.json that is not JSON or not an object', async () => {
    const src = await makeService();
    await writeFile(path.join(src, 'service.json'), '{ nope');
    const err = await rejection(async () => pack(src, await tempDir(), { platform: 'linux-x64' }));
    expect(err.code).toBe('MANIFEST_INVALID');
    expect(err.message).toMatch(/service\.json/);
    await writeFile(path.join(src, 'service.json'), '[1]');
    const err2 = await rejection(async () => pack(src, await tempDir(), { platform: 'linux-x64' }));
    expect(err2.code).toBe('MANIFEST_INVALID');
  });

  it('refuses a source without a descriptor, a missing source and --out equal to the source', async () => {
    const empty = await tempDir();
    await put(empty, 'x.txt', 'x');
    const none = await rejection(async () => pack(empty, await tempDir(), { platform: 'linux-x64' }));
    expect(none.code).toBe('INVALID_REQUEST');
    expect(none.message).toMatch(/service\.json.*model\.json/);

    const missing = await rejection(async () => pack(path.join(empty, 'nope'), await tempDir(), { platform: 'linux-x64' }));
    expect(missing.code).toBe('INVALID_REQUEST');

    const src = await makeService();
    const same = await rejection(() => pack(src, src, { platform: 'linux-x64' }));
    expect(same.code).toBe('INVALID_REQUEST');
    expect(same.message).toMatch(/--out/);
  });
});

describe('pack: service input that changes while packing', () => {
  it('fails cleanly, leaving nothing in --out', async () => {
    const src = await makeService();
    const out = await tempDir();
    let truncated = false;
    const err = await rejection(() =>
      pack(src, out, {
        platform: 'linux-x64',
        onProgress: () => {
          if (!truncated) {
            truncated = true;
            writeFileSync(path.join(src, 'health/check.txt'), '');
          }
        },
      }),
    );
    expect(truncated).toBe(true);
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toMatch(/files: "health\/check\.txt" changed while packing/);
    expect(await readdir(out)).toEqual([]);
  });
});
