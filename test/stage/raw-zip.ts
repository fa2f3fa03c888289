// A tiny zip writer for hostile test archives: it writes whatever it is given — names as raw
// bytes, any external attributes, sizes and CRCs that lie — which yazl (rightly) refuses to do.
// Local headers, then the central directory, then the end-of-central-directory record; no zip64,
// no data descriptors.
import { writeFile } from 'node:fs/promises';
import { deflateRawSync } from 'node:zlib';

export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

export interface RawEntry {
  /** The name bytes, exactly (a string is encoded as UTF-8). */
  name: string | Buffer;
  /** The uncompressed content. */
  data?: string | Buffer;
  /** 0 = stored (default), 8 = deflated with zlib. */
  method?: 0 | 8;
  /** External file attributes; default (0o100644 << 16), i.e. a Unix regular file 0644. */
  externalAttributes?: number;
  /** Unix mode shortcut: sets externalAttributes to (mode << 16). */
  unixMode?: number;
  /** Version made by; default 0x031e (Unix, 3.0). */
  versionMadeBy?: number;
  /** General purpose flags; default 0x0800 (UTF-8 names). */
  flags?: number;
  /** Uncompressed size written in both headers; default the real one. */
  declaredSize?: number;
  /** Compressed size written in both headers; default the real one. */
  declaredCompressedSize?: number;
  /** CRC-32 written in both headers; default the real one. */
  crc?: number;
  /** Bytes written as the entry's data, replacing the (compressed) content. */
  rawData?: Buffer;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = (CRC_TABLE[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function toBuf(v: string | Buffer | undefined): Buffer {
  if (v === undefined) return Buffer.alloc(0);
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}

/** The archive's bytes. */
export function rawZip(entries: readonly RawEntry[], comment = ''): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  const DOS_TIME = 0; // 00:00:00
  const DOS_DATE = (0 << 9) | (1 << 5) | 1; // 1980-01-01

  for (const e of entries) {
    const name = toBuf(e.name);
    const content = toBuf(e.data);
    const method = e.method ?? 0;
    const stored = e.rawData ?? (method === 8 ? deflateRawSync(content) : content);
    const crc = e.crc ?? crc32(content);
    const size = e.declaredSize ?? content.length;
    const csize = e.declaredCompressedSize ?? stored.length;
    const flags = e.flags ?? 0x0800;
    const attrs = e.externalAttributes ?? ((e.unixMode ?? S_IFREG | 0o644) * 0x10000) >>> 0;
    const madeBy = e.versionMadeBy ?? 0x031e;

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(DOS_TIME, 10);
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc >>> 0, 14);
    local.writeUInt32LE(csize >>> 0, 18);
    local.writeUInt32LE(size >>> 0, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28); // extra length
    parts.push(local, name, stored);

    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(madeBy, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(flags, 8);
    cd.writeUInt16LE(method, 10);
    cd.writeUInt16LE(DOS_TIME, 12);
    cd.writeUInt16LE(DOS_DATE, 14);
    cd.writeUInt32LE(crc >>> 0, 16);
    cd.writeUInt32LE(csize >>> 0, 20);
    cd.writeUInt32LE(size >>> 0, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(0, 30); // extra length
    cd.writeUInt16LE(0, 32); // comment length
    cd.writeUInt16LE(0, 34); // disk number start
    cd.writeUInt16LE(0, 36); // internal attributes
    cd.writeUInt32LE(attrs, 38);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, name);

    offset += local.length + name.length + stored.length;
  }

  const cdStart = offset;
  const cdBuf = Buffer.concat(central);
  const commentBuf = Buffer.from(comment, 'utf8');
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(0, 4); // this disk
  eocd.writeUInt16LE(0, 6); // disk with the central directory
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cdBuf.length, 12);
  eocd.writeUInt32LE(cdStart, 16);
  eocd.writeUInt16LE(commentBuf.length, 20);
  return Buffer.concat([...parts, cdBuf, eocd, commentBuf]);
}

export async function writeRawZip(file: string, entries: readonly RawEntry[]): Promise<string> {
  await writeFile(file, rawZip(entries));
  return file;
}
