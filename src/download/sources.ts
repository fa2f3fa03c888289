// Where a blob's bytes come from (SPEC §12). A mirror is any static HTTP server holding a copy
// of the hub's storage folder: its URL layout is the hub's below `/storage/`. Blobs (service
// packages, model files) come from the first mirror that serves them right, then from the hub;
// metadata (listings, manifests, signatures, the signed snapshot, key statements) only ever
// from the hub — nothing here is used for it.
//
// A mirror is untrusted: its bytes are checked against the signed SHA-256 and size like the
// hub's, and anything wrong with it — no answer, 404, 5xx, a wrong length, a bad hash, ranges it
// cannot do while we hold bytes — ends its turn for this blob; the next source resumes the same
// `.part` (download.ts keeps bytes of the same signed file whichever source sent them). A mirror
// that failed is tried after the hub for the rest of the job.
//
// Outages: each source gets no network wait of its own (a dead mirror costs one refused
// connection, never a 30-minute wait while the hub answers). Only when no source answers at all
// does the download wait for the network, probing every source in order, for as long as a
// single-source download would. With no mirror configured a download is exactly downloadFile.
import { z } from 'zod';
import { ModelhubError, type ErrorCode } from '../errors.js';
import { sleep } from './abort.js';
import { downloadFile, type DownloadRequest, type DownloadResult } from './download.js';
import { defaultFetch, type FetchLike } from './fetch-like.js';
import { DEFAULT_MAX_NETWORK_WAIT_MS, defaultProbeDelayMs } from './network-wait.js';

// ---- configuration ---------------------------------------------------------------------

/**
 * One mirror's base URL, as a user or an app gives it: http(s) only (the bytes are verified,
 * but a `file:` or `data:` URL is no mirror), no credentials (the URL is written to the event
 * log) and no query or fragment (blob paths are appended to it). Normalised to end with `/`.
 */
export const mirrorUrlSchema = z
  .string()
  .trim()
  .superRefine((text, ctx) => {
    let u: URL;
    try {
      u = new URL(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'is not a URL' });
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') ctx.addIssue({ code: 'custom', message: 'must be an http:// or https:// URL' });
    if (u.username !== '' || u.password !== '') ctx.addIssue({ code: 'custom', message: 'must not carry credentials (the URL is written to the event log)' });
    if (u.search !== '' || u.hash !== '') ctx.addIssue({ code: 'custom', message: 'must not have a query or fragment (blob paths are appended to it)' });
  })
  .transform((text) => {
    const u = new URL(text);
    return u.href.endsWith('/') ? u.href : `${u.href}/`;
  });

/** Validated, normalised, duplicates dropped (first wins); a bad one is INVALID_REQUEST naming it. */
export function parseMirrors(list: readonly string[]): string[] {
  const out: string[] = [];
  for (const text of list) {
    const r = mirrorUrlSchema.safeParse(text);
    if (!r.success) {
      throw new ModelhubError('INVALID_REQUEST', `mirror "${text}" ${r.error.issues.map((i) => i.message).join('; ')}`, { details: { mirror: text } });
    }
    if (!out.includes(r.data)) out.push(r.data);
  }
  return out;
}

