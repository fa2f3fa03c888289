// The zip records the ranged reader relies on (src/delta/zip-format.ts), parsed from real zips
// written by yazl — classic and zip64 — and from zips damaged on purpose; and the check of a
// central directory against a signed manifest (service-delta.ts).
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { centralDirectoryProblem } from '../../src/delta/service-delta.js';
import { planRanges } from '../../src/delta/remote-zip.js';
import {
  assignRegions,
  parseCentralDirectory,
  parseTail,
  parseZip64End,
  ZIP64_LOCATOR_SIZE,
  ZipFormatError,
  type CentralEntry,
  type EndRecord,
} from '../../src/delta/zip-format.js';
import type { ServiceManifest } from '../../src/schemas/manifest.js';

interface Item {
  name: string;
  data: Buffer;
  compress: boolean;
  mode?: number;
}

function zipOf(items: Item[], o: { zip64?: boolean; comment?: string } = {}): Promise<Buffer> {
  const z = new yazl.ZipFile();
  for (const it of items) z.addBuffer(it.data, it.name, { compress: it.compress, mtime: new Date(1980, 0, 1), mode: it.mode ?? 0o100644, forceZip64Format: o.zip64 === true });
  z.end({ forceZip64Format: o.zip64 === true, comment: o.comment ?? '' });
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    z.outputStream.on('error', reject);
  });
}

/** What the ranged reader would see: end records and central directory, from the whole file. */
function read(zip: Buffer): CentralEntry[] {
  const found = parseTail(zip.subarray(Math.max(0, zip.length - 70_000)), zip.length);
  if (found === null) throw new Error('no end record');
  const end: EndRecord = 'zip64EocdOffset' in found ? parseZip64End(zip.subarray(found.zip64EocdOffset, found.eocdOffset - ZIP64_LOCATOR_SIZE), found) : found;
  const entries = parseCentralDirectory(zip.subarray(end.cdOffset, end.cdOffset + end.cdSize), end);
  assignRegions(entries, end.cdOffset);
  return entries;
}

const items: Item[] = [
  { name: 'app/main.py', data: Buffer.from('print("hello")\n'.repeat(200)), compress: true },
  { name: 'models/w.bin', data: Buffer.alloc(70_000, 7), compress: false },
  { name: 'service.json', data: Buffer.from('{"x":1}\n'), compress: true, mode: 0o100755 },
];

