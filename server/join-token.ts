/**
 * Join tokens: short-lived, single-use admission tickets the embedding site's backend mints per visitor
 * (operator CLI `npm run token`, or POST /api/join-token) and the embed hands over in the socket.io
 * handshake. A token is
 *   base64url(payload JSON) "." base64url(HMAC-SHA256(key, "aegisfl-join-token." + first part))
 * with payload { v: 1, o: origin, exp: unix seconds, jti: 16 random bytes base64url, site?: id }. It is
 * bound to the page's origin (the socket's Origin header must equal `o`), expires within minutes, and its
 * jti is accepted once. A token in page HTML can be copied, hence single use and a short life.
 *
 * Verification does the cheap, bounded checks first (length, alphabet), then the MAC (constant time, the
 * current key and then the previous one, for rotation); only an authentic payload is parsed. Only
 * authentic tokens enter the replay set, so its size is bounded by what the key holder mints.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Why a token is refused: a closed set (a metric label); the detail for people is in the message. */
export const TOKEN_PROBLEMS = [
  'missing',
  'malformed',
  'bad_signature',
  'expired',
  'too_long_lived',
  'wrong_origin',
  'replayed',
  'replay_cache_full',
] as const;
export type TokenProblem = (typeof TOKEN_PROBLEMS)[number];

export const TOKEN_VERSION = 1;
/** Longest token accepted: anything longer is refused before any work is done on it. */
export const MAX_TOKEN_CHARS = 512;
const MAC_CONTEXT = 'aegisfl-join-token.';
const KEY_MIN_BYTES = 32;
const SHAPE = /^[A-Za-z0-9_-]{16,400}\.[A-Za-z0-9_-]{43}$/;
const JTI = /^[A-Za-z0-9_-]{22}$/;
const SITE = /^[A-Za-z0-9._-]{1,64}$/;

export interface JoinTokenPayload {
  v: number;
  /** The embedding page's origin, e.g. "https://news.example". */
  o: string;
  /** Expiry, unix seconds. */
  exp: number;
  jti: string;
  site?: string;
}

/** An origin as browsers send it: scheme://host[:port], nothing else; throws otherwise. */
export function normalizeOrigin(s: string): string {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new Error(`not an origin: "${s.slice(0, 100)}"`);
  }
  if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.origin !== s.replace(/\/$/, ''))
    throw new Error(`not an origin (scheme://host[:port], no path): "${s.slice(0, 100)}"`);
  return u.origin;
}

/** A key read from a file: hex, at least 32 bytes. */
export function parseTokenKey(text: string, what = 'join token key'): Buffer {
  const hex = text.trim();
  if (!/^([0-9a-fA-F]{2})+$/.test(hex) || hex.length < 2 * KEY_MIN_BYTES)
    throw new Error(`${what} must be hex, at least ${KEY_MIN_BYTES} bytes (${2 * KEY_MIN_BYTES} digits)`);
  return Buffer.from(hex, 'hex');
}

/** A new random key, as hex (what `npm run token -- --new-key FILE` writes). */
export function newTokenKey(): string {
  return randomBytes(KEY_MIN_BYTES).toString('hex');
}

function mac(key: Buffer, payloadPart: string): Buffer {
  return createHmac('sha256', key)
    .update(MAC_CONTEXT + payloadPart)
    .digest();
}

export interface MintOptions {
  origin: string;
  /** Seconds the token is valid. */
  ttlSeconds: number;
  site?: string;
  /** Unix ms; default now. */
  now?: number;
  /** 16 bytes; default random (tests pin it). */
  jti?: Uint8Array;
}

/** Mints a token under `key`. */
export function mintJoinToken(key: Buffer, o: MintOptions): { token: string; payload: JoinTokenPayload } {
  if (key.length < KEY_MIN_BYTES) throw new RangeError(`key must be at least ${KEY_MIN_BYTES} bytes`);
  if (!(Number.isInteger(o.ttlSeconds) && o.ttlSeconds >= 1 && o.ttlSeconds <= 24 * 3600))
    throw new RangeError(`ttl must be an integer number of seconds in 1..86400, got ${o.ttlSeconds}`);
  if (o.site !== undefined && !SITE.test(o.site))
    throw new Error('site must be 1-64 characters of letters, digits, ".", "_", "-"');
  const jti = o.jti ?? randomBytes(16);
  if (jti.length !== 16) throw new RangeError('jti must be 16 bytes');
  const payload: JoinTokenPayload = {
    v: TOKEN_VERSION,
    o: normalizeOrigin(o.origin),
    exp: Math.floor((o.now ?? Date.now()) / 1000) + o.ttlSeconds,
    jti: Buffer.from(jti).toString('base64url'),
    ...(o.site !== undefined ? { site: o.site } : {}),
  };
  const part = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return { token: `${part}.${mac(key, part).toString('base64url')}`, payload };
}

