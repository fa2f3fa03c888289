// The hub's OpenAPI 3.1 document, built from the operation tables and the zod schemas alone:
// pure, so the served copy, docs/openapi.json and the test all come from one function.
import { ADMIN_OPS } from './admin-ops.js';
import { CATALOG_OPS } from './catalog-ops.js';
import { METADATA_OPS } from './metadata-ops.js';
import { NODE_OPS } from './node-ops.js';
import { componentSchemas } from './components.js';
import type { Operation } from './operation.js';
import { pathsOf } from './paths.js';
import { HUB_TITLE } from './schemas.js';
import { STORAGE_OPS } from './storage-ops.js';

export const OPERATIONS: readonly Operation[] = [...CATALOG_OPS, ...STORAGE_OPS, ...METADATA_OPS, ...ADMIN_OPS, ...NODE_OPS];

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string; license: { name: string; identifier: string } };
  tags: { name: string; description: string }[];
  paths: Record<string, Record<string, Record<string, unknown>>>;
  components: { schemas: Record<string, Record<string, unknown>>; securitySchemes: Record<string, Record<string, unknown>> };
}

export function buildOpenApiDocument(version: string): OpenApiDocument {
  return {
    openapi: '3.1.0',
    info: {
      title: HUB_TITLE,
      version,
      description:
        'The Model Hub stores signed releases of services and models, serves them with HTTP Range and counts model demand. ' +
        'Bodies are JSON unless they are files; every failure is the ErrorEnvelope. Every GET also answers HEAD. ' +
        'Generated from the zod schemas in hub/openapi/; an overview is docs/http-api.md.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'meta', description: 'The hub itself.' },
      { name: 'catalog', description: 'What is published, as JSON.' },
      { name: 'storage', description: "Signed manifests and the files they pin. Below /storage/ the URLs are the storage folder's layout, so a static copy of its models/ and services/ folders is a mirror." },
      { name: 'admin', description: 'Publishing and demand; bearer token, failed authentications rate limited.' },
      { name: 'node', description: 'What nodes report; the node bearer token, every request rate limited.' },
      { name: 'metadata', description: "Signed, fresh metadata: the catalog snapshot signed by the hub's online key, the publisher's delegation of that key, key rotations and revocations." },
    ],
    paths: pathsOf(OPERATIONS),
    components: {
      schemas: componentSchemas(),
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: "The hub's MODELHUB_ADMIN_TOKEN, compared in constant time." },
        nodeToken: { type: 'http', scheme: 'bearer', description: "The hub's node token (`hub serve --node-token`, else MODELHUB_NODE_TOKEN), compared in constant time." },
      },
    },
  };
}
