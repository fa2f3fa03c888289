// A hostile or broken server: whatever it sends, the node answers with the right code and the
// version that was current stays current and whole; nothing is written outside, nothing is
// left in staging.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { rawZip, S_IFLNK, type RawEntry } from '../stage/raw-zip.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

let b: Bench;
let home: string;
const ZIP_160 = '/storage/services/demo-echo/1.6.0/linux-x64/service.zip';

const sha256 = (d: Buffer | string): string => createHash('sha256').update(d).digest('hex');

beforeAll(async () => {
  // Uncertified: the node's own checks of a release are what these tests attack. A certified
  // hub's snapshot would refuse every planted manifest first (test/engine/metadata.test.ts).
  b = await makeBench({ certify: false });
  await b.publish({ version: '1.0.0' });
  await b.publish({ version: '1.5.0', modelBytes: 512 * 1024 });
  await b.publish({ version: '1.6.0' });
  home = await b.newHome();
  expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true });
});

beforeEach(() => {
  b.proxy.mode = { kind: 'none' };
  b.proxy.substitute.clear();
});

async function expectUntouched(): Promise<void> {
  expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
  const svc = JSON.parse(await readFile(path.join(home, 'services', 'demo-echo', 'current', 'service.json'), 'utf8')) as { version: string };
  expect(svc.version).toBe('1.0.0');
  const names = await readdir(path.join(home, 'services', 'demo-echo'));
  expect(names.filter((n) => n.startsWith('.staging') || n.startsWith('.trash'))).toEqual([]);
  expect(names.sort()).toEqual(['1.0.0', 'current']);
  const jobs = (await b.cli(home, ['jobs'])).result!.jobs as { state: string }[];
  for (const j of jobs) expect(['committed', 'failed', 'rolled_back', 'cancelled']).toContain(j.state);
}

