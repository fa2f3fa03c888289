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
    url = `${base}/api/admin/services/${encodeURIComponent(m.id)}/${encodeURIComponent(m.version)}/${encodeURIComponent(m.platform)}`;
  } else {
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
    throw networkError(err, `PUT ${url}`);
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
