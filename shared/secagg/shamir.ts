import { randomBytes } from '@noble/hashes/utils.js';
import {
  batchInvert,
  bigToBytes,
  bytesToBig,
  ELEMENT_BYTES,
  FIELD_PRIME,
  isFieldElement,
  mod,
} from './field.ts';
import { decode } from './reed-solomon.ts';

export { bigToBytes, bytesToBig, FIELD_PRIME, invMod, isFieldElement, isFieldElementAt } from './field.ts';

/**
 * Shamir t-of-k secret sharing of 32-byte secrets over GF(p), p = 2^256 + 297 (the smallest prime
 * above 2^256), so every 32-byte string is a field element and no secret needs chunking or reduction.
 * A share is (x, y): x is the holder's 1-based index, y is 33 bytes big-endian.
 */
export const SECRET_BYTES = 32;
export const SHARE_BYTES = ELEMENT_BYTES;

export interface Share {
  x: number;
  y: Uint8Array;
}

const P = FIELD_PRIME;
const SECRET_LIMIT = 2n ** 256n;

/** Uniform field element by rejection sampling 257-bit strings (acceptance ~1/2, no bias). */
function randomElement(rand: (n: number) => Uint8Array): bigint {
  for (;;) {
    const b = rand(SHARE_BYTES);
    b[0] &= 1;
    const v = bytesToBig(b);
    if (v < P) return v;
  }
}

function checkXs(xs: readonly number[]): void {
  const seen = new Set<number>();
  for (const x of xs) {
    if (!Number.isInteger(x) || x < 1 || x > 0xffffffff)
      throw new RangeError(`share x must be an integer in 1..2^32-1, got ${x}`);
    if (seen.has(x)) throw new RangeError(`duplicate share x ${x}`);
    seen.add(x);
  }
}

function checkThreshold(t: number): void {
  if (!Number.isInteger(t) || t < 1) throw new RangeError(`threshold must be a positive integer, got ${t}`);
}

/**
 * Splits `secret` so that any `t` of the shares (one per x in `xs`) reconstruct it and any t-1 reveal
 * nothing. `rand` is the randomness for the polynomial (a CSPRNG; injectable only for known-answer tests).
 */
export function split(
  secret: Uint8Array,
  t: number,
  xs: readonly number[],
  rand: (n: number) => Uint8Array = randomBytes,
): Share[] {
  if (secret.length !== SECRET_BYTES)
    throw new RangeError(`secret must be ${SECRET_BYTES} bytes, got ${secret.length}`);
  if (!Number.isInteger(t) || t < 1 || t > xs.length)
    throw new RangeError(`threshold ${t} must be in 1..${xs.length}`);
  checkXs(xs);
  const coeffs = [bytesToBig(secret)];
  for (let i = 1; i < t; i++) coeffs.push(randomElement(rand));
  return xs.map((x) => {
    const bx = BigInt(x);
    let y = 0n;
    for (let i = coeffs.length - 1; i >= 0; i--) y = (y * bx + coeffs[i]) % P; // Horner
    return { x, y: bigToBytes(y, SHARE_BYTES) };
  });
}

/**
 * The parts of the Lagrange weights at 0 for distinct nonzero points: l_i(0) = num_i / den_i with
 * num_i = prod_{j != i} x_j and den_i = prod_{j != i} (x_j - x_i), both mod p.
 */
function lagrangeParts(xs: readonly number[]): { num: bigint[]; den: bigint[] } {
  const t = xs.length;
  // prod_{j != i} x_j from prefix and suffix products (no inversions).
  const num = new Array<bigint>(t);
  let acc = 1n;
  for (let i = 0; i < t; i++) {
    num[i] = acc;
    acc = (acc * BigInt(xs[i])) % P;
  }
  acc = 1n;
  for (let i = t - 1; i >= 0; i--) {
    num[i] = (num[i] * acc) % P;
    acc = (acc * BigInt(xs[i])) % P;
  }
  // prod_{j != i} (x_j - x_i): O(t^2) factors below 2^32 in size, so they are multiplied as doubles while
  // the product stays exact (below 2^53) and only then folded into the bigint: a few bigint operations
  // per row instead of t.
  const den = new Array<bigint>(t);
  for (let i = 0; i < t; i++) {
    let d = 1n;
    let f = 1;
    for (let j = 0; j < t; j++) {
      if (j === i) continue;
      const diff = xs[j] - xs[i];
      if (Math.abs(f * diff) > Number.MAX_SAFE_INTEGER) {
        d = (d * BigInt(f)) % P;
        f = diff;
      } else f *= diff;
    }
    den[i] = mod(d * BigInt(f));
  }
  return { num, den };
}

/**
 * Lagrange weights at 0 for distinct nonzero points: l_i(0) = prod_{j != i} x_j / (x_j - x_i), so that
 * f(0) = sum_i l_i(0) f(x_i) for every f of degree < xs.length. One inversion for all of them.
 */
export function lagrangeAtZero(xs: readonly number[]): bigint[] {
  checkXs(xs);
  const { num, den } = lagrangeParts(xs);
  return batchInvert(den).map((inv, i) => (num[i] * inv) % P);
}

/** Lagrange weights by point set (the x's joined by ","), for many secrets shared among the same holders. */
export type LagrangeCache = Map<string, bigint[]>;

const cacheKey = (xs: readonly number[]): string => xs.join(',');

