// Operation tables → OpenAPI path items. Failures are grouped by the status src/errors.ts
// gives each code, so the document cannot disagree with the hub about a code's status.
import { z } from 'zod';
import { httpStatusOf, type ErrorCode } from '../../src/errors.js';
import { ref, toSchema } from './components.js';
import type { HeaderDoc, JsonSchema, Operation, ResponseDoc } from './operation.js';

const wwwAuthenticate: HeaderDoc = { description: 'Always `Bearer`.', schema: { type: 'string', const: 'Bearer' } };
const ADMIN_FAILURE_HEADERS: Partial<Record<number, Record<string, HeaderDoc>>> = {
  401: { 'WWW-Authenticate': wwwAuthenticate },
  429: { 'Retry-After': { description: 'Seconds until failed authentications are accepted again.', schema: { type: 'integer' } } },
};
const NODE_FAILURE_HEADERS: Partial<Record<number, Record<string, HeaderDoc>>> = {
  401: { 'WWW-Authenticate': wwwAuthenticate },
  429: { 'Retry-After': { description: "Seconds until this client's reports are accepted again.", schema: { type: 'integer' } } },
};

function guarded(op: Operation): boolean {
  return op.admin === true || op.node === true;
}

function errorBody(codes: readonly ErrorCode[]): JsonSchema {
  return { allOf: [ref('ErrorEnvelope'), { type: 'object', properties: { error: { enum: [...codes] } } }] };
}

function headersOf(headers: Record<string, HeaderDoc>): JsonSchema {
  return Object.fromEntries(Object.entries(headers).map(([name, h]) => [name, { description: h.description, schema: h.schema }]));
}

function contentOf(r: ResponseDoc): JsonSchema | undefined {
  if (r.json !== undefined) return { 'application/json': { schema: ref(r.json) } };
  if (r.errors !== undefined) return { 'application/json': { schema: errorBody(r.errors) } };
  if (r.content === undefined) return undefined;
  // An empty schema says "opaque bytes of this media type", the OpenAPI 3.1 idiom.
  return Object.fromEntries(Object.entries(r.content).map(([type, schema]) => [type, Object.keys(schema).length > 0 ? { schema } : {}]));
}

function responseOf(r: ResponseDoc, withBody: boolean): JsonSchema {
  const content = withBody ? contentOf(r) : undefined;
  return {
    description: r.description,
    ...(r.headers !== undefined ? { headers: headersOf(r.headers) } : {}),
    ...(content !== undefined ? { content } : {}),
  };
}

/** Every answer of an operation: its own, then its failures by status, then the envelope for the rest. */
function responsesOf(op: Operation): Record<string, ResponseDoc> {
  const out: Record<string, ResponseDoc> = {};
  for (const [status, r] of Object.entries(op.responses)) out[status] = r;
  const byStatus = new Map<number, ErrorCode[]>();
  const codes: ErrorCode[] = [...(op.errors ?? []), ...(guarded(op) ? (['UNAUTHORIZED', 'RATE_LIMITED'] as const) : [])];
  for (const code of codes) byStatus.set(httpStatusOf(code), [...(byStatus.get(httpStatusOf(code)) ?? []), code]);
  for (const [status, list] of byStatus) {
    if (out[status] !== undefined) throw new Error(`${op.operationId}: status ${status} is declared twice`);
    const headers = op.admin === true ? ADMIN_FAILURE_HEADERS[status] : op.node === true ? NODE_FAILURE_HEADERS[status] : undefined;
    out[status] = { description: list.join(', '), errors: list, ...(headers !== undefined ? { headers } : {}) };
  }
  out.default = { description: 'Any other failure, e.g. 500 INTERNAL; always the error envelope.', json: 'ErrorEnvelope' };
  return out;
}

function parametersOf(op: Operation): JsonSchema[] {
  const fields = (shape: z.ZodObject | undefined, where: 'path' | 'query'): JsonSchema[] =>
    Object.entries<z.core.$ZodType>(shape?.shape ?? {}).map(([name, field]) => {
      const { description, ...schema } = toSchema(field, 'input');
      const required = where === 'path' || !z.safeParse(field, undefined).success;
      return { name, in: where, required, ...(description !== undefined ? { description } : {}), schema };
    });
  const headers = Object.entries(op.requestHeaders ?? {}).map(([name, h]) => ({ name, in: 'header', required: false, description: h.description, schema: h.schema }));
  return [...fields(op.params, 'path'), ...fields(op.query, 'query'), ...headers];
}

function requestBodyOf(op: Operation): JsonSchema | undefined {
  if (op.body === undefined) return undefined;
  if ('json' in op.body) return { required: true, content: { 'application/json': { schema: toSchema(op.body.json, 'input') } } };
  return { required: true, description: op.body.description, content: { 'multipart/form-data': { schema: op.body.multipart } } };
}

function operationOf(op: Operation, method: 'get' | 'head' | 'post' | 'put'): JsonSchema {
  const head = method === 'head';
  const parameters = parametersOf(op);
  const body = requestBodyOf(op);
  const responses = Object.fromEntries(Object.entries(responsesOf(op)).map(([status, r]) => [status, responseOf(r, !head)]));
  return {
    operationId: head ? `head${op.operationId.replace(/^get/, '')}` : op.operationId,
    summary: head ? `Headers only: ${op.summary}` : op.summary,
    ...(op.description !== undefined ? { description: op.description } : {}),
    tags: [op.tag],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(body !== undefined ? { requestBody: body } : {}),
    ...(op.admin === true ? { security: [{ adminToken: [] }] } : {}),
    ...(op.node === true ? { security: [{ nodeToken: [] }] } : {}),
    responses,
  };
}

export function pathsOf(ops: readonly Operation[]): Record<string, Record<string, JsonSchema>> {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const op of ops) {
    const item = (paths[op.path] ??= {});
    if (item[op.method] !== undefined) throw new Error(`${op.method.toUpperCase()} ${op.path} is documented twice`);
    item[op.method] = operationOf(op, op.method);
    if (op.head === true) item.head = operationOf(op, 'head');
  }
  return paths;
}
