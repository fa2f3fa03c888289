// The ranged zip reader (src/delta/remote-zip.ts) against a real hub behind the counting proxy:
// the central directory in one small request, chosen entries in merged requests, the bytes
// exactly the packed files' — for a classic package and for the same package rewritten as zip64;
// a server that ignores Range or a file of another size is DeltaUnavailable, never a guess.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { publishDir } from '../../src/admin/publish-client.js';
import { DeltaUnavailable } from '../../src/delta/errors.js';
import { openRemoteZip, readEntries } from '../../src/delta/remote-zip.js';
import { defaultFetch } from '../../src/download/fetch-like.js';
import type { ServiceManifest } from '../../src/schemas/manifest.js';
import { forEachEntry, openEntryStream, openZip } from '../../src/zip/open-zip.js';
import { makeBench, type Bench } from '../engine/fixture.js';
import { publishService } from '../helpers/delta.js';
import { TEST_TOKEN } from '../helpers/hub.js';
import { signManifest, type BuiltRelease } from '../helpers/releases.js';

let b: Bench;
let classic: BuiltRelease;
let zip64: BuiltRelease;
const files: Record<string, { size: number; seed: number }> = {};
for (let i = 0; i < 40; i++) files[`data/f${String(i).padStart(2, '0')}.bin`] = { size: 10_000 + i * 997, seed: 500 + i };

const urlOf = (version: string): string => `/storage/services/demo-echo/${version}/linux-x64/service.zip`;

/** The same package rewritten with zip64 records (yazl's forceZip64Format), re-signed and published as `version`. */
async function asZip64(r: BuiltRelease, version: string): Promise<BuiltRelease> {
  const src = await openZip(path.join(r.dir, 'service.zip'));
  const out = new yazl.ZipFile();
  try {
    await forEachEntry(src, async (e) => {
      const chunks: Buffer[] = [];
      for await (const c of (await openEntryStream(src, e)) as AsyncIterable<Buffer>) chunks.push(c);
      let data = Buffer.concat(chunks);
      if (e.fileName === 'service.json') data = Buffer.from(data.toString('utf8').replace(`"version": "${r.manifest.version}"`, `"version": "${version}"`));
      out.addBuffer(data, e.fileName, { compress: e.compressionMethod === 8, mtime: new Date(1980, 0, 1), mode: e.externalFileAttributes >>> 16, forceZip64Format: true });
    });
  } finally {
    src.close();
  }
  out.end({ forceZip64Format: true, comment: '' });
  const dir = `${r.dir}-zip64`;
  await mkdir(dir, { recursive: true });
  await pipeline(out.outputStream, createWriteStream(path.join(dir, 'service.zip')));
  const bytes = await readFile(path.join(dir, 'service.zip'));
  const m = JSON.parse(r.manifestText) as ServiceManifest & { service: { version: string } };
  const serviceJson = await readEntryText(path.join(dir, 'service.zip'), 'service.json');
  const manifest = {
    ...m,
    version,
    service: { ...m.service, version },
    archive: { ...m.archive, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length },
    files: m.files.map((f) => (f.path === 'service.json' ? { ...f, sha256: createHash('sha256').update(serviceJson).digest('hex'), size: serviceJson.length } : f)),
  };
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  await writeFile(path.join(dir, 'manifest.json'), text);
  await signManifest(dir, b.key);
  await publishDir(dir, { hub: b.hub.url, token: TEST_TOKEN });
  return { dir, manifestText: text, manifest: manifest as ServiceManifest };
}

async function readEntryText(zipPath: string, name: string): Promise<Buffer> {
  const z = await openZip(zipPath);
  let out = Buffer.alloc(0);
  try {
    await forEachEntry(z, async (e) => {
      if (e.fileName !== name) return;
      const chunks: Buffer[] = [];
      for await (const c of (await openEntryStream(z, e)) as AsyncIterable<Buffer>) chunks.push(c);
      out = Buffer.concat(chunks);
    });
  } finally {
    z.close();
  }
  return out;
}

