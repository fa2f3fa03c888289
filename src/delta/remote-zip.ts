// Read single entries straight out of a zip on an HTTP server with Range requests, without
// downloading the archive: the end records and the central directory first (one request for the
// last 64 KiB covers both for packages of up to several hundred files), then, per group of
// nearby entries, one request from the first entry's local header to the last entry's end.
//
// Used by delta updates (src/delta/service-delta.ts) and reusable by anything that needs a few
// files of a published package (e.g. `verify --repair`). The API:
//
//   const zip = await openRemoteZip({ url, size: manifest.archive.size, fetch, signal });
//   const entries = ['app/main.py'].map((n) => zip.byName.get(n)!);  // CentralEntry: sizes, method, offsets
//   const plan = planRanges(entries, { mergeGap });   // requests and bytes, before fetching
//   await readEntries(zip, entries, async (entry, data) => {
//     // the entry's inflated bytes; read them all (or throw). To a file, checked against the
//     // signed manifest while written (temp → fsync → rename only when size and hash match):
//     await writeVerifiedFile(data, { dest, sha256: f.sha256, size: f.size, mode });
//   });
//
// Every check here is about reading safely (see zip-format.ts); none is proof of content. The
// caller verifies each entry against the signed manifest's size and SHA-256 while writing it
// (verified-file.ts) and refuses any entry the manifest does not list. Failures that mean
// "ranges cannot be used here" are DeltaUnavailable (with a reason): the caller then reads the
// whole file. Aborting the signal rejects with the signal's reason.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';
import { DeltaUnavailable } from './errors.js';
import { RangeReader, RangeRetryable, type ByteStream, type RangeSource } from './range-reader.js';
import {
  assignRegions,
  checkLocalHeader,
  LOCAL_HEADER_SIZE,
  localHeaderLength,
  MAX_TAIL,
  parseCentralDirectory,
  parseTail,
  parseZip64End,
  ZIP64_LOCATOR_SIZE,
  ZipFormatError,
  type CentralEntry,
  type EndRecord,
} from './zip-format.js';

export type { CentralEntry } from './zip-format.js';
export type { RangeSource } from './range-reader.js';

/** The first read from the end of the file: the end records, and for most packages the whole central directory. */
export const INITIAL_TAIL = 64 * 1024;
/**
 * Entries closer than this are fetched in one request, the bytes between them included: a
 * request costs a round trip, and 64 KiB is less than one round trip's worth of bytes on most
 * links, so merging them is the cheaper way.
 */
export const DEFAULT_MERGE_GAP = 64 * 1024;
/** Groups fetched at once. */
export const DEFAULT_CONCURRENCY = 4;

export interface RemoteZip {
  readonly url: string;
  readonly size: number;
  readonly entries: readonly CentralEntry[];
  readonly byName: ReadonlyMap<string, CentralEntry>;
  readonly centralDirectory: { offset: number; size: number };
  /** The reader (its ETag, requests and bytes received so far). */
  readonly reader: RangeReader;
}

function badArchive(err: unknown): unknown {
  return err instanceof ZipFormatError ? new DeltaUnavailable('bad_archive', err.message, { cause: err }) : err;
}

/** Reads the end records and the central directory of the zip at `src.url` (`src.size`: its signed size). */
export async function openRemoteZip(src: RangeSource): Promise<RemoteZip> {
  const reader = new RangeReader(src);
  try {
    const size = src.size;
    let tailStart = Math.max(0, size - Math.min(size, INITIAL_TAIL));
    let tail = await reader.read(tailStart, size);
    let found = parseTail(tail, size);
    if (found === null) {
      // A long archive comment: read as far back as the record can be.
      const wider = Math.max(0, size - Math.min(size, MAX_TAIL));
      tail = Buffer.concat([await reader.read(wider, tailStart), tail]);
      tailStart = wider;
      found = parseTail(tail, size);
      if (found === null) throw new ZipFormatError('no end of central directory record');
    }
    const slice = async (start: number, end: number): Promise<Buffer> => {
      if (start >= tailStart) return tail.subarray(start - tailStart, end - tailStart);
      const before = await reader.read(start, Math.min(end, tailStart));
      return end <= tailStart ? before : Buffer.concat([before, tail.subarray(0, end - tailStart)]);
    };
    let end: EndRecord;
    if ('zip64EocdOffset' in found) {
      end = parseZip64End(await slice(found.zip64EocdOffset, found.eocdOffset - ZIP64_LOCATOR_SIZE), found);
    } else {
      end = found;
    }
    const cd = end.cdSize === 0 ? Buffer.alloc(0) : await slice(end.cdOffset, end.cdOffset + end.cdSize);
    const entries = parseCentralDirectory(cd, end);
    assignRegions(entries, end.cdOffset);
    const byName = new Map<string, CentralEntry>();
    for (const e of entries) {
      if (byName.has(e.name)) throw new ZipFormatError(`entry ${JSON.stringify(e.name)} appears more than once`);
      byName.set(e.name, e);
    }
    return { url: src.url, size, entries, byName, centralDirectory: { offset: end.cdOffset, size: end.cdSize }, reader };
  } catch (err) {
    throw badArchive(err);
  }
}