describe('zip records', () => {
  for (const zip64 of [false, true]) {
    it(`reads the central directory of a ${zip64 ? 'zip64' : 'classic'} archive: names, sizes, methods, regions`, async () => {
      const zip = await zipOf(items, { zip64 });
      const entries = read(zip);
      expect(entries.map((e) => [e.name, e.size, e.method])).toEqual([
        ['app/main.py', items[0]!.data.length, 8],
        ['models/w.bin', 70_000, 0],
        ['service.json', items[2]!.data.length, 8],
      ]);
      expect((entries[2]!.externalAttributes >>> 16) & 0o777).toBe(0o755);
      // Regions tile the file up to the central directory, in order.
      expect(entries[0]!.localHeaderOffset).toBe(0);
      expect(entries[0]!.regionEnd).toBe(entries[1]!.localHeaderOffset);
      expect(entries[1]!.regionEnd).toBe(entries[2]!.localHeaderOffset);
      // The stored entry's bytes are where its region says.
      const w = entries[1]!;
      const header = zip.subarray(w.localHeaderOffset, w.localHeaderOffset + 30);
      const start = w.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
      expect(zip.subarray(start, start + w.compressedSize).equals(items[1]!.data)).toBe(true);
    });
  }

  it('finds the end record behind a comment that contains its signature', async () => {
    // yazl refuses such a comment (rightly): appended by hand.
    const fake = Buffer.alloc(22);
    fake.writeUInt32LE(0x06054b50, 0);
    const comment = Buffer.concat([Buffer.from('before '), fake, Buffer.from(' after')]);
    const plain = await zipOf(items);
    const zip = Buffer.concat([plain, comment]);
    zip.writeUInt16LE(comment.length, plain.length - 22 + 20);
    expect(read(zip).map((e) => e.name)).toEqual(items.map((i) => i.name));
  });

  it('asks for more of the tail when the record is not in it, and refuses a file without one', async () => {
    const zip = await zipOf(items, { comment: 'c'.repeat(1000) });
    expect(parseTail(zip.subarray(zip.length - 100), zip.length)).toBeNull();
    expect(() => parseTail(Buffer.alloc(500, 1), 500)).toThrow(ZipFormatError);
  });

  it('refuses overlapping entries (one region read as two) and a directory that claims too many entries', async () => {
    const zip = await zipOf(items);
    const found = parseTail(zip.subarray(zip.length - 22), zip.length) as EndRecord;
    const cd = Buffer.from(zip.subarray(found.cdOffset, found.cdOffset + found.cdSize));
    // The second record's local header offset (at +42) set to the first's.
    const second = 46 + cd.readUInt16LE(28) + cd.readUInt16LE(30) + cd.readUInt16LE(32);
    cd.writeUInt32LE(0, second + 42);
    const entries = parseCentralDirectory(cd, found);
    expect(() => assignRegions(entries, found.cdOffset)).toThrow(/overlaps/);
    expect(() => parseCentralDirectory(cd, { ...found, entries: found.entries + 1 })).toThrow(ZipFormatError);
  });

  it('plans one request for nearby entries and separate ones for distant entries', async () => {
    const zip = await zipOf([...items, { name: 'z/last.txt', data: Buffer.from('end'), compress: false }]);
    const entries = read(zip);
    const byName = new Map(entries.map((e) => [e.name, e]));
    const near = planRanges([byName.get('service.json')!, byName.get('z/last.txt')!]);
    expect(near.groups).toHaveLength(1);
    const far = planRanges([byName.get('app/main.py')!, byName.get('service.json')!], { mergeGap: 1024 });
    expect(far.groups).toHaveLength(2);
    expect(far.bytes).toBe(far.groups.reduce((n, g) => n + g.end - g.start, 0));
  });
});

describe('the central directory against the signed manifest', () => {
  const manifest = {
    files: [
      { path: 'app/main.py', sha256: 'a'.repeat(64), size: items[0]!.data.length },
      { path: 'models/w.bin', sha256: 'b'.repeat(64), size: 70_000 },
      { path: 'service.json', sha256: 'c'.repeat(64), size: items[2]!.data.length },
    ],
  } as unknown as ServiceManifest;

  it('agrees when they agree', async () => {
    expect(centralDirectoryProblem(read(await zipOf(items)), manifest)).toBeUndefined();
  });

  it('names each way they disagree', async () => {
    const unlisted = read(await zipOf([...items, { name: 'extra.txt', data: Buffer.from('x'), compress: false }]));
    expect(centralDirectoryProblem(unlisted, manifest)).toMatch(/extra\.txt.*not listed/);
    const missing = read(await zipOf(items.slice(0, 2)));
    expect(centralDirectoryProblem(missing, manifest)).toMatch(/missing/);
    const resized = read(await zipOf([items[0]!, { ...items[1]!, data: Buffer.alloc(69_999) }, items[2]!]));
    expect(centralDirectoryProblem(resized, manifest)).toMatch(/declares 69999 bytes/);
    const link = read(await zipOf([...items.slice(0, 2), { ...items[2]!, mode: 0o120777 }]));
    expect(centralDirectoryProblem(link, manifest)).toMatch(/link or a special file/);
    // Names yazl will not write, set on parsed records.
    const base = read(await zipOf(items));
    expect(centralDirectoryProblem([...base, { ...base[0]!, name: '../evil' }], manifest)).toMatch(/evil/);
    expect(centralDirectoryProblem([...base, { ...base[0]!, name: 'APP/main.py' }], manifest)).toMatch(/collides/);
    expect(centralDirectoryProblem([{ ...base[0]!, flags: base[0]!.flags | 1 }, ...base.slice(1)], manifest)).toMatch(/encrypted/);
  });
});
