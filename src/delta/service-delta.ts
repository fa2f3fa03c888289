// A delta update of a service: gathers every file of the new release, by SHA-256, into a
// content folder (`<archive>.delta/<sha256>`), taking what the node already has from its
// installed versions and reading only the rest out of the package on the server with Range
// requests. The delta stager (stage-delta.ts) then builds the version folder from it.
//
// Proof: the package's own SHA-256 cannot be checked without the whole package, so each file is
// proven by its signed SHA-256 and size in the manifest (the signature covers the manifest's
// exact bytes, hence every file's hash, size and mode, and the list itself): a reused file is
// hashed after it is linked or copied into the content folder; a fetched entry is hashed while
// it is written and renamed into place only when it matches. Only hashes the manifest lists are
// ever gathered, so nothing unlisted can reach the version folder.
//
// Crash safety: the content folder only ever holds complete, verified files under their hash
// (temp names are removed on the next run), so a resumed job keeps what it has and fetches the
// rest. Any doubt about the ranged path (no Range support, a central directory that disagrees
// with the manifest, a bad entry, too much to fetch) is a DeltaUnavailable: the caller downloads
// the whole package as before.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from '../download/errors.js';
import { hashFile } from '../download/resume.js';
import type { FetchLike } from '../download/fetch-like.js';
import type { TokenBucket } from '../download/token-bucket.js';
import { ModelhubError } from '../errors.js';
import { fsyncDir } from '../fs/durable.js';
import { linkOrCopy, type Placement } from '../fs/link.js';
import type { ServiceManifest } from '../schemas/manifest.js';
import { foldPath, unsafePathReason } from '../schemas/safe-path.js';
import { stagedMode } from '../stage/staged-mode.js';
import { DeltaUnavailable } from './errors.js';
import { openRemoteZip, planRanges, readEntries, type CentralEntry, type RemoteZip } from './remote-zip.js';
import { writeVerifiedFile } from './verified-file.js';
import { isEncrypted } from './zip-format.js';

/** Ranges pay off only while they fetch at most this share of the package. */
export const DELTA_MAX_SHARE = 0.5;
/**
 * Below this size a package is simply downloaded: the end records and central directory are
 * read in a 64 KiB request, and the round trips cost more than the bytes a delta could save.
 */
export const MIN_DELTA_ARCHIVE = 256 * 1024;
/**
 * When this share of the release's (uncompressed) bytes is on no local file, not even the
 * central directory is read. Uncompressed sizes only bound the share the entries take in the
 * package (text deflates, weights do not), so this is the clear case only; the exact test
 * (DELTA_MAX_SHARE, in the package's bytes) follows once the central directory is known.
 */
export const NEARLY_ALL = 0.9;

/** The content folder of a package downloaded to `archivePath`: removed with it (clean-up, commit) and swept with it. */
export function deltaDirOf(archivePath: string): string {
  return `${archivePath}.delta`;
}

/** A file the node already has, with the hash its signed manifest gives it. */
export interface LocalFile {
  path: string;
  sha256: string;
  size: number;
}

