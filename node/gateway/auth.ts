/**
 * Client tokens. A token is compared in constant time over equal-length digests, so neither the
 * comparison's duration nor an early length check tells a guesser how close it came. Tokens are never
 * logged; callers log only whether a check passed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export interface TokenCheck {
  /** false when the node has no token configured: every client is let in. */
  readonly enabled: boolean;
  matches(given: string | undefined): boolean;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export function createTokenCheck(token: string | undefined): TokenCheck {
  if (token === undefined || token === '') return { enabled: false, matches: () => true };
  const expected = digest(token);
  return {
    enabled: true,
    matches(given) {
      // Hash even a missing token, so a missing and a wrong one take the same path.
      const actual = digest(given ?? '');
      return timingSafeEqual(actual, expected) && given !== undefined;
    },
  };
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match ? match[1] : undefined;
}
