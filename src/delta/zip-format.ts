// The zip records a ranged reader needs, parsed from buffers (PKWARE APPNOTE 6.3.x §4.3): the
// end of central directory (with its zip64 locator and record), the central directory, and one
// entry's local header. Pure: no I/O, so it is tested on its own and every byte that decides
// where the reader looks next is checked here.
//
// Nothing here is trusted as proof of content: the signed manifest's per-file SHA-256 is. These
// checks only make sure that a hostile or broken archive cannot make the reader ask for bytes
// outside the file, read one region as two entries (overlapping entries, the "zip bomb" trick)
// or hand back a different entry than the one the central directory names.

export const EOCD_SIGNATURE = 0x06054b50;
export const EOCD_SIZE = 22;
export const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
export const ZIP64_LOCATOR_SIZE = 20;
export const ZIP64_EOCD_SIGNATURE = 0x06064b50;
export const ZIP64_EOCD_MIN_SIZE = 56;
export const CENTRAL_SIGNATURE = 0x02014b50;
export const CENTRAL_HEADER_SIZE = 46;
export const LOCAL_SIGNATURE = 0x04034b50;
export const LOCAL_HEADER_SIZE = 30;
/** The most bytes after which the end record can start: its comment is at most 65535 bytes. */
export const MAX_TAIL = EOCD_SIZE + 0xffff + ZIP64_LOCATOR_SIZE;

const ZIP64_EXTRA_ID = 0x0001;
const FLAG_ENCRYPTED = 0x0001;
const FLAG_UTF8 = 0x0800;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

/** The archive is not one this reader can read safely; the caller falls back to the whole file. */
export class ZipFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZipFormatError';
  }
}

export interface EndRecord {
  /** File offset of the central directory and its length in bytes. */
  cdOffset: number;
  cdSize: number;
  entries: number;
  /** Where the end records (zip64 record, when there is one, else the classic one) begin: the central directory ends here. */
  endOffset: number;
  zip64: boolean;
}

/** Where a zip64 end record must be read from, when the classic one points to it. */
export interface Zip64Pointer {
  zip64EocdOffset: number;
  /** The classic record, for the fields it does carry. */
  eocdOffset: number;
}

/** A central-directory entry, with the zip64 extra already applied. */
export interface CentralEntry {
  name: string;
  versionMadeBy: number;
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  externalAttributes: number;
  /**
   * Where the next entry's local header (or the central directory) starts: the entry's local
   * header, data and any data descriptor lie in [localHeaderOffset, regionEnd). Set by
   * assignRegions.
   */
  regionEnd: number;
}

function safeU64(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipFormatError(`${what} ${v} is beyond what this reader addresses`);
  return Number(v);
}

/**
 * Finds the end of central directory record in the last `tail.length` bytes of a file of
 * `fileSize` bytes (`tail` ends where the file ends). Returns the record, or a pointer to the
 * zip64 end record that must be read first, or null when the tail does not reach the record.
 */
export function parseTail(tail: Buffer, fileSize: number): EndRecord | Zip64Pointer | null {
  const tailStart = fileSize - tail.length;
  // Backwards, so a comment that happens to contain the signature is not taken for the record:
  // the last candidate whose comment length reaches exactly the end of the file wins.
  for (let i = tail.length - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) !== EOCD_SIGNATURE) continue;
    const commentLength = tail.readUInt16LE(i + 20);
    if (i + EOCD_SIZE + commentLength !== tail.length) continue;
    const disk = tail.readUInt16LE(i + 4);
    const cdDisk = tail.readUInt16LE(i + 6);
    const entriesHere = tail.readUInt16LE(i + 8);
    const entries = tail.readUInt16LE(i + 10);
    const cdSize = tail.readUInt32LE(i + 12);
    const cdOffset = tail.readUInt32LE(i + 16);
    const eocdOffset = tailStart + i;
    const locatorAt = i - ZIP64_LOCATOR_SIZE;
    const hasLocator = locatorAt >= 0 ? tail.readUInt32LE(locatorAt) === ZIP64_LOCATOR_SIGNATURE : false;
    const saturated = entries === U16_MAX || entriesHere === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX || disk === U16_MAX || cdDisk === U16_MAX;
    if (hasLocator) {
      if (tail.readUInt32LE(locatorAt + 4) !== 0 || tail.readUInt32LE(locatorAt + 16) > 1) throw new ZipFormatError('a multi-disk zip64 archive');
      const zip64EocdOffset = safeU64(tail, locatorAt + 8, 'zip64 end record offset');
      if (zip64EocdOffset + ZIP64_EOCD_MIN_SIZE > eocdOffset - ZIP64_LOCATOR_SIZE) throw new ZipFormatError('the zip64 end record lies after its locator');
      return { zip64EocdOffset, eocdOffset };
    }
    if (saturated) throw new ZipFormatError('the end record needs zip64 fields but there is no zip64 locator');
    if (disk !== 0 || cdDisk !== 0 || entriesHere !== entries) throw new ZipFormatError('a multi-disk archive');
    return checkEnd({ cdOffset, cdSize, entries, endOffset: eocdOffset, zip64: false });
  }
  if (tail.length >= Math.min(fileSize, MAX_TAIL)) throw new ZipFormatError('no end of central directory record');
  return null;
}

