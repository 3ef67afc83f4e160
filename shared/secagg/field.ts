import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';

/**
 * Arithmetic in GF(p), p = 2^256 + 297 (the smallest prime above 2^256), the field of the Shamir shares:
 * every 32-byte secret is a field element, and a field element takes 33 bytes big-endian.
 */
export const FIELD_PRIME = 2n ** 256n + 297n;
/** Bytes of a field element on the wire (big-endian). */
export const ELEMENT_BYTES = 33;

const P = FIELD_PRIME;

/** The representative of `a` in [0, p). */
export const mod = (a: bigint): bigint => ((a % P) + P) % P;

/** Big-endian bytes -> bigint, through hex (one BigInt parse instead of a BigInt operation per byte). */
export function bytesToBig(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + bytesToHex(b));
}

/** v (0 <= v < 2^(8 len)) -> `len` bytes big-endian. */
export function bigToBytes(v: bigint, len: number): Uint8Array {
  if (v < 0n) throw new RangeError(`value does not fit in ${len} bytes`);
  if (v === 0n) return new Uint8Array(len);
  const h = v.toString(16);
  if (h.length > 2 * len) throw new RangeError(`value does not fit in ${len} bytes`);
  return hexToBytes(h.padStart(2 * len, '0'));
}

/**
 * True for the canonical encoding of a field element: exactly ELEMENT_BYTES bytes, value below p.
 * 33 bytes hold values up to 2^264 - 1, so a sender can put a non-element on the wire; check on receipt.
 */
export function isFieldElement(b: Uint8Array): boolean {
  return b.length === ELEMENT_BYTES && isFieldElementAt(b, 0);
}

/** isFieldElement of the ELEMENT_BYTES bytes at `at` in b (no view made: the server checks thousands). */
export function isFieldElementAt(b: Uint8Array, at: number): boolean {
  if (at < 0 || at + ELEMENT_BYTES > b.length) return false;
  // p = 0x01 || 0^30 || 0x0129: below 2^256 (first byte 0) always; from 2^256 on, only up to p - 1.
  if (b[at] === 0) return true;
  if (b[at] !== 1) return false;
  for (let i = 1; i < ELEMENT_BYTES - 2; i++) if (b[at + i] !== 0) return false;
  return b[at + ELEMENT_BYTES - 2] * 256 + b[at + ELEMENT_BYTES - 1] < 0x0129;
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

/**
 * Inverses of all of `a` for the price of one inversion and 3(n-1) multiplications (Montgomery's trick):
 * an inversion costs some 400 multiplications, so this is what makes Lagrange weights cheap.
 */
export function batchInvert(a: readonly bigint[]): bigint[] {
  const n = a.length;
  if (n === 0) return [];
  const prefix = new Array<bigint>(n);
  let acc = 1n;
  for (let i = 0; i < n; i++) {
    const v = mod(a[i]);
    if (v === 0n) throw new RangeError('0 has no inverse');
    prefix[i] = acc;
    acc = (acc * v) % P;
  }
  let inv = invMod(acc); // 1 / (a_0 ... a_{n-1})
  const out = new Array<bigint>(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = (inv * prefix[i]) % P; // 1 / a_i = (a_0 ... a_{i-1}) / (a_0 ... a_i)
    inv = (inv * mod(a[i])) % P;
  }
  return out;
}