export interface DeltaFetchRequest {
  /** The new release's signed, verified manifest. */
  manifest: ServiceManifest;
  /** The package (the manifest's archive) on the hub or a mirror. */
  url: string;
  fetch: FetchLike;
  signal?: AbortSignal;
  stallTimeoutMs?: number;
  bandwidth?: TokenBucket;
  /** The content folder: every file of the release, named by its SHA-256. */
  dir: string;
  /** Files of installed versions (candidates; each is hashed before it is used). */
  local: readonly LocalFile[];
  /**
   * The most of the package worth fetching by ranges; default DELTA_MAX_SHARE. 1: ranges
   * whatever the share (a repair fetching only damaged files) — the size and share checks made
   * before the central directory is read are off then too.
   */
  maxShare?: number;
  mergeGap?: number;
  concurrency?: number;
  /** Called before every change to the content folder; throwing stops the fetch (a lost lease). */
  guard?: () => void;
  /** Every body chunk's length as it arrives (per-source byte counts). */
  onBytes?: (n: number) => void;
  /** Once the plan is known: what will be fetched. */
  onPlan?: (plan: DeltaPlan) => void;
  /** Bytes received so far of bytesTotal (both count the ranged bytes only). */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface DeltaPlan {
  /** Ranged bytes of this release: end records and central directory, plus every entry to fetch. */
  bytesTotal: number;
  /** Of those, fetched by an earlier run of the job (its files are in the content folder). */
  bytesDone: number;
  entries: number;
  requests: number;
}

export interface DeltaFetchResult {
  dir: string;
  /** Body bytes received by this run (central directory included). */
  bytesFetched: number;
  /** Ranged bytes of the release in all, earlier runs of the job included. */
  bytesTotal: number;
  requests: number;
  entriesFetched: number;
  filesReused: number;
  bytesReused: number;
  /** Reused files hard-linked, and copied (a file system without hard links). */
  linked: number;
  copied: number;
}

interface Wanted {
  sha256: string;
  size: number;
  mode: number;
  /** One path of the release with these bytes (the entry fetched for them). */
  path: string;
}

function quote(s: string): string {
  return JSON.stringify(s);
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

/**
 * Where the zip's central directory disagrees with the signed manifest, as the stager would see
 * it (src/stage/stage.ts): a listed file missing or of another size, an unlisted file, a name
 * that is unsafe or collides with another, a link or special file, encryption, an unknown
 * compression method. Undefined when they agree. Pure.
 */
export function centralDirectoryProblem(entries: readonly CentralEntry[], manifest: ServiceManifest): string | undefined {
  const listed = new Map(manifest.files.map((f) => [f.path, f]));
  const folded = new Set<string>();
  let found = 0;
  for (const e of entries) {
    const dir = e.name.endsWith('/');
    const name = dir ? e.name.slice(0, -1) : e.name;
    const why = unsafePathReason(name);
    if (why !== undefined) return `entry ${quote(e.name)}: ${why}`;
    const key = foldPath(name);
    if (folded.has(key)) return `entry ${quote(e.name)} collides with another entry`;
    folded.add(key);
    const type = ((e.externalAttributes >>> 16) & 0xffff) & S_IFMT;
    if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) return `entry ${quote(e.name)} is a link or a special file`;
    if (isEncrypted(e)) return `entry ${quote(e.name)} is encrypted`;
    if (dir) {
      if (e.size !== 0 || e.compressedSize !== 0) return `entry ${quote(e.name)} is a directory with data`;
      continue;
    }
    if (type === S_IFDIR) return `entry ${quote(e.name)} has directory attributes but no trailing "/"`;
    const f = listed.get(name);
    if (f === undefined) return `entry ${quote(e.name)} is not listed in the manifest's files`;
    if (e.size !== f.size) return `entry ${quote(e.name)}: the archive declares ${e.size} bytes, the manifest ${f.size}`;
    if (e.method !== 0 && e.method !== 8) return `entry ${quote(e.name)}: compression method ${e.method}`;
    found += 1;
  }
  if (found !== listed.size) return `${listed.size - found} listed file(s) missing from the archive`;
  return undefined;
}

/** Is `file` a complete regular file of `size` bytes? */
async function complete(file: string, size: number): Promise<boolean> {
  const st = await lstat(file).catch(() => null);
  return st !== null && st.isFile() && st.size === size;
}

/**
 * Gathers the release's files into `req.dir` (see the top of this file). Throws
 * DeltaUnavailable when the whole package should be downloaded instead; the content folder is
 * then left as it is (a later run may use it; clean-up removes it with the download).
 */
export async function fetchDelta(req: DeltaFetchRequest): Promise<DeltaFetchResult> {
  const signal = req.signal;
  const guard = req.guard ?? (() => undefined);
  const share = req.maxShare ?? DELTA_MAX_SHARE;
  if (share < 1 && req.manifest.archive.size < MIN_DELTA_ARCHIVE) {
    throw new DeltaUnavailable('not_worth_it', `the package is ${req.manifest.archive.size} bytes: reading its central directory would cost about as much`);
  }
  guard();
  await mkdir(req.dir, { recursive: true });
  for (const name of await readdir(req.dir)) {
    // Temp names of an interrupted run: never complete, never trusted.
    if (name.includes('.tmp-')) await rm(path.join(req.dir, name), { force: true });
  }
  const fileOf = (sha: string): string => path.join(req.dir, sha);

  const wanted = new Map<string, Wanted>();
  for (const f of req.manifest.files) {
    if (!wanted.has(f.sha256)) wanted.set(f.sha256, { sha256: f.sha256, size: f.size, mode: stagedMode(f.mode), path: f.path });
  }
  const localBySha = new Map<string, LocalFile[]>();
  for (const l of req.local) {
    if (wanted.get(l.sha256)?.size !== l.size) continue;
    localBySha.set(l.sha256, [...(localBySha.get(l.sha256) ?? []), l]);
  }

  // Before any work: when nearly every byte is new, the whole package it is (the exact share,
  // in compressed bytes, is only known from the central directory, read below).
  let unknown = 0;
  let unpacked = 0;
  for (const w of wanted.values()) {
    unpacked += w.size;
    if (!localBySha.has(w.sha256) && !(await complete(fileOf(w.sha256), w.size))) unknown += w.size;
  }
  if (unknown > Math.max(NEARLY_ALL, share) * unpacked) throw new DeltaUnavailable('not_worth_it', `${unknown} of the release's ${unpacked} bytes are not on this node`);

  // 1. What the node has: the content folder (an earlier run), then the installed versions.
  const present = new Set<string>();
  const earlier: string[] = [];
  let filesReused = 0;
  let bytesReused = 0;
  const placed: Record<Placement, number> = { linked: 0, copied: 0 };
  for (const w of wanted.values()) {
    signal?.throwIfAborted();
    if (await complete(fileOf(w.sha256), w.size)) {
      present.add(w.sha256);
      if (localBySha.has(w.sha256)) {
        filesReused += 1;
        bytesReused += w.size;
      } else {
        earlier.push(w.sha256);
      }
      continue;
    }
    for (const candidate of localBySha.get(w.sha256) ?? []) {
      guard();
      const tmp = `${fileOf(w.sha256)}.tmp-${randomBytes(4).toString('hex')}`;
      let how: Placement;
      try {
        how = await linkOrCopy(candidate.path, tmp);
      } catch (err) {
        // The installed file is gone (or is no file): the next candidate, or a fetch.
        if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR') || isErrno(err, 'EISDIR')) continue;
        throw err;
      }
      // The installed file was verified when it was installed; it is checked again here, since
      // it is what the new version will be made of.
      if ((await hashFile(tmp, signal)) !== w.sha256) {
        await rm(tmp, { force: true });
        continue;
      }
      guard();
      await rename(tmp, fileOf(w.sha256));
      present.add(w.sha256);
      placed[how] += 1;
      filesReused += 1;
      bytesReused += w.size;
      break;
    }
  }
  const need = [...wanted.values()].filter((w) => !present.has(w.sha256));
  const result = (zip: RemoteZip | null, bytesTotal: number, entriesFetched: number): DeltaFetchResult => ({
    dir: req.dir,
    bytesFetched: zip?.reader.bytesReceived ?? 0,
    bytesTotal,
    requests: zip?.reader.requests ?? 0,
    entriesFetched,
    filesReused,
    bytesReused,
    linked: placed.linked,
    copied: placed.copied,
  });
  if (need.length === 0) {
    // Everything is here already: not one request.
    await fsyncDir(req.dir);
    return result(null, 0, 0);
  }
  if (filesReused === 0 && earlier.length === 0) throw new DeltaUnavailable('nothing_to_reuse', 'no file of the release is on this node yet');

  // 2. The package's central directory, checked against the signed manifest.
  let plan: DeltaPlan | null = null;
  let received = 0;
  const zip = await openRemoteZip({
    url: req.url,
    size: req.manifest.archive.size,
    fetch: req.fetch,
    ...(signal === undefined ? {} : { signal }),
    ...(req.stallTimeoutMs === undefined ? {} : { stallTimeoutMs: req.stallTimeoutMs }),
    ...(req.bandwidth === undefined ? {} : { bandwidth: req.bandwidth }),
    onBytes: (n) => {
      received += n;
      req.onBytes?.(n);
      if (plan !== null) req.onProgress?.(plan.bytesDone + received, plan.bytesTotal);
    },
  });
  const problem = centralDirectoryProblem(zip.entries, req.manifest);
  if (problem !== undefined) throw new DeltaUnavailable('manifest_mismatch', `${req.url}: ${problem}`);
  const entryOf = (w: Wanted): CentralEntry => zip.byName.get(w.path)!;
  const entries = need.map(entryOf);
  const ranges = planRanges(entries, { ...(req.mergeGap === undefined ? {} : { mergeGap: req.mergeGap }) });
  const before = earlier.reduce((n, sha) => n + (entryOf(wanted.get(sha)!).regionEnd - entryOf(wanted.get(sha)!).localHeaderOffset), 0);
  if (before + ranges.bytes > share * req.manifest.archive.size) {
    throw new DeltaUnavailable('not_worth_it', `${before + ranges.bytes} of the package's ${req.manifest.archive.size} bytes changed (more than ${Math.round(share * 100)} %)`);
  }
  plan = { bytesTotal: before + received + ranges.bytes, bytesDone: before, entries: entries.length, requests: ranges.groups.length };
  req.onPlan?.(plan);
  req.onProgress?.(plan.bytesDone + received, plan.bytesTotal);

  // 3. The entries, each verified while it is written.
  const byName = new Map(need.map((w) => [w.path, w]));
  await readEntries(
    zip,
    entries,
    async (e, data) => {
      const w = byName.get(e.name)!;
      try {
        await writeVerifiedFile(data, { dest: fileOf(w.sha256), sha256: w.sha256, size: w.size, mode: w.mode, guard, label: e.name });
      } catch (err) {
        if (err instanceof ModelhubError && (err.code === 'CHECKSUM_MISMATCH' || err.code === 'SIZE_EXCEEDED')) {
          throw new DeltaUnavailable('entry_mismatch', `${req.url}: ${err.message}`, { cause: err });
        }
        throw err;
      }
    },
    { ...(req.mergeGap === undefined ? {} : { mergeGap: req.mergeGap }), ...(req.concurrency === undefined ? {} : { concurrency: req.concurrency }) },
  );
  await fsyncDir(req.dir);
  return result(zip, plan.bytesTotal, entries.length);
}
