// Admin calls for signed metadata: fetch a hub's metadata key, upload a delegation or a key
// statement (admin token).
import type { SignedDocument } from '../metadata/formats.js';
import { ModelhubError } from '../errors.js';
import { parsePublicKey, type PublicKey } from '../sign/minisign-format.js';
import { hubError, networkError } from './hub-errors.js';

export async function fetchHubMetadataKey(hub: string, doFetch: typeof fetch = fetch): Promise<PublicKey> {
  const url = `${hub.replace(/\/+$/, '')}/api/metadata/key`;
  let res: Response;
  try {
    res = await doFetch(url, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw networkError(err, `GET ${url}`);
  }
  if (!res.ok) throw await hubError(res, `GET ${url}`);
  const parsed = parsePublicKey(await res.text());
  if (!parsed.ok) throw new ModelhubError('NETWORK_ERROR', `${url} is not a minisign public key: ${parsed.message}`);
  return parsed.value;
}

export async function uploadSigned(hub: string, token: string, route: 'metadata/delegation' | 'keys/statements', doc: SignedDocument, doFetch: typeof fetch = fetch): Promise<Record<string, unknown>> {
  const url = `${hub.replace(/\/+$/, '')}/api/admin/${route}`;
  let res: Response;
  try {
    res = await doFetch(url, {
      method: route === 'metadata/delegation' ? 'PUT' : 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(doc),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw networkError(err, `${route} upload`);
  }
  if (!res.ok) throw await hubError(res, `${route} upload`);
  return (await res.json()) as Record<string, unknown>;
}
