// The token routes: publishing releases (multipart, streamed to disk, checked, then made
// visible at once), marking versions stable, and model demand from the scheduler.
import { usageBody } from '../admin-api.js';
import type { JsonSchema, Operation } from './operation.js';
import { releaseParams, versionParams } from './params.js';

const part = (mediaType: string, description: string): JsonSchema => ({ type: 'string', contentMediaType: mediaType, description });
const manifestPart = part('application/json', 'manifest.json as written by `modelhub pack`: the exact signed bytes (at most 1 MiB).');
const signaturePart = part('text/plain', 'manifest.json.minisig, the minisign signature of the manifest (at most 4096 bytes).');

const servicePublish: JsonSchema = {
  type: 'object',
  properties: {
    package: part('application/zip', 'service.zip; its size and SHA-256 must be the manifest\'s archive entry, its entries exactly the manifest\'s files.'),
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
    '^file:.+$': part('application/octet-stream', 'One field per file of the manifest, named `file:` + its path; size and SHA-256 must match.'),
  },
  required: ['manifest', 'signature'],
  additionalProperties: false,
};

const PUBLISH_ERRORS = ['INVALID_REQUEST', 'SIGNATURE_INVALID', 'UNTRUSTED_KEY', 'ALREADY_EXISTS', 'SIZE_EXCEEDED', 'MANIFEST_INVALID', 'CHECKSUM_MISMATCH'] as const;
const PUBLISH_NOTE =
  'The upload is streamed to <storage>/.incoming, checked (signature against the configured publisher keys, manifest shape, URL = manifest = bytes), then moved into place; a rejected upload leaves nothing behind. Releases are immutable.';

export const ADMIN_OPS: readonly Operation[] = [
  {
    path: '/api/admin/services/{id}/{version}/{platform}',
    method: 'put',
    admin: true,
    operationId: 'publishService',
    tag: 'admin',
    summary: 'Publish a service release.',
    description: PUBLISH_NOTE,
    params: releaseParams,
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
