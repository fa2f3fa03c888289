// zod → JSON Schema 2020-12, which OpenAPI 3.1 takes as it is. Answers are converted as
// output (what the hub sends), requests and signed manifests as input (what may be sent).
import { z } from 'zod';
import { modelManifestSchema, serviceManifestSchema } from '../../src/schemas/manifest.js';
import type { JsonSchema } from './operation.js';
import { HUB_SCHEMAS } from './schemas.js';

export const COMPONENTS = '#/components/schemas/';

export function ref(name: string): JsonSchema {
  return { $ref: COMPONENTS + name };
}

/** Drops the dialect and id zod stamps on every root: inside a document they are noise. */
function embeddable(schema: JsonSchema): JsonSchema {
  const { $schema: _dialect, $id: _id, ...rest } = schema;
  return rest;
}

export function toSchema(schema: z.core.$ZodType, io: 'input' | 'output'): JsonSchema {
  return embeddable(z.toJSONSchema(schema, { target: 'draft-2020-12', io }));
}

function registryOf(schemas: Record<string, z.core.$ZodType>): z.core.$ZodRegistry<{ id: string }> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  return registry;
}

function convert(schemas: Record<string, z.core.$ZodType>, io: 'input' | 'output'): Record<string, JsonSchema> {
  const out = z.toJSONSchema(registryOf(schemas), { target: 'draft-2020-12', io, uri: (id) => COMPONENTS + id });
  return Object.fromEntries(Object.entries(out.schemas).map(([id, s]) => [id, embeddable(s as JsonSchema)]));
}

export function componentSchemas(): Record<string, JsonSchema> {
  return {
    ...convert(HUB_SCHEMAS, 'output'),
    ...convert({ ServiceManifest: serviceManifestSchema, ModelManifest: modelManifestSchema }, 'input'),
  };
}
