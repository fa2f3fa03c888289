// The token routes: publishing releases (multipart, streamed to disk, checked, then made
// visible at once), marking versions stable, and model demand from the scheduler.
import { publishQuery, rolloutBody, usageBody } from '../admin-api.js';
import type { JsonSchema, Operation } from './operation.js';
import { releaseParams, versionParams } from './params.js';

const part = (mediaType: string, description: string): JsonSchema => ({ type: 'string', contentMediaType: mediaType, description });
const manifestPart = part('application/json', 'manifest.json as written by `modelhub pack`: the exact signed bytes (at most 1 MiB). Sent before any package field.');
const signaturePart = part('text/plain', 'manifest.json.minisig, the minisign signature of the manifest (at most 4096 bytes). Sent before any package field.');

const servicePublish: JsonSchema = {
  type: 'object',
  properties: {
    package: part('application/zip', 'service.zip, after `manifest` and `signature`; its size and SHA-256 must be the manifest\'s archive entry, its entries exactly the manifest\'s files. Cut off (413) at the signed size.'),
    manifest: manifestPart,
    signature: signaturePart,
  },
  required: ['package', 'manifest', 'signature'],
  additionalProperties: false,
};

const modelPublish: JsonSchema = {
  type: 'object',
  properties: { manifest: manifestPart, signature: signaturePart },
  patternProperties: {
    '^file:.+$': part('application/octet-stream', 'One field per file of the manifest, after `manifest` and `signature`, named `file:` + its path; size and SHA-256 must match. Cut off (413) at the signed size.'),
  },
  required: ['manifest', 'signature'],
  additionalProperties: false,
};

const PUBLISH_ERRORS = ['INVALID_REQUEST', 'SIGNATURE_INVALID', 'UNTRUSTED_KEY', 'ALREADY_EXISTS', 'SIZE_EXCEEDED', 'MANIFEST_INVALID', 'CHECKSUM_MISMATCH', 'INSUFFICIENT_DISK'] as const;
const PUBLISH_NOTE =
  'The multipart fields `manifest` and `signature` come first: they are checked (signature against the configured publisher keys, manifest shape and rules — file names, exec.program —, manifest = URL, free disk against the signed size) before a byte of the package is read; a package field before them is 400 INVALID_REQUEST. The package fields are then streamed to <storage>/.incoming, each cut off at its signed size (413 SIZE_EXCEEDED), checked against the manifest, and moved into place; a rejected upload leaves nothing behind. Releases are immutable.';

export const ADMIN_OPS: readonly Operation[] = [
  {
    path: '/api/admin/services/{id}/{version}/{platform}',
    method: 'put',
    admin: true,
    operationId: 'publishService',
    tag: 'admin',
    summary: 'Publish a service release.',
    description: `${PUBLISH_NOTE} With \`?rollout=PERCENT\` the release starts as a staged rollout: only that share of nodes (by a hash of node id, id and version, in the signed snapshot) is offered it as latest.`,
    params: releaseParams,
    query: publishQuery,
    body: { multipart: servicePublish, description: 'What `modelhub pack` and `modelhub sign` wrote.' },
    responses: { 201: { description: 'Published.', json: 'ServicePublished' } },
    errors: PUBLISH_ERRORS,
  },
  {
    path: '/api/admin/models/{id}/{version}',
    method: 'put',
    admin: true,
    operationId: 'publishModel',
    tag: 'admin',
    summary: 'Publish a model release.',
    description: PUBLISH_NOTE,
    params: versionParams,
    body: { multipart: modelPublish, description: 'The manifest, its signature and every file it lists.' },
    responses: { 201: { description: 'Published.', json: 'ModelPublished' } },
    errors: PUBLISH_ERRORS,
  },
  {
    path: '/api/admin/services/{id}/{version}/stable',
    method: 'post',
    admin: true,
    operationId: 'markServiceStable',
    tag: 'admin',
    summary: 'Mark every platform of a service version stable.',
    params: versionParams,
    responses: { 200: { description: 'Marked (again, if it already was).', json: 'MarkedStable' } },
    errors: ['INVALID_REQUEST', 'NOT_FOUND'],
  },
  {
    path: '/api/admin/services/{id}/{version}/rollout',
    method: 'post',
    admin: true,
    operationId: 'setServiceRollout',
    tag: 'admin',
    summary: 'Set the share of nodes a service version is offered to as latest: 0 halts a rollout, 100 completes it.',
    description: 'Carried in the signed snapshot, so a mirror cannot change it; nodes outside the share see the previous latest.',
    params: versionParams,
    body: { json: rolloutBody },
    responses: { 200: { description: 'Set.', json: 'RolloutSet' } },
    errors: ['INVALID_REQUEST', 'NOT_FOUND'],
  },
  {
    path: '/api/admin/models/{id}/{version}/stable',
    method: 'post',
    admin: true,
    operationId: 'markModelStable',
    tag: 'admin',
    summary: 'Mark a model version stable.',
    params: versionParams,
    responses: { 200: { description: 'Marked (again, if it already was).', json: 'MarkedStable' } },
    errors: ['INVALID_REQUEST', 'NOT_FOUND'],
  },
  {
    path: '/api/model-usage',
    method: 'post',
    admin: true,
    operationId: 'reportModelUsage',
    tag: 'admin',
    summary: 'Add model demand reported by the scheduler.',
    body: { json: usageBody },
    responses: {
      200: { description: 'Counted.', json: 'UsageRecorded' },
      415: { description: 'The body is neither JSON nor text.', errors: ['INVALID_REQUEST'] },
    },
    errors: ['INVALID_REQUEST'],
  },
];
