// Signed metadata over HTTP (SPEC §11), answered as data like every other resolver. Documents
// go out byte for byte as signed; a node verifies exactly these bytes.
import { signedDocumentSchema, type SignedDocument } from '../src/metadata/formats.js';
import type { HubMetadata } from './metadata/hub-metadata.js';
import { fail, json, type HubResponse } from './response.js';

function text(body: string, contentType: string): HubResponse {
  // Metadata must be fresh: nothing between the hub and a node may keep an old copy.
  return { status: 200, headers: { 'Content-Type': contentType, 'Cache-Control': 'no-cache' }, body };
}

export function metadataKey(m: HubMetadata): HubResponse {
  return text(m.publicKeyText(), 'text/plain; charset=utf-8');
}

export async function snapshot(m: HubMetadata, part: 'text' | 'signature'): Promise<HubResponse> {
  const doc = await m.snapshot();
  return part === 'text' ? text(doc.text, 'application/json; charset=utf-8') : text(doc.signature, 'text/plain; charset=utf-8');
}

export async function delegation(m: HubMetadata, part: 'text' | 'signature'): Promise<HubResponse> {
  const doc = await m.delegation();
  if (doc === undefined) return fail('NOT_FOUND', "no publisher has certified this hub's metadata key yet (modelhub certify-hub-key)");
  return part === 'text' ? text(doc.text, 'application/json; charset=utf-8') : text(doc.signature, 'text/plain; charset=utf-8');
}

export async function keyStatements(m: HubMetadata): Promise<HubResponse> {
  return json(200, await m.statements(), { 'Cache-Control': 'no-cache' });
}

function parseDocument(body: unknown): SignedDocument | HubResponse {
  const r = signedDocumentSchema.safeParse(body);
  return r.success ? r.data : fail('INVALID_REQUEST', 'the body must be { "text": "…", "signature": "…" } (a document and its .minisig)');
}

export async function putDelegation(m: HubMetadata, body: unknown): Promise<HubResponse> {
  const doc = parseDocument(body);
  if ('status' in doc) return doc;
  const r = await m.setDelegation(doc);
  return json(200, { success: true, key_id: r.keyId, expires: r.expires });
}

export async function addKeyStatement(m: HubMetadata, body: unknown): Promise<HubResponse> {
  const doc = parseDocument(body);
  if ('status' in doc) return doc;
  const r = await m.addStatement(doc);
  return json(r.added ? 201 : 200, { success: true, kind: r.kind, added: r.added });
}