function sizeOf(r: BuiltRelease): number {
  if (r.manifest.kind !== 'service') throw new Error('service');
  return r.manifest.archive.size;
}

beforeAll(async () => {
  b = await makeBench();
  classic = await publishService(b.work, b.key, { url: b.hub.url, token: TEST_TOKEN }, { version: '1.0.0', modelBytes: 2 * 1024 * 1024, files });
  zip64 = await asZip64(classic, '1.0.1');
}, 120_000);

describe('reading entries out of a remote zip', () => {
  for (const which of ['classic', 'zip64'] as const) {
    it(`${which}: the central directory in one request, chosen entries in merged requests, exactly the packed bytes`, async () => {
      const r = which === 'classic' ? classic : zip64;
      const url = urlOf(r.manifest.version);
      b.proxy.bytes.delete(url);
      b.proxy.log.length = 0;
      const zip = await openRemoteZip({ url: b.proxy.url + url, size: sizeOf(r), fetch: defaultFetch() });
      expect(zip.entries.map((e) => e.name).sort()).toEqual(r.manifest.files.map((f) => f.path).sort());
      expect(b.proxy.log).toHaveLength(1);
      expect(b.proxy.bytes.get(url)).toBeLessThanOrEqual(64 * 1024);

      // Three neighbours and one far away: two requests.
      const names = ['data/f10.bin', 'data/f11.bin', 'data/f12.bin', 'service.json'];
      const got = new Map<string, Buffer>();
      await readEntries(
        zip,
        names.map((n) => zip.byName.get(n)!),
        async (e, data) => {
          const chunks: Buffer[] = [];
          for await (const c of data) chunks.push(c);
          got.set(e.name, Buffer.concat(chunks));
        },
        { mergeGap: 64 * 1024 },
      );
      expect(b.proxy.log).toHaveLength(3);
      for (const l of b.proxy.log) expect(l.status).toBe(206);
      for (const n of names) {
        const f = r.manifest.files.find((x) => x.path === n)!;
        expect(createHash('sha256').update(got.get(n)!).digest('hex'), n).toBe(f.sha256);
      }
      // Far less than the package: the entries (about 35 KB) and the tail.
      expect(b.proxy.bytes.get(url)).toBeLessThan(0.1 * sizeOf(r));
    });
  }

  it('a server that ignores Range, or a file of another size, is DeltaUnavailable', async () => {
    const url = b.proxy.url + urlOf('1.0.0');
    b.proxy.mode = { kind: 'ignore-range' };
    try {
      await expect(openRemoteZip({ url, size: sizeOf(classic), fetch: defaultFetch() })).rejects.toMatchObject({ name: 'DeltaUnavailable', reason: 'range_ignored' });
    } finally {
      b.proxy.mode = { kind: 'none' };
    }
    const wrong = await openRemoteZip({ url, size: sizeOf(classic) + 1, fetch: defaultFetch() }).catch((err: unknown) => err);
    expect(wrong).toBeInstanceOf(DeltaUnavailable);
    expect(wrong).toMatchObject({ reason: 'archive_differs' });
  });

  it('a flipped byte in a stored entry reaches the handler as different bytes (the caller\u2019s hash refuses them)', async () => {
    const zip = await openRemoteZip({ url: b.proxy.url + urlOf('1.0.0'), size: sizeOf(classic), fetch: defaultFetch() });
    const e = zip.byName.get('data/f20.bin')!;
    b.proxy.mode = { kind: 'flip', at: e.localHeaderOffset + 30 + e.name.length + 100, once: true };
    let digest = '';
    try {
      await readEntries(zip, [e], async (_e, data) => {
        const h = createHash('sha256');
        for await (const c of data) h.update(c);
        digest = h.digest('hex');
      });
    } finally {
      b.proxy.mode = { kind: 'none' };
    }
    expect(digest).not.toBe(classic.manifest.files.find((f) => f.path === 'data/f20.bin')!.sha256);
  });
});
