// zod at the boundary: turn the first issue into one of our codes with a message naming the field.
import type { z } from 'zod';
import { ModelhubError, type ErrorCode } from '../errors.js';

export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}

export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  code: ErrorCode,
  what: string,
): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new ModelhubError(code, `${what}: ${describeIssues(result.error)}`, {
      cause: result.error,
      details: { issues: result.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })) },
    });
  }
  return result.data;
}

export function parseJsonOrThrow<S extends z.ZodType>(
  schema: S,
  text: string,
  code: ErrorCode,
  what: string,
): z.infer<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelhubError(code, `${what}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return parseOrThrow(schema, value, code, what);
}