export interface RangeGroup {
  start: number;
  end: number;
  entries: CentralEntry[];
}

/** The requests that fetch `entries` (in file order, nearby ones merged) and their bytes in all. Pure. */
export function planRanges(entries: readonly CentralEntry[], o: { mergeGap?: number } = {}): { groups: RangeGroup[]; bytes: number } {
  const gap = o.mergeGap ?? DEFAULT_MERGE_GAP;
  const sorted = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  const groups: RangeGroup[] = [];
  for (const e of sorted) {
    const last = groups.at(-1);
    if (last !== undefined && e.localHeaderOffset - last.end <= gap) {
      last.end = e.regionEnd;
      last.entries.push(e);
    } else {
      groups.push({ start: e.localHeaderOffset, end: e.regionEnd, entries: [e] });
    }
  }
  return { groups, bytes: groups.reduce((n, g) => n + (g.end - g.start), 0) };
}

/** The entry's data from the stream, inflated when it is deflated; `done` tells whether all of it was read. */
async function* entryContent(stream: ByteStream, e: CentralEntry, state: { consumed: boolean }): AsyncGenerator<Buffer> {
  async function* stored(): AsyncGenerator<Buffer> {
    yield* stream.take(e.compressedSize);
    state.consumed = true;
  }
  if (e.method === 0) {
    if (e.compressedSize !== e.size) throw new DeltaUnavailable('bad_archive', `entry ${JSON.stringify(e.name)} is stored with ${e.compressedSize} bytes for ${e.size}`);
    yield* stored();
    return;
  }
  if (e.method !== 8) throw new DeltaUnavailable('bad_archive', `entry ${JSON.stringify(e.name)}: compression method ${e.method} is not supported`);
  const source = Readable.from(stored(), { objectMode: false });
  const inflate = createInflateRaw();
  const piped = pipeline(source, inflate);
  let finished = false;
  try {
    for await (const chunk of inflate as AsyncIterable<Buffer>) yield chunk;
    await piped;
    finished = true;
  } catch (err) {
    // A transient failure of the body keeps its kind (the group is tried again); zlib's own
    // errors mean the entry's compressed bytes are not what they claim to be.
    if (err instanceof DeltaUnavailable || err instanceof RangeRetryable) throw err;
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      throw new DeltaUnavailable('entry_mismatch', `entry ${JSON.stringify(e.name)}: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  } finally {
    if (!finished) {
      source.destroy();
      inflate.destroy();
      piped.catch(() => undefined);
    }
  }
  if (!state.consumed) throw new DeltaUnavailable('entry_mismatch', `entry ${JSON.stringify(e.name)}: its deflate stream ends before its compressed size`);
}

export type EntryHandler = (entry: CentralEntry, data: AsyncIterable<Buffer>) => Promise<void>;

/**
 * Fetches `entries` of `zip` and hands each one's inflated bytes to `onEntry`, which must read
 * them to the end (or throw). Groups of nearby entries share one request; up to `concurrency`
 * requests run at once, so `onEntry` may run for several entries at the same time. A request
 * that breaks off is tried again from the first entry not yet handed over (so `onEntry` may be
 * called again for an entry whose earlier call threw); after RANGE_ATTEMPTS failures the whole
 * call fails with DeltaUnavailable('network').
 */
export async function readEntries(zip: RemoteZip, entries: readonly CentralEntry[], onEntry: EntryHandler, o: { mergeGap?: number; concurrency?: number } = {}): Promise<void> {
  const { groups } = planRanges(entries, o);
  const queue = [...groups];
  // The first failure stops the other requests too: the caller is about to give up (or fall
  // back), and no handler may still be writing once this call has returned.
  const stop = new AbortController();
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (let g = queue.shift(); g !== undefined && failure === undefined; g = queue.shift()) {
      try {
        await readGroup(zip, g, onEntry, stop.signal);
      } catch (err) {
        failure ??= { error: err };
        stop.abort(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? DEFAULT_CONCURRENCY, queue.length) }, worker));
  if (failure !== undefined) throw failure.error;
}

async function readGroup(zip: RemoteZip, g: RangeGroup, onEntry: EntryHandler, stop: AbortSignal): Promise<void> {
  let next = 0;
  await zip.reader.retrying(async () => {
    const first = g.entries[next];
    if (first === undefined) return;
    stop.throwIfAborted();
    const stream = await zip.reader.open(first.localHeaderOffset, g.end, stop);
    try {
      for (; next < g.entries.length; next++) {
        const e = g.entries[next]!;
        await stream.skipTo(e.localHeaderOffset);
        const fixed = await stream.read(LOCAL_HEADER_SIZE);
        const length = localHeaderLength(fixed);
        const header = Buffer.concat([fixed, await stream.read(length - LOCAL_HEADER_SIZE)]);
        checkLocalHeader(header, e);
        const state = { consumed: false };
        await onEntry(e, entryContent(stream, e, state));
        if (!state.consumed) throw new Error(`the handler of ${JSON.stringify(e.name)} returned before reading the whole entry`);
      }
    } catch (err) {
      throw badArchive(err);
    } finally {
      stream.close();
    }
  });
}