export type Verified =
  { ok: true; payload: JoinTokenPayload } | { ok: false; problem: TokenProblem; message: string };

const no = (problem: TokenProblem, message: string): Verified => ({ ok: false, problem, message });

/** An authentic payload's fields, checked (a key holder's bug must not become a crash). */
function readPayload(part: string): JoinTokenPayload | null {
  let p: unknown;
  try {
    p = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (typeof p !== 'object' || p === null) return null;
  const r = p as Record<string, unknown>;
  if (r.v !== TOKEN_VERSION || typeof r.o !== 'string' || r.o.length > 256) return null;
  if (!Number.isSafeInteger(r.exp) || typeof r.jti !== 'string' || !JTI.test(r.jti)) return null;
  if (r.site !== undefined && (typeof r.site !== 'string' || !SITE.test(r.site))) return null;
  return r as unknown as JoinTokenPayload;
}

/**
 * The jtis of accepted tokens, each kept until its token expires; at most `capacity`. Only authentic
 * tokens are added, so a flood of forged ones cannot fill it; when it is full (more live tokens than
 * capacity were redeemed) new tokens are refused rather than an old entry forgotten, which would reopen
 * that token to replay.
 */
export class ReplayCache {
  private readonly seen = new Map<string, number>();
  private lastSweep = -Infinity;

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new RangeError('capacity must be >= 1');
  }

  get size(): number {
    return this.seen.size;
  }

  /** Records jti (valid until expSeconds); false if it was seen, or there is no room. */
  add(jti: string, expSeconds: number, nowMs: number): 'added' | 'replayed' | 'full' {
    const now = nowMs / 1000;
    const known = this.seen.get(jti);
    if (known !== undefined && known > now) return 'replayed';
    // Entries leave in insertion order while the oldest has expired: O(1) amortised per token.
    for (const [k, exp] of this.seen) {
      if (exp > now) break;
      this.seen.delete(k);
    }
    // Full: one sweep of all entries (token lifetimes differ, so a live one may sit in front of dead ones),
    // at most once a second, so a holder of many tokens cannot make every handshake O(capacity).
    if (this.seen.size >= this.capacity && nowMs - this.lastSweep >= 1000) {
      this.lastSweep = nowMs;
      for (const [k, exp] of this.seen) if (exp <= now) this.seen.delete(k);
    }
    if (this.seen.size >= this.capacity) return 'full';
    this.seen.set(jti, expSeconds);
    return 'added';
  }
}

export interface VerifierOptions {
  key: Buffer;
  /** The key before the last rotation: tokens it signed stay valid until they expire. */
  previousKey?: Buffer | null;
  /** Longest remaining life accepted (exp - now); a token dated further ahead is refused. */
  maxTtlSeconds: number;
  /** Distinct live tokens remembered for replay detection. */
  replayCapacity: number;
}

/** Checks tokens against the key(s), the socket's Origin and the replay set. */
export class JoinTokenVerifier {
  private readonly replay: ReplayCache;

  constructor(private readonly o: VerifierOptions) {
    if (o.key.length < KEY_MIN_BYTES) throw new RangeError(`key must be at least ${KEY_MIN_BYTES} bytes`);
    this.replay = new ReplayCache(o.replayCapacity);
  }

  /** Tokens remembered for replay detection now. */
  get remembered(): number {
    return this.replay.size;
  }

  /** Verifies `token` for a connection from `origin` at `nowMs`; an accepted token is spent. */
  verify(token: unknown, origin: string | undefined, nowMs: number): Verified {
    if (token === undefined || token === null || token === '')
      return no('missing', 'a join token is required (the embedding site provides it)');
    if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS || !SHAPE.test(token))
      return no('malformed', 'the join token is malformed');
    const dot = token.indexOf('.');
    const part = token.slice(0, dot);
    const sig = Buffer.from(token.slice(dot + 1), 'base64url');
    const authentic = [this.o.key, this.o.previousKey].some(
      (k) => k && sig.length === 32 && timingSafeEqual(mac(k, part), sig),
    );
    if (!authentic) return no('bad_signature', 'the join token is not signed by this server');
    const p = readPayload(part);
    if (!p) return no('malformed', 'the join token is malformed');
    const now = Math.floor(nowMs / 1000);
    if (p.exp <= now) return no('expired', 'the join token has expired: reload the page for a new one');
    if (p.exp - now > this.o.maxTtlSeconds)
      return no('too_long_lived', `the join token lives longer than ${this.o.maxTtlSeconds} s`);
    if (origin !== p.o) return no('wrong_origin', 'the join token was issued for another site');
    const r = this.replay.add(p.jti, p.exp, nowMs);
    if (r === 'replayed') return no('replayed', 'the join token was already used: reload the page');
    if (r === 'full') return no('replay_cache_full', 'too many joins right now: try again later');
    return { ok: true, payload: p };
  }
}
