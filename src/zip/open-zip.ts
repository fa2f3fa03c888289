// yauzl with promises. yauzl streams from the file descriptor, so memory stays flat at any
// archive size (NOTES: adm-zip peaks at 2x the archive).
import yauzl from 'yauzl';

export type ZipFile = yauzl.ZipFile;
export type ZipEntry = yauzl.Entry;

export function openZip(file: string): Promise<ZipFile> {
  return new Promise((resolve, reject) => {
    // validateEntrySizes catches a local stream that disagrees with its header;
    // strictFileNames refuses backslashes instead of silently turning them into slashes.
    yauzl.open(file, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: true }, (err, zip) => {
      if (err !== null || zip === undefined) reject(err ?? new Error('yauzl returned no zip file'));
      else resolve(zip);
    });
  });
}

/** Calls `onEntry` for each central-directory entry in order; resolves at the end. */
export function forEachEntry(zip: ZipFile, onEntry: (entry: ZipEntry) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let failed = false;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    zip.on('error', fail);
    zip.on('end', () => {
      if (!failed) resolve();
    });
    zip.on('entry', (entry: ZipEntry) => {
      onEntry(entry).then(() => {
        if (!failed) zip.readEntry();
      }, fail);
    });
    zip.readEntry();
  });
}

export function openEntryStream(zip: ZipFile, entry: ZipEntry): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err !== null || stream === undefined) reject(err ?? new Error('yauzl returned no stream'));
      else resolve(stream);
    });
  });
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;

/** Unix mode bits, when the entry was written by a Unix-aware zipper (version made by 3). */
export function unixMode(entry: ZipEntry): number {
  return (entry.externalFileAttributes >>> 16) & 0xffff;
}

export function isSymlinkEntry(entry: ZipEntry): boolean {
  const madeBy = entry.versionMadeBy >>> 8;
  return madeBy === 3 && (unixMode(entry) & S_IFMT) === S_IFLNK;
}

export function isDirectoryEntry(entry: ZipEntry): boolean {
  return entry.fileName.endsWith('/') || (unixMode(entry) & S_IFMT) === S_IFDIR;
}

export interface EntrySummary {
  name: string;
  size: number;
  symlink: boolean;
  directory: boolean;
  encrypted: boolean;
}

/** The central directory only: names, declared sizes and kinds, no data read. */
export async function listEntries(file: string): Promise<EntrySummary[]> {
  const zip = await openZip(file);
  const out: EntrySummary[] = [];
  try {
    await forEachEntry(zip, async (e) => {
      out.push({ name: e.fileName, size: e.uncompressedSize, symlink: isSymlinkEntry(e), directory: isDirectoryEntry(e), encrypted: e.isEncrypted() });
    });
  } finally {
    zip.close();
  }
  return out;
}
