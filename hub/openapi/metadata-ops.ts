// Signed metadata (SPEC §11): what a node verifies before it believes "latest".
import { signedDocumentSchema } from '../../src/metadata/formats.js';
import type { Operation, ResponseDoc } from './operation.js';

const text = { type: 'string' };
const fresh = { 'Cache-Control': { description: '`no-cache`: metadata must not be served stale by anything in between.', schema: text } };

function document(mediaType: string, what: string): Record<number, ResponseDoc> {
  return { 200: { description: `${what}, byte for byte as signed.`, content: { [mediaType]: { type: 'string' } }, headers: fresh } };
}

export const METADATA_OPS: readonly Operation[] = [
  {
    path: '/api/metadata/key',
    method: 'get',
    head: true,
    operationId: 'getMetadataKey',
    tag: 'metadata',
    summary: "The hub's online metadata public key (a minisign public key file).",
    description: 'What `modelhub certify-hub-key --hub URL` fetches and certifies with a publisher key.',
    responses: { 200: { description: 'The public key.', content: { 'text/plain': { type: 'string' } }, headers: fresh } },
  },
  {
    path: '/api/metadata/snapshot',
    method: 'get',
    head: true,
    operationId: 'getSnapshot',
    tag: 'metadata',
    summary: 'The catalog snapshot: per service and platform its versions (manifest SHA-256, rollout), latest and stable; per model its versions and default; a serial and an expiry.',
    description:
      "Signed with the hub's metadata key (…/snapshot.minisig). Re-signed whenever the catalog changes (serial + 1) and before half of `--metadata-ttl` has passed. " +
      'Nodes resolve latest/stable/default only from it, refuse it when expired (METADATA_EXPIRED) or when its serial is lower than one they saw (ROLLBACK_DETECTED).',
    responses: { 200: { description: 'The snapshot, byte for byte as signed.', json: 'Snapshot', headers: fresh } },
  },
  {
    path: '/api/metadata/snapshot.minisig',
    method: 'get',
    head: true,
    operationId: 'getSnapshotSignature',
    tag: 'metadata',
    summary: "The snapshot's minisign signature by the metadata key.",
    responses: document('text/plain', 'The signature'),
  },
  {
    path: '/api/metadata/delegation',
    method: 'get',
    head: true,
    operationId: 'getDelegation',
    tag: 'metadata',
    summary: "A publisher key's delegation of the hub's metadata key, with its expiry.",
    description: 'Without one, nodes still install explicit versions (their manifests are signed) but refuse to resolve latest/stable/default (UNTRUSTED_KEY).',
    responses: { 200: { description: 'The delegation, byte for byte as signed.', json: 'Delegation', headers: fresh } },
    errors: ['NOT_FOUND'],
  },
  {
    path: '/api/metadata/delegation.minisig',
    method: 'get',
    head: true,
    operationId: 'getDelegationSignature',
    tag: 'metadata',
    summary: "The delegation's minisign signature by a publisher key.",
    responses: document('text/plain', 'The signature'),
    errors: ['NOT_FOUND'],
  },
  {
    path: '/api/keys/statements',
    method: 'get',
    head: true,
    operationId: 'listKeyStatements',
    tag: 'metadata',
    summary: 'Key rotations and revocations, oldest first: the chain a node follows from the keys it trusts.',
    responses: { 200: { description: 'The statements.', json: 'SignedDocumentList', headers: fresh } },
  },
  {
    path: '/api/admin/metadata/delegation',
    method: 'put',
    admin: true,
    operationId: 'putDelegation',
    tag: 'admin',
    summary: "Store a publisher's delegation of this hub's metadata key (`modelhub certify-hub-key --hub URL`).",
    description: 'Checked first: signed by a publisher key the hub accepts, certifying this hub\'s metadata key, not expired.',
    body: { json: signedDocumentSchema },
    responses: { 200: { description: 'Stored; nodes trust the snapshot from now on.', json: 'DelegationStored' } },
    errors: ['INVALID_REQUEST', 'SIGNATURE_INVALID', 'UNTRUSTED_KEY', 'MANIFEST_INVALID', 'METADATA_EXPIRED'],
  },
  {
    path: '/api/admin/keys/statements',
    method: 'post',
    admin: true,
    operationId: 'addKeyStatement',
    tag: 'admin',
    summary: 'Publish a key rotation (`modelhub rotate-key`) or revocation (`modelhub revoke-key`).',
    description: 'A rotation must be signed by the old key itself; a revocation by a key the hub accepts. From then on the hub accepts uploads signed by the rotated-to key and refuses those of the revoked one.',
    body: { json: signedDocumentSchema },
    responses: {
      201: { description: 'Stored.', json: 'StatementStored' },
      200: { description: 'The same statement was stored before.', json: 'StatementStored' },
    },
    errors: ['INVALID_REQUEST', 'SIGNATURE_INVALID', 'UNTRUSTED_KEY', 'MANIFEST_INVALID'],
  },
];
