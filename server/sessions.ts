import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A new session's credentials: a random id (names the client, not secret) and a resume token (secret). */
export function issueCredentials(): { sessionId: string; resumeToken: string; tokenHash: Buffer } {
  const resumeToken = randomBytes(32).toString('base64url');
  return { sessionId: randomBytes(16).toString('base64url'), resumeToken, tokenHash: hashToken(resumeToken) };
}

/** The server stores only this: a stolen copy of its records cannot resume anyone's session. */
export function hashToken(token: string): Buffer {
  if (typeof token !== 'string') throw new TypeError('token must be a string');
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Whether `token` is the one whose hash is stored; the comparison takes the same time wherever they differ. */
export function tokenMatches(token: string, storedHash: Buffer): boolean {
  if (storedHash.length !== 32) throw new RangeError('stored hash must be 32 bytes');
  return timingSafeEqual(hashToken(token), storedHash);
}