describe('a broken or hostile server', () => {
  it('a flipped byte → CHECKSUM_MISMATCH, and the bad download is discarded', async () => {
    b.proxy.mode = { kind: 'flip', at: 100 };
    const r = await b.cli(home, ['install', 'demo-echo@1.5.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'CHECKSUM_MISMATCH' }, current: '1.0.0', rolled_back: false });
    await expectUntouched();
    expect((await readdir(path.join(home, 'downloads'))).filter((n) => n.includes('1.5.0'))).toEqual([]);
  });

  it('extra bytes beyond the signed size → SIZE_EXCEEDED', async () => {
    b.proxy.mode = { kind: 'extend', extra: 4096 };
    const r = await b.cli(home, ['install', 'demo-echo@1.5.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'SIZE_EXCEEDED' }, current: '1.0.0' });
    await expectUntouched();
  });

  it('a body cut short every time → NETWORK_ERROR after the retries; the next try resumes', async () => {
    b.proxy.mode = { kind: 'truncate', after: 100_000 };
    const r = await b.cli(home, ['install', 'demo-echo@1.5.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'NETWORK_ERROR' }, current: '1.0.0' });
    await expectUntouched();
    b.proxy.mode = { kind: 'none' };
    b.proxy.bytes.clear();
    const again = await b.cli(home, ['install', 'demo-echo@1.5.0', '--no-start']);
    expect(again.result).toMatchObject({ ok: true, current: '1.5.0' });
    const rel = b.releases.get('demo-echo@1.5.0')!.manifest;
    if (rel.kind !== 'service') throw new Error('service');
    // Only what was missing was fetched.
    expect(b.proxy.bytes.get('/storage/services/demo-echo/1.5.0/linux-x64/service.zip')).toBeLessThan(rel.archive.size);
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--allow-downgrade'])).result).toMatchObject({ ok: true });
    await b.cli(home, ['uninstall', 'demo-echo@1.5.0']);
  });

  it('a server that ignores Range restarts from zero and never appends', async () => {
    b.proxy.mode = { kind: 'truncate', after: 200_000 };
    // Leave a partial download behind…
    await b.cli(home, ['install', 'demo-echo@1.5.0', '--no-start']);
    // …then a server that answers 200 to the Range request.
    b.proxy.mode = { kind: 'ignore-range' };
    const r = await b.cli(home, ['install', 'demo-echo@1.5.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: true, current: '1.5.0' });
    const rel = b.releases.get('demo-echo@1.5.0')!.manifest;
    if (rel.kind !== 'service') throw new Error('service');
    for (const f of rel.files) expect((await stat(path.join(home, 'services', 'demo-echo', 'current', f.path))).size).toBe(f.size);
    b.proxy.mode = { kind: 'none' };
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--allow-downgrade'])).result).toMatchObject({ ok: true });
    await b.cli(home, ['uninstall', 'demo-echo@1.5.0']);
    await expectUntouched();
  });

  it("another release's validly signed manifest → MANIFEST_MISMATCH", async () => {
    b.proxy.mode = { kind: 'swap-manifest', from: '1.0.0' };
    const r = await b.cli(home, ['install', 'demo-echo@1.6.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'MANIFEST_MISMATCH' }, current: '1.0.0' });
    await expectUntouched();
  });
});

describe('validly signed unsafe zips from another zip writer', () => {
  const good = {
    'service.json': '',
    'app/server.mjs': 'console.log("hi")\n',
    'app/behavior.txt': 'healthy\n',
  };

  async function serveHostile(entries: RawEntry[], listed: Record<string, string>, service?: Record<string, unknown>): Promise<void> {
    const zip = rawZip(entries);
    const signedService = service ?? (JSON.parse(listed['service.json']!) as Record<string, unknown>);
    const manifest = {
      schema: 1,
      kind: 'service',
      id: 'demo-echo',
      version: '1.6.0',
      platform: 'linux-x64',
      archive: { path: 'service.zip', sha256: sha256(zip), size: zip.length },
      files: Object.entries(listed)
        .map(([p, content]) => ({ path: p, sha256: sha256(content), size: Buffer.byteLength(content), mode: 420 }))
        .sort((x, y) => (x.path < y.path ? -1 : 1)),
      service: signedService,
      created_at: '2026-01-01T00:00:00Z',
    };
    const text = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    const sig = formatSignature(signBytes(text, await readSecretKeyFile(b.key.key)));
    b.proxy.substitute.set('/api/services/demo-echo/1.6.0/linux-x64/manifest', text);
    b.proxy.substitute.set('/api/services/demo-echo/1.6.0/linux-x64/manifest.minisig', Buffer.from(sig));
    b.proxy.substitute.set(ZIP_160, zip);
  }

  function serviceJson(): string {
    return JSON.stringify({ service_id: 'demo-echo', version: '1.6.0', platforms: { 'linux-x64': { exec: { type: 'argv', program: 'node', args: ['app/server.mjs'] } } } });
  }

  const cases: { name: string; extra: RawEntry[]; code: string; mutate?: (files: Record<string, string>) => RawEntry[] }[] = [
    { name: 'zip slip ../../evil.txt', extra: [{ name: '../../evil.txt', data: 'evil' }], code: 'UNSAFE_ARCHIVE' },
    { name: 'absolute /tmp path', extra: [{ name: '/tmp/modelhub-evil.txt', data: 'evil' }], code: 'UNSAFE_ARCHIVE' },
    { name: 'drive letter', extra: [{ name: 'C:/evil.txt', data: 'evil' }], code: 'UNSAFE_ARCHIVE' },
    { name: 'backslash traversal', extra: [{ name: '..\\..\\evil.txt', data: 'evil' }], code: 'UNSAFE_ARCHIVE' },
    { name: 'symlink escaping', extra: [{ name: 'app/link', data: '../../../../etc', unixMode: S_IFLNK | 0o777 }], code: 'UNSAFE_ARCHIVE' },
    { name: 'duplicate name', extra: [{ name: 'app/behavior.txt', data: 'evil\n' }], code: 'UNSAFE_ARCHIVE' },
    { name: 'unlisted file', extra: [{ name: 'app/extra.sh', data: 'rm -rf /' }], code: 'UNSAFE_ARCHIVE' },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.code}`, async () => {
      const files = { ...good, 'service.json': serviceJson() };
      const entries: RawEntry[] = [...Object.entries(files).map(([name, data]) => ({ name, data })), ...c.extra];
      await serveHostile(entries, files);
      const r = await b.cli(home, ['install', 'demo-echo@1.6.0', '--no-start']);
      expect(r.result).toMatchObject({ ok: false, error: { code: c.code }, current: '1.0.0' });
      await expectUntouched();
      await expect(stat(path.join(home, '..', 'evil.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(stat(path.join(home, 'services', 'evil.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(stat('/tmp/modelhub-evil.txt')).rejects.toMatchObject({ code: 'ENOENT' });
    });
  }

  it('forged sizes (the header says less than the data) → refused', async () => {
    const files = { ...good, 'service.json': serviceJson() };
    const entries: RawEntry[] = Object.entries(files).map(([name, data]) => (name === 'app/server.mjs' ? { name, data: data + 'x'.repeat(5000), declaredSize: Buffer.byteLength(data) } : { name, data }));
    await serveHostile(entries, files);
    const r = await b.cli(home, ['install', 'demo-echo@1.6.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: false, current: '1.0.0' });
    expect(['UNSAFE_ARCHIVE', 'CHECKSUM_MISMATCH']).toContain((r.result!.error as { code: string }).code);
    await expectUntouched();
  });

  it('service.json differing from the signed manifest → MANIFEST_MISMATCH', async () => {
    const files = { ...good, 'service.json': serviceJson() };
    const entries: RawEntry[] = Object.entries(files).map(([name, data]) => ({ name, data }));
    const signed = { ...(JSON.parse(serviceJson()) as Record<string, unknown>), description: 'not what the zip says' };
    await serveHostile(entries, files, signed);
    const r = await b.cli(home, ['install', 'demo-echo@1.6.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: false, error: { code: 'MANIFEST_MISMATCH' }, current: '1.0.0' });
    await expectUntouched();
  });

  it('the same release unaltered installs (the harness itself is sound)', async () => {
    const files = { ...good, 'service.json': serviceJson() };
    await serveHostile(Object.entries(files).map(([name, data]) => ({ name, data })), files);
    const r = await b.cli(home, ['install', 'demo-echo@1.6.0', '--no-start']);
    expect(r.result).toMatchObject({ ok: true, current: '1.6.0' });
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--allow-downgrade'])).result).toMatchObject({ ok: true });
    await b.cli(home, ['uninstall', 'demo-echo@1.6.0']);
    await expectUntouched();
  });
});
