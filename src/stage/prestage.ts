// Staging while the package downloads: a worker thread (prestage-worker.ts, the work itself in
// prestage-core.ts) follows the `.part` file as the downloader writes it and extracts each
// listed file into the staging directory, hash-checked against the signed manifest, so that
// the install does not read and write the whole package a second time after the download.
//
// It is only a head start. It gives up (and leaves the normal stager to do the work) at the
// first thing it does not fully understand. When it succeeds, the stage step still checks the
// archive's central directory against the manifest (verifyPrestaged) before the result is
// used, and only after the archive's own SHA-256 was verified.
import { access, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { findScript } from '../platform/node-launch.js';
import type { ServiceManifest } from '../schemas/manifest.js';
import { pathListViolation } from '../schemas/safe-path.js';
import { serviceJsonSchema } from '../schemas/service.js';
import { listEntries } from '../zip/open-zip.js';
import { jsonEqual } from './json-equal.js';
import { prestageMarker } from './prestage-core.js';
import type { FromWorker, ToWorker } from './prestage-worker.js';

export { prestageMarker };

const NOTIFY_BYTES = 1024 * 1024;
const NOTIFY_MS = 20;

/** The compiled worker: beside this file in dist/, or in dist/ when running from sources (tests). */
function workerScript(): string | null {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return findScript([path.join(here, 'prestage-worker.js'), path.resolve(here, '..', '..', 'dist', 'src', 'stage', 'prestage-worker.js')]);
}

export class Prestager {
  private readonly worker: Worker | null;
  private readonly done: Promise<boolean>;
  /**
   * Abandoned once: what it staged is never used, even if the worker had already finished
   * (a whole archive whose hash then failed — a mirror's tampered bytes — is void however
   * right each file it extracted looked).
   */
  private abandoned = false;
  private finished = false;
  /** The most the downloader said is on disk, and the most the worker was told. */
  private flushed = 0;
  private told = 0;
  private trailing: NodeJS.Timeout | null = null;
  /** The archive's signed size: its last bytes are told at once. */
  private readonly size: number;

  constructor(o: { dest: string; manifest: ServiceManifest; stagingDir: string; signal?: AbortSignal }) {
    this.size = o.manifest.archive.size;
    const script = workerScript();
    if (script === null) {
      this.worker = null;
      this.done = Promise.resolve(false);
      return;
    }
    // A small heap: the worker only streams 1 MiB chunks; the installer's peak RSS is budgeted.
    const worker = new Worker(script, {
      workerData: { dest: o.dest, manifest: o.manifest, stagingDir: o.stagingDir },
      resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 48 },
    });
    this.worker = worker;
    this.done = new Promise<boolean>((resolve) => {
      worker.once('message', (m: FromWorker) => resolve(m.ok));
      worker.once('error', () => resolve(false));
      worker.once('exit', () => resolve(false));
    }).finally(() => void worker.terminate());
    o.signal?.addEventListener('abort', () => this.abandon('aborted'), { once: true });
  }

  private send(m: ToWorker): void {
    this.worker?.postMessage(m);
  }

  /**
   * From the downloader: the first `n` bytes are on disk. Passed on at once when they are a
   * read's worth ahead of what the worker was told (it reads 1 MiB at a time) or the whole
   * archive, else within NOTIFY_MS: the downloader writes every socket read of 64 KiB or more
   * as it comes, and a message per write cost the main thread more than the worker gained.
   */
  flushedTo(n: number): void {
    this.flushed = Math.max(this.flushed, n);
    if (this.flushed - this.told >= NOTIFY_BYTES || this.flushed === this.size) this.tell();
    else this.trailing ??= setTimeout(() => this.tell(), NOTIFY_MS);
  }

  private tell(): void {
    if (this.trailing !== null) clearTimeout(this.trailing);
    this.trailing = null;
    if (this.abandoned || this.finished || this.flushed <= this.told) return;
    this.told = this.flushed;
    this.send({ type: 'flushed', n: this.told });
  }

  abandon(reason: string): void {
    this.abandoned = true;
    if (this.trailing !== null) clearTimeout(this.trailing);
    this.send({ type: 'abandon', reason });
  }

  /**
   * The download is complete (`size` bytes, moved to dest): true when every file is staged and
   * the prestager was never abandoned. False leaves the staging directory to the normal stager,
   * which empties it first.
   */
  async finish(size: number): Promise<boolean> {
    this.finished = true;
    if (this.trailing !== null) clearTimeout(this.trailing);
    this.send({ type: 'finish', size });
    const ok = await this.done;
    return ok && !this.abandoned;
  }

  /** Resolves once the prestager has stopped (after abandon(), with false). */
  settle(): Promise<boolean> {
    return this.done;
  }
}

/**
 * The stage step's check of a prestaged directory, run after the archive's SHA-256 matched:
 * the central directory lists exactly the manifest's files, at their sizes, as regular files,
 * and the extracted service.json is the signed one. False: use the normal stager.
 */
export async function verifyPrestaged(archive: string, manifest: ServiceManifest, stagingDir: string): Promise<boolean> {
  const marker = prestageMarker(stagingDir);
  try {
    await access(marker);
  } catch {
    return false;
  }
  await rm(marker, { force: true });
  if (pathListViolation(manifest.files.map((f) => f.path)) !== undefined) return false;
  let entries;
  try {
    entries = await listEntries(archive);
  } catch {
    return false;
  }
  const want = new Map(manifest.files.map((f) => [f.path, f.size]));
  const names = new Set<string>();
  for (const e of entries) {
    if (e.directory || e.symlink || e.encrypted || names.has(e.name) || want.get(e.name) !== e.size) return false;
    names.add(e.name);
  }
  if (names.size !== want.size) return false;
  try {
    const extracted = JSON.parse(await readFile(path.join(stagingDir, 'service.json'), 'utf8')) as unknown;
    const signed = JSON.parse(JSON.stringify(manifest.service)) as unknown;
    if (!jsonEqual(extracted, signed)) {
      const a = serviceJsonSchema.safeParse(extracted);
      const b = serviceJsonSchema.safeParse(signed);
      if (!a.success || !b.success || !jsonEqual(a.data, b.data)) return false;
    }
  } catch {
    return false;
  }
  return true;
}