/** Reads the zip64 end record (`buf` starts at pointer.zip64EocdOffset and runs to the classic record). */
export function parseZip64End(buf: Buffer, pointer: Zip64Pointer): EndRecord {
  if (buf.length < ZIP64_EOCD_MIN_SIZE || buf.readUInt32LE(0) !== ZIP64_EOCD_SIGNATURE) throw new ZipFormatError('no zip64 end of central directory record where the locator points');
  const recordSize = safeU64(buf, 4, 'zip64 end record size') + 12;
  if (recordSize < ZIP64_EOCD_MIN_SIZE || pointer.zip64EocdOffset + recordSize !== pointer.eocdOffset - ZIP64_LOCATOR_SIZE) {
    throw new ZipFormatError('the zip64 end record does not end where its locator begins');
  }
  if (buf.readUInt32LE(16) !== 0 || buf.readUInt32LE(20) !== 0) throw new ZipFormatError('a multi-disk zip64 archive');
  const entriesHere = safeU64(buf, 24, 'zip64 entry count');
  const entries = safeU64(buf, 32, 'zip64 entry count');
  if (entriesHere !== entries) throw new ZipFormatError('a multi-disk zip64 archive');
  const cdSize = safeU64(buf, 40, 'zip64 central directory size');
  const cdOffset = safeU64(buf, 48, 'zip64 central directory offset');
  return checkEnd({ cdOffset, cdSize, entries, endOffset: pointer.zip64EocdOffset, zip64: true });
}

function checkEnd(e: EndRecord): EndRecord {
  if (e.cdOffset + e.cdSize !== e.endOffset) throw new ZipFormatError(`the central directory (${e.cdOffset}+${e.cdSize}) does not end where the end record starts (${e.endOffset})`);
  if (e.entries * CENTRAL_HEADER_SIZE > e.cdSize) throw new ZipFormatError(`${e.entries} entries cannot fit in a central directory of ${e.cdSize} bytes`);
  return e;
}

function decodeName(raw: Buffer, flags: number): string {
  // Without the UTF-8 flag a name is CP437; this reader takes ASCII only there (a name it would
  // have to guess at makes the caller fall back to the whole package, which yauzl decodes).
  if ((flags & FLAG_UTF8) === 0 && raw.some((b) => b >= 0x80)) throw new ZipFormatError('an entry name in CP437');
  const name = raw.toString('utf8');
  if ((flags & FLAG_UTF8) !== 0 && Buffer.compare(Buffer.from(name, 'utf8'), raw) !== 0) throw new ZipFormatError('an entry name that is not valid UTF-8');
  return name;
}

/** The central directory (`cd` holds exactly end.cdSize bytes). Regions are not set yet. */
export function parseCentralDirectory(cd: Buffer, end: EndRecord): CentralEntry[] {
  const out: CentralEntry[] = [];
  let at = 0;
  for (let n = 0; n < end.entries; n++) {
    if (at + CENTRAL_HEADER_SIZE > cd.length || cd.readUInt32LE(at) !== CENTRAL_SIGNATURE) throw new ZipFormatError(`central directory record #${n + 1} is missing or damaged`);
    const versionMadeBy = cd.readUInt16LE(at + 4);
    const flags = cd.readUInt16LE(at + 8);
    const method = cd.readUInt16LE(at + 10);
    const crc32 = cd.readUInt32LE(at + 16);
    let compressedSize = cd.readUInt32LE(at + 20);
    let size = cd.readUInt32LE(at + 24);
    const nameLength = cd.readUInt16LE(at + 28);
    const extraLength = cd.readUInt16LE(at + 30);
    const commentLength = cd.readUInt16LE(at + 32);
    const diskStart = cd.readUInt16LE(at + 34);
    const externalAttributes = cd.readUInt32LE(at + 38);
    let localHeaderOffset = cd.readUInt32LE(at + 42);
    const nameAt = at + CENTRAL_HEADER_SIZE;
    const extraAt = nameAt + nameLength;
    const next = extraAt + extraLength + commentLength;
    if (next > cd.length) throw new ZipFormatError(`central directory record #${n + 1} runs past the central directory`);
    const name = decodeName(cd.subarray(nameAt, extraAt), flags);
    // zip64 extra: only the fields saturated in the fixed header, in this order (APPNOTE 4.5.3).
    if (size === U32_MAX || compressedSize === U32_MAX || localHeaderOffset === U32_MAX || diskStart === U16_MAX) {
      const extra = findExtra(cd.subarray(extraAt, extraAt + extraLength), ZIP64_EXTRA_ID);
      if (extra === undefined) throw new ZipFormatError(`entry ${JSON.stringify(name)} needs a zip64 extra field and has none`);
      let p = 0;
      const take = (what: string): number => {
        if (p + 8 > extra.length) throw new ZipFormatError(`entry ${JSON.stringify(name)}: its zip64 extra field is too short`);
        const v = safeU64(extra, p, what);
        p += 8;
        return v;
      };
      if (size === U32_MAX) size = take('size');
      if (compressedSize === U32_MAX) compressedSize = take('compressed size');
      if (localHeaderOffset === U32_MAX) localHeaderOffset = take('local header offset');
      if (diskStart === U16_MAX && (p + 4 > extra.length || extra.readUInt32LE(p) !== 0)) throw new ZipFormatError('a multi-disk archive');
    } else if (diskStart !== 0) {
      throw new ZipFormatError('a multi-disk archive');
    }
    out.push({ name, versionMadeBy, flags, method, crc32, compressedSize, size, localHeaderOffset, externalAttributes, regionEnd: 0 });
    at = next;
  }
  if (at !== cd.length) throw new ZipFormatError(`${cd.length - at} bytes after the last central directory record`);
  return out;
}

