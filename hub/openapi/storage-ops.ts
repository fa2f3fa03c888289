// Signed manifests and stored files. Manifests are sent whole; /storage/… files honour one
// Range. The URLs come from the catalog, never from joining a request path to the disk.
import type { Operation } from './operation.js';
import { conditionalRequestHeaders, rangeRequestHeaders, rangedFile, signedFile } from './files.js';
import { legacyZipParams, modelFileParams, platformChoice, releaseParams, versionParams } from './params.js';

const manifestRef = (name: string): Record<string, unknown> => ({ $ref: `#/components/schemas/${name}` });
const minisig = { type: 'string', description: 'minisign signature: untrusted comment, signature, trusted comment, global signature.' };
const SERVICE_MISSES = ['NOT_FOUND', 'VERSION_NOT_FOUND', 'PLATFORM_NOT_SUPPORTED'] as const;

export const STORAGE_OPS: readonly Operation[] = [
  {
    path: '/api/models/{id}/{version}/manifest',
    method: 'get',
    operationId: 'getModelManifest',
    tag: 'storage',
    summary: "A model release's signed manifest.",
    params: versionParams,
    requestHeaders: conditionalRequestHeaders,
    responses: signedFile('application/json', manifestRef('ModelManifest'), 'manifest.json'),
    errors: ['NOT_FOUND', 'VERSION_NOT_FOUND'],
  },
  {
    path: '/api/models/{id}/{version}/manifest.minisig',
    method: 'get',
    operationId: 'getModelManifestSignature',
    tag: 'storage',
    summary: "The minisign signature of a model release's manifest.",
    params: versionParams,
    requestHeaders: conditionalRequestHeaders,
    responses: signedFile('text/plain', minisig, 'manifest.json.minisig'),
    errors: ['NOT_FOUND', 'VERSION_NOT_FOUND'],
  },
  {
    path: '/storage/models/{id}/{version}/{path}',
    method: 'get',
    head: true,
    operationId: 'getModelFile',
    tag: 'storage',
    summary: "One file of a model release, named as in its signed manifest.",
    params: modelFileParams,
    requestHeaders: rangeRequestHeaders,
    responses: rangedFile('application/octet-stream', '{basename of path}'),
    errors: ['NOT_FOUND', 'VERSION_NOT_FOUND', 'INVALID_REQUEST'],
  },
  {
    path: '/api/services/{id}/{version}/{platform}/manifest',
    method: 'get',
    operationId: 'getServiceManifest',
    tag: 'storage',
    summary: "A service release's signed manifest.",
    params: releaseParams,
    requestHeaders: conditionalRequestHeaders,
    responses: signedFile('application/json', manifestRef('ServiceManifest'), 'manifest.json'),
    errors: SERVICE_MISSES,
  },
  {
    path: '/api/services/{id}/{version}/{platform}/manifest.minisig',
    method: 'get',
    operationId: 'getServiceManifestSignature',
    tag: 'storage',
    summary: "The minisign signature of a service release's manifest.",
    params: releaseParams,
    requestHeaders: conditionalRequestHeaders,
    responses: signedFile('text/plain', minisig, 'manifest.json.minisig'),
    errors: SERVICE_MISSES,
  },
  {
    path: '/storage/services/{id}/{version}/{platform}/service.zip',
    method: 'get',
    head: true,
    operationId: 'getServicePackage',
    tag: 'storage',
    summary: "A service release's package.",
    params: releaseParams,
    requestHeaders: rangeRequestHeaders,
    responses: rangedFile('application/zip', '{id}-{version}.zip'),
    errors: SERVICE_MISSES,
  },
  {
    path: '/storage/services/{id}/{file}',
    method: 'get',
    head: true,
    operationId: 'getLegacyServicePackage',
    tag: 'storage',
    summary: 'Older clients: /storage/services/{id}/{version}.zip, for ?platform= or the default platform.',
    params: legacyZipParams,
    query: platformChoice,
    requestHeaders: rangeRequestHeaders,
    responses: rangedFile('application/zip', '{id}-{version}.zip'),
    errors: SERVICE_MISSES,
  },
];