/** `$MODELHUB_MIRRORS`: comma-separated URLs; empty entries are ignored. */
export function mirrorsFromEnv(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

// ---- the storage layout (the hub's below /storage/, a mirror's below its base) ---------------

const enc = encodeURIComponent;

export function servicePackagePath(id: string, version: string, platform: string): string {
  return `services/${enc(id)}/${enc(version)}/${enc(platform)}/service.zip`;
}

export function modelFilePath(id: string, version: string, filePath: string): string {
  return `models/${enc(id)}/${enc(version)}/${filePath.split('/').map(enc).join('/')}`;
}

// ---- what the event log records --------------------------------------------------------

const sourceKindSchema = z.enum(['mirror', 'hub']);

/** Who completed a download: a mirror, the hub, or nobody ('local': the verified file was on disk already). */
export const downloadSourceSchema = z.object({
  kind: z.enum(['mirror', 'hub', 'local']),
  /** The mirror's base URL or the hub's; null for 'local'. */
  url: z.string().nullable(),
});
export type DownloadSource = z.infer<typeof downloadSourceSchema>;

/** One source's part in a job: bytes it sent, files it completed, and why it was left, if it was. */
export const sourceUseSchema = z.object({
  kind: sourceKindSchema,
  url: z.string(),
  bytes: z.number().int().nonnegative(),
  served: z.number().int().nonnegative(),
  failures: z.number().int().nonnegative(),
  last_error: z.object({ code: z.string(), message: z.string() }).nullable(),
});
export type SourceUse = z.infer<typeof sourceUseSchema>;

// ---- one job's sources -----------------------------------------------------------------

export interface BlobSource {
  kind: 'mirror' | 'hub';
  /** What events name: the mirror's base URL, or the hub's. */
  base: string;
  /** This blob at that source. */
  url: string;
}

/**
 * The sources of one job (one install, or every file of one model pull): the order to try
 * them, and what each did, for the job's events.
 */
export class BlobSources {
  /** Sources that failed during this job: tried after the hub from then on. */
  private readonly demoted = new Set<string>();
  private readonly uses = new Map<string, SourceUse>();

  constructor(readonly mirrors: readonly string[]) {}

  /** This blob's sources in the order to try them: mirrors in their order, the hub, then mirrors that failed in this job. */
  for(hubUrl: string, storagePath: string): BlobSource[] {
    const suffix = `/storage/${storagePath}`;
    const hub: BlobSource = { kind: 'hub', base: hubUrl.endsWith(suffix) ? hubUrl.slice(0, -suffix.length) : hubUrl, url: hubUrl };
    const mirrors = this.mirrors.map((m): BlobSource => ({ kind: 'mirror', base: m, url: m + storagePath }));
    return [...mirrors.filter((m) => !this.demoted.has(m.base)), hub, ...mirrors.filter((m) => this.demoted.has(m.base))];
  }

  /** What each source did so far, in the order they were first used. */
  report(): SourceUse[] {
    return [...this.uses.values()].map((u) => ({ ...u, last_error: u.last_error === null ? null : { ...u.last_error } }));
  }

  demote(s: BlobSource): void {
    if (s.kind === 'mirror') this.demoted.add(s.base);
  }

  use(s: BlobSource): SourceUse {
    let u = this.uses.get(s.base);
    if (u === undefined) {
      u = { kind: s.kind, url: s.base, bytes: 0, served: 0, failures: 0, last_error: null };
      this.uses.set(s.base, u);
    }
    return u;
  }
}

export interface SourcedDownload extends DownloadResult {
  source: DownloadSource;
}

export interface SourceHooks {
  /** A source is about to be asked (progress events name it). */
  onSource?: (s: BlobSource) => void;
}

/** Why a source's turn ended. */
type Verdict = 'fatal' | 'unreachable' | 'bad';

function verdictOf(err: unknown, signal: AbortSignal | undefined): Verdict {
  // Paused, cancelled, a lost lease, a full disk, a bug: nothing another source could fix.
  if (signal?.aborted === true || !(err instanceof ModelhubError)) return 'fatal';
  switch (err.code) {
    case 'NETWORK_ERROR':
      return err.details['outage'] === true ? 'unreachable' : 'bad';
    case 'NOT_FOUND':
    case 'CHECKSUM_MISMATCH':
    case 'SIZE_EXCEEDED':
      return 'bad';
    default:
      return 'fatal';
  }
}

/** Counts body bytes per source, and tells when a source answered (the end of an outage). */
function countingFetch(fetch: FetchLike, onAnswer: () => void, onBytes: (n: number) => void): FetchLike {
  return async (url, init) => {
    const res = await fetch(url, init);
    onAnswer();
    const body = res.body;
    if (body === null) return res;
    return {
      status: res.status,
      headers: res.headers,
      body: (async function* counted() {
        for await (const chunk of body) {
          onBytes(chunk.length);
          yield chunk;
        }
      })(),
    };
  };
}

/**
 * Downloads `req.url` (the blob on the hub) from the first of `sources.for(req.url, path)` that
 * serves it right. Same request, same result as downloadFile, plus which source completed it.
 */
export async function downloadFromSources(req: DownloadRequest, sources: BlobSources, storagePath: string, hooks: SourceHooks = {}): Promise<SourcedDownload> {
  const fetch = req.fetch ?? defaultFetch();
  const order = sources.for(req.url, storagePath);
  if (order.length === 1) {
    // No mirror: the downloader as it always was, its own network wait included.
    const hub = order[0]!;
    hooks.onSource?.(hub);
    const use = sources.use(hub);
    try {
      const r = await downloadFile({ ...req, fetch: countingFetch(fetch, () => undefined, (n) => (use.bytes += n)) });
      return done(r, hub, use);
    } catch (err) {
      noteFailure(use, err);
      throw err;
    }
  }

  const maxWaitMs = req.maxNetworkWaitMs ?? DEFAULT_MAX_NETWORK_WAIT_MS;
  const probeDelayMs = req.probeDelayMs ?? defaultProbeDelayMs;
  const bad = new Set<string>();
  const errors: { source: BlobSource; error: ModelhubError }[] = [];
  let outageSince: number | null = null;
  let probes = 0;
  const answered = (): void => {
    if (outageSince === null) return;
    outageSince = null;
    probes = 0;
    req.onNetworkWait?.(false);
  };

  for (;;) {
    const unreachable: BlobSource[] = [];
    for (const s of sources.for(req.url, storagePath)) {
      if (bad.has(s.base)) continue;
      hooks.onSource?.(s);
      const use = sources.use(s);
      try {
        const r = await downloadFile({
          ...req,
          url: s.url,
          fetch: countingFetch(fetch, answered, (n) => (use.bytes += n)),
          // The rounds below wait for the network across all sources; no source waits alone.
          maxNetworkWaitMs: 0,
          onNetworkWait: undefined,
          // A mirror's wrong bytes or broken ranges end its turn; the hub keeps today's rules.
          checksumRefetches: s.kind === 'mirror' ? 0 : req.checksumRefetches,
          strictServer: s.kind === 'mirror' || req.strictServer === true,
        });
        answered();
        // Sources that did not answer while this one did are not to be asked first again.
        for (const u of unreachable) sources.demote(u);
        return done(r, s, use);
      } catch (err) {
        const verdict = verdictOf(err, req.signal);
        if (verdict === 'fatal') throw err;
        noteFailure(use, err);
        if (verdict === 'unreachable') {
          unreachable.push(s);
        } else {
          bad.add(s.base);
          sources.demote(s);
          errors.push({ source: s, error: err as ModelhubError });
        }
      }
    }
    if (unreachable.length === 0) throw allFailed(errors);
    // No source answered: an outage. Wait for the network like a single download would.
    const now = Date.now();
    if (outageSince === null) {
      outageSince = now;
      req.onNetworkWait?.(true);
    }
    const waited = now - outageSince;
    if (waited >= maxWaitMs) {
      throw new ModelhubError('NETWORK_ERROR', `no source answered for ${Math.round(waited / 1000)} s: ${unreachable.map((s) => s.base).join(', ')}`, {
        retryable: true,
        details: { url: req.url, waitedMs: waited, maxWaitMs, outage: true, sources: unreachable.map((s) => s.base) },
      });
    }
    probes += 1;
    await sleep(Math.min(probeDelayMs(probes), maxWaitMs - waited), req.signal);
  }
}

function done(r: DownloadResult, s: BlobSource, use: SourceUse): SourcedDownload {
  // No request at all: the verified file (or a complete part) was on disk already.
  if (r.attempts === 0) return { ...r, source: { kind: 'local', url: null } };
  use.served += 1;
  return { ...r, source: { kind: s.kind, url: s.base } };
}

function noteFailure(use: SourceUse, err: unknown): void {
  use.failures += 1;
  use.last_error = err instanceof ModelhubError ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String(err) };
}

/** Every source failed for good: the hub's error (it is the authority), naming what the others did. */
function allFailed(errors: { source: BlobSource; error: ModelhubError }[]): ModelhubError {
  const main = errors.find((e) => e.source.kind === 'hub') ?? errors[errors.length - 1];
  if (main === undefined) return new ModelhubError('INTERNAL', 'no download source to try');
  const others = errors.filter((e) => e !== main).map((e) => `${e.source.base}: ${e.error.code}`);
  const code: ErrorCode = main.error.code;
  return new ModelhubError(code, others.length === 0 ? main.error.message : `${main.error.message} (also failed: ${others.join('; ')})`, {
    cause: main.error,
    retryable: main.error.retryable,
    details: { ...main.error.details, sources: errors.map((e) => ({ url: e.source.base, code: e.error.code, message: e.error.message })) },
  });
}
