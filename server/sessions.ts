/**
 * Session credentials. The session id is 16 random bytes (base64url): it names the client and is not
 * secret. The resume token proves the id was issued to its holder, and anyone holding the resume key can
 * check it without any per-session state (a gateway at the handshake, or a coordinator that took over
 * after a failover and never saw the session). A token is
 *   base64url( 0x01 | index u32be | issuedAt u32be | HMAC-SHA256(key, MAC input) )   (41 bytes, 55 chars)
 * with MAC input "aegisfl/resume/v1\0" + sessionId + "\0" + index + "\0" + issuedAt (decimal; the id is
 * base64url, so the NUL separators are unambiguous). `index` is the session's data-shard index
 * (ClientRecord.index): a registry that never saw the session recreates it on the same shard. `issuedAt`
 * is unix seconds; a token is valid for a max age and every welcome re-issues one, so an active client
 * keeps a fresh token.
 *
 * Why one base64url blob rather than dotted fields ("r1.<index>.<issuedAt>.<mac>"): it stays inside the
 * credential alphabet and length every validator already enforces (16-64 characters of A-Z a-z 0-9 _ -,
 * shared/protocol/validate.ts, and what deployed clients store), so the wire format does not change; and
 * its fixed length makes the check done before any MAC work exact.
 *
 * Verification does the cheap, bounded checks first (types, lengths, alphabet, canonical encoding,
 * version, age), then the MAC in constant time under the current key and then the previous one (key
 * rotation: tokens the previous key signed stay valid until they age out). The server stores no token.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const RESUME_TOKEN_VERSION = 1;
/** Length of every resume token: base64url of 1 + 4 + 4 + 32 bytes. */
export const RESUME_TOKEN_CHARS = 55;
export const RESUME_KEY_BYTES = 32;
/** How long a token stays valid after it was issued, by default. */
export const DEFAULT_RESUME_MAX_AGE_MS = 7 * 24 * 3600_000;
/** A token issued up to this far in the future is accepted: coordinators' clocks differ a little. */
export const RESUME_CLOCK_SKEW_MS = 5 * 60_000;
const MAC_CONTEXT = 'aegisfl/resume/v1\0';
const BYTES = 1 + 4 + 4 + 32;
/** Session ids as the protocol accepts them (validate.ts CREDENTIAL). */
const SESSION_ID = /^[A-Za-z0-9_-]{16,64}$/;
const TOKEN = /^[A-Za-z0-9_-]{55}$/;
const U32_MAX = 0xffff_ffff;

/** The resume key(s): the current one signs and verifies; the previous one (rotation) only verifies. */
export interface ResumeKeys {
  key: Uint8Array;
  previousKey?: Uint8Array | null;
}

/** What an authentic, unexpired token says. */
export interface ResumeClaim {
  /** The session's data-shard index. */
  index: number;
  /** When the token was issued, unix seconds. */
  issuedAt: number;
}

/** A new random resume key (each process without a shared key uses one of its own). */
export function newResumeKey(): Uint8Array {
  return new Uint8Array(randomBytes(RESUME_KEY_BYTES));
}

/** A new random session id (16 bytes, base64url: 22 characters). */
export function newSessionId(): string {
  return randomBytes(16).toString('base64url');
}

function checkKey(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length < RESUME_KEY_BYTES)
    throw new RangeError(`${what} must be at least ${RESUME_KEY_BYTES} bytes`);
}

function mac(key: Uint8Array, sessionId: string, index: number, issuedAt: number): Buffer {
  return createHmac('sha256', key)
    .update(`${MAC_CONTEXT}${sessionId}\0${index}\0${issuedAt}`, 'utf8')
    .digest();
}

/** A token for `sessionId` on shard `index`, issued at `nowMs` under `key`. */
export function issueResumeToken(key: Uint8Array, sessionId: string, index: number, nowMs: number): string {
  checkKey(key, 'resume key');
  if (typeof sessionId !== 'string' || !SESSION_ID.test(sessionId))
    throw new RangeError('session id must be 16-64 characters of A-Z a-z 0-9 _ -');
  if (!(Number.isInteger(index) && index >= 0 && index <= U32_MAX))
    throw new RangeError(`index must be an integer in 0..${U32_MAX}, got ${index}`);
  const issuedAt = Math.floor(nowMs / 1000);
  if (!(Number.isInteger(issuedAt) && issuedAt >= 0 && issuedAt <= U32_MAX))
    throw new RangeError(`time must be unix ms within 1970..2106, got ${nowMs}`);
  const b = Buffer.alloc(BYTES);
  b[0] = RESUME_TOKEN_VERSION;
  b.writeUInt32BE(index, 1);
  b.writeUInt32BE(issuedAt, 5);
  mac(key, sessionId, index, issuedAt).copy(b, 9);
  return b.toString('base64url');
}

/**
 * What `token` says about `sessionId` if it is authentic (under keys.key or keys.previousKey) and was
 * issued at most `maxAgeMs` before `nowMs` (and not more than RESUME_CLOCK_SKEW_MS after it); null
 * otherwise, whatever the inputs are (any type, any length). Needs no state: a gateway can call it.
 */
export function verifyResumeToken(
  keys: ResumeKeys,
  sessionId: unknown,
  token: unknown,
  nowMs: number,
  maxAgeMs: number = DEFAULT_RESUME_MAX_AGE_MS,
): ResumeClaim | null {
  if (typeof sessionId !== 'string' || sessionId.length > 64 || !SESSION_ID.test(sessionId)) return null;
  if (typeof token !== 'string' || token.length !== RESUME_TOKEN_CHARS || !TOKEN.test(token)) return null;
  const b = Buffer.from(token, 'base64url');
  // 55 characters carry 330 bits for 328: a token whose spare bits are set decodes like another; only
  // the canonical spelling is accepted, so each token has one string.
  if (b.length !== BYTES || b.toString('base64url') !== token) return null;
  if (b[0] !== RESUME_TOKEN_VERSION) return null;
  const index = b.readUInt32BE(1);
  const issuedAt = b.readUInt32BE(5);
  // The times are in the clear: checking them before the MAC reveals nothing, and spares the MAC.
  const issuedMs = issuedAt * 1000;
  if (issuedMs > nowMs + RESUME_CLOCK_SKEW_MS || nowMs - issuedMs > maxAgeMs) return null;
  const sig = b.subarray(9);
  const authentic = [keys.key, keys.previousKey].some(
    (k) => k && timingSafeEqual(mac(k, sessionId, index, issuedAt), sig),
  );
  return authentic ? { index, issuedAt } : null;
}

/**
 * The session id that handshake or hello credentials ({ sessionId, resumeToken }, anything at all from a
 * client) resume, or null. What the registry and every gateway answer at a handshake.
 */
export function resumedSession(
  keys: ResumeKeys,
  credentials: unknown,
  nowMs: number,
  maxAgeMs: number = DEFAULT_RESUME_MAX_AGE_MS,
): string | null {
  if (typeof credentials !== 'object' || credentials === null) return null;
  const { sessionId, resumeToken } = credentials as Record<string, unknown>;
  return verifyResumeToken(keys, sessionId, resumeToken, nowMs, maxAgeMs) ? (sessionId as string) : null;
}

/** Checks resume keys once, where they are configured (a short key is refused, not silently used). */
export function checkResumeKeys(keys: ResumeKeys): void {
  checkKey(keys.key, 'resume key');
  if (keys.previousKey) checkKey(keys.previousKey, 'previous resume key');
}
