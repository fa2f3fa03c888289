// One documented route, as data. The tables in *-ops.ts list them; document.ts turns them
// into OpenAPI; the test checks them against the routes fastify actually registered.
import type { z } from 'zod';
import type { ErrorCode } from '../../src/errors.js';
import type { SchemaName } from './schemas.js';

export type JsonSchema = Record<string, unknown>;
export type Method = 'get' | 'post' | 'put';
export type Tag = 'meta' | 'catalog' | 'storage' | 'admin' | 'node' | 'metadata';

export interface HeaderDoc {
  description: string;
  schema: JsonSchema;
}

export interface ResponseDoc {
  description: string;
  /** A JSON body: the named component of HUB_SCHEMAS. */
  json?: SchemaName;
  /** Any other body: media type → schema ({} for opaque bytes). */
  content?: Record<string, JsonSchema>;
  /** An error envelope restricted to these codes. */
  errors?: readonly ErrorCode[];
  headers?: Record<string, HeaderDoc>;
}

export interface Operation {
  /** OpenAPI path template; the test maps fastify's `:name` and `*` onto it. */
  path: string;
  method: Method;
  operationId: string;
  summary: string;
  description?: string;
  tag: Tag;
  params?: z.ZodObject;
  query?: z.ZodObject;
  requestHeaders?: Record<string, HeaderDoc>;
  body?: { json: z.ZodType } | { multipart: JsonSchema; description: string };
  /** Bearer token required; adds 401 and 429 answers. */
  admin?: true;
  /** The node token required (`--node-token`), every request rate limited; adds 401 and 429 answers. */
  node?: true;
  /** Also document HEAD (same answers, no body): fastify adds it to every GET. */
  head?: true;
  responses: Record<number, ResponseDoc>;
  /** Failures, answered with the status httpStatusOf gives each code. */
  errors?: readonly ErrorCode[];
}
