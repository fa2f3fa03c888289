// `modelhub publish DIR`: upload what `pack` wrote and `sign` signed. Files are streamed from
// disk (fs.openAsBlob), so a package of any size goes up in constant memory.
import { openAsBlob } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { manifestSchema } from '../schemas/manifest.js';
import { parseJsonOrThrow } from '../schemas/parse.js';
import { hubError, networkError } from './hub-errors.js';

export interface PublishOptions {
  hub: string;
  token: string;
  stable?: boolean;
  /** A staged rollout: the share of nodes (0–100) offered this service release at first. */
  rollout?: number;
  fetch?: typeof fetch;
}

export interface PublishResult {
  kind: 'service' | 'model';
  id: string;
  version: string;
  platform?: string;
  sha256: string;
  size_bytes: number;
  key_id: string;
  stable: boolean;
}

export async function publishDir(dir: string, options: PublishOptions): Promise<PublishResult> {
  const doFetch = options.fetch ?? fetch;
  const manifestPath = path.join(dir, 'manifest.json');
  const signaturePath = manifestPath + '.minisig';
  const manifestBytes = await readFile(manifestPath).catch((err: unknown) => {
    throw new ModelhubError('INVALID_REQUEST', `${manifestPath}: cannot read (${(err as Error).message}); run modelhub pack first`, { cause: err });
  });
  const signature = await readFile(signaturePath).catch((err: unknown) => {
    throw new ModelhubError('INVALID_REQUEST', `${signaturePath}: cannot read (${(err as Error).message}); run modelhub sign ${manifestPath} --key KEY first`, { cause: err });
  });
  const m = parseJsonOrThrow(manifestSchema, manifestBytes.toString('utf8'), 'MANIFEST_INVALID', manifestPath);

  // The order is part of the protocol: the hub checks the manifest and its signature before it
  // reads (and stores) a byte of the package, and refuses a package field that comes first.
  const form = new FormData();
  form.append('manifest', new Blob([manifestBytes], { type: 'application/json' }), 'manifest.json');
  form.append('signature', new Blob([signature], { type: 'text/plain' }), 'manifest.json.minisig');
  let url: string;
  const base = options.hub.replace(/\/+$/, '');
  if (m.kind === 'service') {
    const zip = path.join(dir, m.archive.path);
    await access(zip).catch((err: unknown) => {
      throw new ModelhubError('INVALID_REQUEST', `${zip}: missing`, { cause: err });
    });
    form.append('package', await openAsBlob(zip, { type: 'application/zip' }), 'service.zip');
    url = `${base}/api/admin/services/${encodeURIComponent(m.id)}/${encodeURIComponent(m.version)}/${encodeURIComponent(m.platform)}${options.rollout !== undefined ? `?rollout=${options.rollout}` : ''}`;
  } else {
    if (options.rollout !== undefined) throw new ModelhubError('INVALID_REQUEST', '--rollout applies to service releases only');
    for (const f of m.files) {
      form.append(`file:${f.path}`, await openAsBlob(path.join(dir, ...f.path.split('/'))), path.posix.basename(f.path));
    }
    url = `${base}/api/admin/models/${encodeURIComponent(m.id)}/${encodeURIComponent(m.version)}`;
  }

  const auth = { authorization: `Bearer ${options.token}` };
  let res: Response;
  try {
    res = await doFetch(url, { method: 'PUT', body: form, headers: auth });
  } catch (err) {
    // The hub refuses a bad signature (or key, or manifest) as soon as it has read those two
    // fields and closes the connection under the package still being sent, so the client sees
    // only a broken upload. Send the two fields alone to learn why; if they pass, the network
    // itself was the problem.
    throw (await refusalOfHead(doFetch, url, auth, manifestBytes, signature, m.kind)) ?? networkError(err, `PUT ${url}`);
  }
  if (!res.ok) throw await hubError(res, 'publish refused');
  const body = (await res.json()) as { sha256: string; size_bytes: number; key_id: string };

  let stable = false;
  if (options.stable === true) {
    const stableUrl = `${base}/api/admin/${m.kind === 'service' ? 'services' : 'models'}/${encodeURIComponent(m.id)}/${encodeURIComponent(m.version)}/stable`;
    let sres: Response;
    try {
      sres = await doFetch(stableUrl, { method: 'POST', headers: auth });
    } catch (err) {
      throw networkError(err, `POST ${stableUrl}`);
    }
    if (!sres.ok) throw await hubError(sres, 'mark stable refused');
    stable = true;
  }
  return {
    kind: m.kind,
    id: m.id,
    version: m.version,
    ...(m.kind === 'service' ? { platform: m.platform } : {}),
    sha256: body.sha256,
    size_bytes: body.size_bytes,
    key_id: body.key_id,
    stable,
  };
}

/** Refusals that are about the manifest and signature themselves, whatever follows them. */
const HEAD_REFUSALS = new Set(['SIGNATURE_INVALID', 'UNTRUSTED_KEY', 'KEY_REVOKED', 'ALREADY_EXISTS', 'INSUFFICIENT_DISK', 'SIZE_EXCEEDED', 'UNAUTHORIZED', 'RATE_LIMITED']);

/** The hub's refusal of the manifest and signature alone, or undefined when it has none. */
async function refusalOfHead(doFetch: typeof fetch, url: string, auth: Record<string, string>, manifest: Buffer, signature: Buffer, kind: 'service' | 'model'): Promise<ModelhubError | undefined> {
  const head = new FormData();
  head.append('manifest', new Blob([manifest], { type: 'application/json' }), 'manifest.json');
  head.append('signature', new Blob([signature], { type: 'text/plain' }), 'manifest.json.minisig');
  try {
    const res = await doFetch(url, { method: 'PUT', body: head, headers: auth, signal: AbortSignal.timeout(30_000) });
    if (res.ok) return undefined;
    const refusal = await hubError(res, 'publish refused');
    // For a service, "the package field is missing" means the head passed and anything else is
    // about the head; a model's head alone also lacks its files, so only unambiguous codes count.
    if (kind === 'service') return refusal.code === 'INVALID_REQUEST' && /is missing/i.test(refusal.message) ? undefined : refusal;
    return HEAD_REFUSALS.has(refusal.code) ? refusal : undefined;
  } catch {
    return undefined;
  }
}

/** `modelhub rollout ID VERSION PERCENT`: 0 halts a staged rollout, 100 completes it. */
export async function setRollout(o: { hub: string; token: string; id: string; version: string; percent: number; fetch?: typeof fetch }): Promise<{ id: string; version: string; rollout: number }> {
  const url = `${o.hub.replace(/\/+$/, '')}/api/admin/services/${encodeURIComponent(o.id)}/${encodeURIComponent(o.version)}/rollout`;
  let res: Response;
  try {
    res = await (o.fetch ?? fetch)(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ percent: o.percent }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw networkError(err, `POST ${url}`);
  }
  if (!res.ok) throw await hubError(res, 'rollout refused');
  const body = (await res.json()) as { rollout: number };
  return { id: o.id, version: o.version, rollout: body.rollout };
}
