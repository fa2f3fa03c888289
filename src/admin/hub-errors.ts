// Turns a hub answer that is not 2xx into our error family, keeping the hub's own code.
import { z } from 'zod';
import { isErrorCode, ModelhubError } from '../errors.js';

const envelopeSchema = z.object({ error: z.string(), message: z.string().optional(), details: z.record(z.string(), z.unknown()).optional() });

export async function hubError(res: Response, what: string): Promise<ModelhubError> {
  const text = await res.text().catch(() => '');
  let parsed: z.infer<typeof envelopeSchema> | undefined;
  try {
    const r = envelopeSchema.safeParse(JSON.parse(text));
    if (r.success) parsed = r.data;
  } catch {
    parsed = undefined;
  }
  if (parsed !== undefined && isErrorCode(parsed.error)) {
    return new ModelhubError(parsed.error, `${what}: ${parsed.message ?? parsed.error}`, { details: { status: res.status, ...(parsed.details ?? {}) } });
  }
  const code = res.status === 404 ? 'NOT_FOUND' : res.status === 401 ? 'UNAUTHORIZED' : res.status === 429 ? 'RATE_LIMITED' : res.status >= 500 ? 'NETWORK_ERROR' : 'INVALID_REQUEST';
  return new ModelhubError(code, `${what}: HTTP ${res.status} ${text.slice(0, 200)}`, { details: { status: res.status } });
}

export function networkError(err: unknown, what: string): ModelhubError {
  if (err instanceof ModelhubError) return err;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message ?? (err as Error).message;
  return new ModelhubError('NETWORK_ERROR', `${what}: ${detail}`, { cause: err });
}
