// Who may talk to the local page server. A server on 127.0.0.1 is reachable from every website
// the user opens: a cross-site request reaches it, and DNS rebinding makes another site's name
// resolve to 127.0.0.1 so the browser calls it same-origin. So: only our own Host names, no
// foreign Origin, and on /api/* the per-launch token that only the page served at / carries.
import { timingSafeEqual } from 'node:crypto';

export interface GuardRequest {
  host: string | undefined;
  origin: string | undefined;
  token: string | undefined;
  path: string;
}

export type GuardDecision = { ok: true } | { ok: false; status: 401 | 403; message: string };

export function allowedHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function checkRequest(req: GuardRequest, o: { port: number; token: string }): GuardDecision {
  const host = (req.host ?? '').toLowerCase();
  if (!allowedHosts(o.port).includes(host)) return { ok: false, status: 403, message: `Host "${(req.host ?? '').slice(0, 100)}" is not this server (DNS rebinding?)` };
  if (!req.path.startsWith('/api/')) return { ok: true };
  // Browsers send Origin on every cross-origin request and on same-origin POSTs; "null" comes
  // from sandboxed frames and file: pages. Only the page's own origin passes.
  if (req.origin !== undefined && req.origin.toLowerCase() !== `http://${host}`) {
    return { ok: false, status: 403, message: `Origin "${req.origin.slice(0, 100)}" may not use this server` };
  }
  if (req.token === undefined || !sameSecret(req.token, o.token)) return { ok: false, status: 401, message: 'the page token is missing or wrong (open the page at / to get one)' };
  return { ok: true };
}

/** Headers on every answer: no framing, no sniffing, no referrer, scripts only from us. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-resource-policy': 'same-origin',
};
