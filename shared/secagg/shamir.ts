import { randomBytes } from '@noble/hashes/utils.js';

/**
 * Shamir t-of-k secret sharing of 32-byte secrets over GF(p), p = 2^256 + 297 (the smallest prime
 * above 2^256), so every 32-byte string is a field element and no secret needs chunking or reduction.
 * A share is (x, y): x is the holder's 1-based index, y is 33 bytes big-endian.
 */
export const FIELD_PRIME = 2n ** 256n + 297n;
export const SECRET_BYTES = 32;
export const SHARE_BYTES = 33;

export interface Share {
  x: number;
  y: Uint8Array;
}

const P = FIELD_PRIME;
const mod = (a: bigint): bigint => ((a % P) + P) % P;

export function bytesToBig(b: Uint8Array): bigint {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return v;
}

export function bigToBytes(v: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (v !== 0n) throw new RangeError(`value does not fit in ${len} bytes`);
  return out;
}

/** Modular inverse by Fermat (p is prime). */
export function invMod(a: bigint): bigint {
  a = mod(a);
  if (a === 0n) throw new RangeError('0 has no inverse');
  let r = 1n;
  let b = a;
  let e = P - 2n;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return r;
}

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
 * Lagrange interpolation at 0 from the first `t` shares. The caller checks the result when it can
 * (a public key or a commitment): with wrong shares this returns a wrong secret, not an error.
 */
export function reconstruct(shares: readonly Share[], t: number): Uint8Array {
  if (shares.length < t) throw new RangeError(`need ${t} shares, have ${shares.length}`);
  const use = shares.slice(0, t);
  checkXs(use.map((s) => s.x));
  const xs = use.map((s) => BigInt(s.x));
  let acc = 0n;
  for (let i = 0; i < t; i++) {
    if (use[i].y.length !== SHARE_BYTES) throw new RangeError(`share must be ${SHARE_BYTES} bytes`);
    const yi = bytesToBig(use[i].y);
    if (yi >= P) throw new RangeError('share is not a field element');
    // l_i(0) = prod_{j != i} x_j / (x_j - x_i)
    let n = 1n;
    let d = 1n;
    for (let j = 0; j < t; j++) {
      if (j === i) continue;
      n = (n * xs[j]) % P;
      d = (d * mod(xs[j] - xs[i])) % P;
    }
    acc = (acc + yi * ((n * invMod(d)) % P)) % P;
  }
  const secret = acc;
  if (secret >= 2n ** 256n)
    throw new RangeError('reconstructed value is not a 32-byte secret (wrong shares)');
  return bigToBytes(secret, SECRET_BYTES);
}