/**
 * Fills `cache` with the weights of every point set in `sets` (each as reconstructChecked will use it:
 * the x's of the first t shares, in order) for the price of ONE field inversion over all of them
 * (Montgomery's trick across sets): a server rebuilding a thousand secrets, each held by a different
 * set of neighbours, would otherwise pay a thousand inversions.
 */
export function prepareLagrange(cache: LagrangeCache, sets: readonly (readonly number[])[]): void {
  const todo: { key: string; num: bigint[]; den: bigint[] }[] = [];
  const queued = new Set<string>();
  for (const xs of sets) {
    const key = cacheKey(xs);
    if (cache.has(key) || queued.has(key)) continue;
    checkXs(xs);
    queued.add(key);
    todo.push({ key, ...lagrangeParts(xs) });
  }
  const inv = batchInvert(todo.flatMap((p) => p.den));
  let at = 0;
  for (const { key, num } of todo) {
    cache.set(
      key,
      num.map((n, i) => (n * inv[at + i]) % P),
    );
    at += num.length;
  }
}

/** f(0) = sum_i w_i y_i: a dot product, reduced once at the end. */
function combine(ys: readonly bigint[], weights: readonly bigint[]): bigint {
  let acc = 0n;
  for (let i = 0; i < ys.length; i++) acc += ys[i] * weights[i];
  return acc % P;
}

/**
 * Lagrange interpolation at 0 from the first `t` shares. The caller checks the result when it can
 * (a public key or a commitment): with wrong shares this returns a wrong secret, not an error.
 */
export function reconstruct(shares: readonly Share[], t: number): Uint8Array {
  if (shares.length < t) throw new RangeError(`need ${t} shares, have ${shares.length}`);
  const use = shares.slice(0, t);
  const weights = lagrangeAtZero(use.map((s) => s.x));
  const ys = use.map((s) => {
    if (s.y.length !== SHARE_BYTES) throw new RangeError(`share must be ${SHARE_BYTES} bytes`);
    const y = bytesToBig(s.y);
    if (y >= P) throw new RangeError('share is not a field element');
    return y;
  });
  const secret = combine(ys, weights);
  if (secret >= SECRET_LIMIT)
    throw new RangeError('reconstructed value is not a 32-byte secret (wrong shares)');
  return bigToBytes(secret, SECRET_BYTES);
}

/** The 32-byte secret for `v` when it is one and passes `verify` (a verifier that throws fails it). */
function accepted(v: bigint, verify: (secret: Uint8Array) => boolean): Uint8Array | null {
  if (v >= SECRET_LIMIT) return null;
  const secret = bigToBytes(v, SECRET_BYTES);
  try {
    return verify(secret) ? secret : null;
  } catch {
    return null;
  }
}

/**
 * The fast path for a secret the caller can check (`verify`: against a commitment or a public key):
 * Lagrange interpolation at 0 over the first t shares only, so a round of honest clients costs one
 * interpolation per secret (weights shared through `cache`). Null, never a throw, when there are fewer
 * than t shares, one of the first t is not a field element, or the result fails `verify`.
 */
export function reconstructChecked(
  shares: readonly Share[],
  t: number,
  verify: (secret: Uint8Array) => boolean,
  cache?: LagrangeCache,
): Uint8Array | null {
  checkThreshold(t);
  checkXs(shares.map((s) => s.x));
  if (shares.length < t) return null;
  const first = shares.slice(0, t);
  if (!first.every((s) => isFieldElement(s.y))) return null;
  const key = cacheKey(first.map((s) => s.x));
  let weights = cache?.get(key);
  if (!weights) {
    weights = lagrangeAtZero(first.map((s) => s.x));
    cache?.set(key, weights);
  }
  return accepted(
    combine(
      first.map((s) => bytesToBig(s.y)),
      weights,
    ),
    verify,
  );
}

export interface DecodedSecret {
  /** The decoded polynomial's value at 0, when it is a 32-byte secret that passes `verify`. */
  secret: Uint8Array | null;
  /** Every share lies on one polynomial of degree < t. */
  consistent: boolean;
  /** x of the shares off the decoded polynomial, ascending; empty when decoding failed. */
  off: number[];
}

/**
 * The slow path: all shares decoded as a Reed–Solomon codeword (Gao), which recovers the polynomial
 * when at most floor((m - t) / 2) of the m shares are off it. Every share must be a field element.
 *
 * This says which shares disagree, not who is to blame. With shares nobody vouches for, fewer than t
 * colluders can shift theirs by g(x) with g(0) = 0 and steer decoding to a polynomial with the right
 * secret that puts honest holders "off" it (attack.test.ts). recover.ts feeds it only shares whose dealer
 * signed them, so that disagreement there is the dealer's own doing.
 */
export function decodeChecked(
  shares: readonly Share[],
  t: number,
  verify: (secret: Uint8Array) => boolean,
): DecodedSecret {
  checkThreshold(t);
  checkXs(shares.map((s) => s.x));
  for (const s of shares)
    if (!isFieldElement(s.y)) throw new RangeError(`share ${s.x} is not a field element`);
  // Fewer than t points lie on many polynomials of degree < t: consistent, but they fix no secret.
  if (shares.length < t) return { secret: null, consistent: true, off: [] };
  const decoded = decode(
    shares.map((s) => BigInt(s.x)),
    shares.map((s) => bytesToBig(s.y)),
    t,
  );
  if (!decoded) return { secret: null, consistent: false, off: [] };
  return {
    secret: accepted(decoded.poly[0] ?? 0n, verify),
    consistent: decoded.errors.length === 0,
    off: decoded.errors.map((i) => shares[i].x).sort((a, b) => a - b),
  };
}
