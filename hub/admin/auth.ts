// Bearer token check in constant time: both sides are hashed first so that neither the
// length nor any prefix of the token leaks through timing.
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export function bearerMatches(authorization: string | undefined, token: string | undefined): boolean {
  if (token === undefined || token.length === 0 || authorization === undefined) return false;
  const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
  const presented = m?.[1] ?? '';
  return timingSafeEqual(digest(presented), digest(token)) && presented.length > 0;
}
