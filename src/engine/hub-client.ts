// What the engine asks the hub: a service's versions, a release's manifest and signature.
// Through the injectable FetchLike, so an Electron app can pass its own fetch.
import { z } from 'zod';
import { isErrorCode, ModelhubError } from '../errors.js';
import type { FetchLike, FetchResponseLike } from '../download/fetch-like.js';
import { modelFilePath, servicePackagePath } from '../download/sources.js';
import { signedDocumentSchema, type SignedDocument } from '../metadata/formats.js';

const MAX_JSON_BYTES = 16 * 1024 * 1024;

async function readBody(res: FetchResponseLike, max: number): Promise<string> {
  if (res.body === null) return '';
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += chunk.length;
    if (total > max) throw new ModelhubError('SIZE_EXCEEDED', `hub answer larger than ${max} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}

const envelope = z.object({ error: z.string(), message: z.string().optional() });

const serviceDetail = z.object({
  service_id: z.string(),
  latest_version: z.string().nullable(),
  versions: z.array(
    z.object({
      version: z.string(),
      platforms: z.record(z.string(), z.object({ sha256: z.string(), size_bytes: z.number() }).loose()),
    }).loose(),
  ),
}).loose();
export type ServiceDetail = z.infer<typeof serviceDetail>;

const serviceList = z.array(
  z.object({
    service_id: z.string(),
    service_name: z.string().optional(),
    latest_version: z.string().nullable(),
    versions: z.array(z.object({ version: z.string() }).loose()),
  }).loose(),
);
export type ServiceList = z.infer<typeof serviceList>;

const modelDetail = z.object({
  id: z.string(),
  name: z.string().optional(),
  default_version: z.string().nullable(),
  versions: z.array(z.object({ version: z.string() }).loose()),
}).loose();
export type ModelDetail = z.infer<typeof modelDetail>;

export class HubClient {
  readonly base: string;

  constructor(
    base: string,
    private readonly fetch: FetchLike,
    private readonly timeoutMs = 30_000,
  ) {
    this.base = base.replace(/\/+$/, '');
  }

  private async get(path: string, signal: AbortSignal, max = MAX_JSON_BYTES): Promise<string> {
    const url = this.base + path;
    // A hub that accepts the connection and never answers must not hold a job forever.
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const both = AbortSignal.any([signal, timeout]);
    let res: FetchResponseLike;
    let text: string;
    try {
      res = await this.fetch(url, { method: 'GET', headers: { accept: 'application/json, text/plain' }, signal: both });
      text = await readBody(res, max);
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof ModelhubError) throw err;
      const why = timeout.aborted ? `no answer within ${this.timeoutMs} ms` : (err as Error).message;
      throw new ModelhubError('NETWORK_ERROR', `GET ${url}: ${why}`, { cause: err, retryable: true });
    }
    if (res.status >= 200 && res.status < 300) return text;
    let code: string | undefined;
    let message = text.slice(0, 300);
    try {
      const e = envelope.safeParse(JSON.parse(text));
      if (e.success) {
        code = e.data.error;
        message = e.data.message ?? message;
      }
    } catch {
      // not an envelope
    }
    if (isErrorCode(code)) throw new ModelhubError(code, `hub: ${message}`, { details: { status: res.status, url } });
    if (res.status === 404) throw new ModelhubError('NOT_FOUND', `hub: ${url} not found`);
    throw new ModelhubError('NETWORK_ERROR', `hub answered ${res.status} for ${url}`, { retryable: res.status >= 500 });
  }

  private async getJson<S extends z.ZodType>(path: string, schema: S, signal: AbortSignal): Promise<z.infer<S>> {
    const text = await this.get(path, signal);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new ModelhubError('NETWORK_ERROR', `hub: ${path} is not JSON`, { cause: err });
    }
    const r = schema.safeParse(value);
    if (!r.success) throw new ModelhubError('NETWORK_ERROR', `hub: unexpected answer for ${path}: ${r.error.issues[0]?.message ?? ''}`);
    return r.data;
  }

  services(platform: string, signal: AbortSignal): Promise<ServiceList> {
    return this.getJson(`/api/services?platform=${encodeURIComponent(platform)}`, serviceList, signal);
  }

  service(id: string, signal: AbortSignal): Promise<ServiceDetail> {
    return this.getJson(`/api/services/${encodeURIComponent(id)}`, serviceDetail, signal);
  }

  models(signal: AbortSignal): Promise<ModelDetail[]> {
    return this.getJson('/api/models', z.array(modelDetail), signal);
  }

  model(id: string, signal: AbortSignal): Promise<ModelDetail> {
    return this.getJson(`/api/models/${encodeURIComponent(id)}`, modelDetail, signal);
  }

  serviceManifest(id: string, version: string, platform: string, signal: AbortSignal): Promise<{ manifestText: string; signatureText: string }> {
    const base = `/api/services/${encodeURIComponent(id)}/${encodeURIComponent(version)}/${encodeURIComponent(platform)}`;
    return Promise.all([this.get(`${base}/manifest`, signal, 8 * 1024 * 1024), this.get(`${base}/manifest.minisig`, signal, 64 * 1024)]).then(
      ([manifestText, signatureText]) => ({ manifestText, signatureText }),
    );
  }

  modelManifest(id: string, version: string, signal: AbortSignal): Promise<{ manifestText: string; signatureText: string }> {
    const base = `/api/models/${encodeURIComponent(id)}/${encodeURIComponent(version)}`;
    return Promise.all([this.get(`${base}/manifest`, signal, 8 * 1024 * 1024), this.get(`${base}/manifest.minisig`, signal, 64 * 1024)]).then(
      ([manifestText, signatureText]) => ({ manifestText, signatureText }),
    );
  }

  /** The signed catalog snapshot, as its exact bytes and signature (SPEC §11). */
  async snapshot(signal: AbortSignal): Promise<SignedDocument> {
    const [text, signature] = await Promise.all([this.get('/api/metadata/snapshot', signal, 16 * 1024 * 1024), this.get('/api/metadata/snapshot.minisig', signal, 64 * 1024)]);
    return { text, signature };
  }

  /** The publisher's delegation of the hub's metadata key; null when the hub has none. */
  async delegation(signal: AbortSignal): Promise<SignedDocument | null> {
    try {
      const [text, signature] = await Promise.all([this.get('/api/metadata/delegation', signal, 64 * 1024), this.get('/api/metadata/delegation.minisig', signal, 64 * 1024)]);
      return { text, signature };
    } catch (err) {
      if (err instanceof ModelhubError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
  }

  /** Key rotation and revocation statements, oldest first. */
  keyStatements(signal: AbortSignal): Promise<SignedDocument[]> {
    return this.getJson('/api/keys/statements', z.array(signedDocumentSchema).max(10_000), signal);
  }

  ranking(limit: number, signal: AbortSignal): Promise<{ model_id: string; request_count: number; rank: number }[]> {
    return this.getJson(`/api/model-usage/ranking?limit=${limit}`, z.array(z.object({ model_id: z.string(), request_count: z.number(), rank: z.number() })), signal);
  }

  /** The layout below /storage/ is a mirror's too (download/sources.ts). */
  archiveUrl(id: string, version: string, platform: string): string {
    return `${this.base}/storage/${servicePackagePath(id, version, platform)}`;
  }

  modelFileUrl(id: string, version: string, filePath: string): string {
    return `${this.base}/storage/${modelFilePath(id, version, filePath)}`;
  }
}