function findExtra(extra: Buffer, id: number): Buffer | undefined {
  let p = 0;
  while (p + 4 <= extra.length) {
    const headerId = extra.readUInt16LE(p);
    const len = extra.readUInt16LE(p + 2);
    if (p + 4 + len > extra.length) return undefined;
    if (headerId === id) return extra.subarray(p + 4, p + 4 + len);
    p += 4 + len;
  }
  return undefined;
}

/**
 * Gives every entry its region: from its local header to the next entry's local header (or the
 * central directory). Entries must not share or overlap regions, and each region must at least
 * hold a local header, the name and the compressed data.
 */
export function assignRegions(entries: CentralEntry[], cdOffset: number): void {
  const byOffset = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 0; i < byOffset.length; i++) {
    const e = byOffset[i]!;
    const end = byOffset[i + 1]?.localHeaderOffset ?? cdOffset;
    const least = LOCAL_HEADER_SIZE + Buffer.byteLength(e.name, 'utf8') + e.compressedSize;
    if (e.localHeaderOffset + least > end) throw new ZipFormatError(`entry ${JSON.stringify(e.name)} overlaps the next entry or the central directory`);
    e.regionEnd = end;
  }
}

export function isEncrypted(e: CentralEntry): boolean {
  return (e.flags & FLAG_ENCRYPTED) !== 0;
}

export interface LocalHeader {
  /** Bytes from the local header's start to the entry's data. */
  dataOffset: number;
}

/** The whole local header's length (name and extra included), from its 30 fixed bytes. */
export function localHeaderLength(fixed: Buffer): number {
  if (fixed.length < LOCAL_HEADER_SIZE || fixed.readUInt32LE(0) !== LOCAL_SIGNATURE) throw new ZipFormatError('no local file header where the central directory points');
  return LOCAL_HEADER_SIZE + fixed.readUInt16LE(26) + fixed.readUInt16LE(28);
}

/**
 * Checks a whole local header against its central record: same name, same method, not
 * encrypted, and the data fits the entry's region. (Sizes and CRC in the local header may be
 * zero when a data descriptor follows; the central record's are the ones used.)
 */
export function checkLocalHeader(header: Buffer, e: CentralEntry): LocalHeader {
  const length = localHeaderLength(header);
  if (header.length < length) throw new ZipFormatError(`entry ${JSON.stringify(e.name)}: truncated local header`);
  const flags = header.readUInt16LE(6);
  const method = header.readUInt16LE(8);
  const nameLength = header.readUInt16LE(26);
  const name = header.subarray(LOCAL_HEADER_SIZE, LOCAL_HEADER_SIZE + nameLength);
  if (Buffer.compare(name, Buffer.from(e.name, 'utf8')) !== 0) throw new ZipFormatError(`entry ${JSON.stringify(e.name)}: its local header names another file`);
  if (method !== e.method) throw new ZipFormatError(`entry ${JSON.stringify(e.name)}: its local header says compression ${method}, the central directory ${e.method}`);
  if ((flags & FLAG_ENCRYPTED) !== 0) throw new ZipFormatError(`entry ${JSON.stringify(e.name)} is encrypted`);
  if (e.localHeaderOffset + length + e.compressedSize > e.regionEnd) throw new ZipFormatError(`entry ${JSON.stringify(e.name)}: its data runs into the next entry`);
  return { dataOffset: length };
}
