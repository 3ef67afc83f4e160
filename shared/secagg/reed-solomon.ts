import { batchInvert, FIELD_PRIME, invMod, mod } from './field.ts';

/**
 * Reed–Solomon error correction for Shamir shares over GF(p): Shamir shares of a degree < t polynomial
 * are a codeword of the [m, t] Reed–Solomon code, so with m shares up to floor((m - t) / 2) wrong ones
 * can be found and corrected. Decoding is Gao's algorithm (S. Gao, "A New Algorithm for Decoding
 * Reed-Solomon Codes", 2003): interpolate all m points, then one partial extended Euclid against
 * prod (x - x_i). O(m^2) field operations, no linear system.
 *
 * Polynomials are coefficient arrays, lowest degree first, entries in [0, p), no trailing zeros
 * (the zero polynomial is []).
 */
const P = FIELD_PRIME;
type Poly = bigint[];

function trim(a: Poly): Poly {
  let n = a.length;
  while (n > 0 && a[n - 1] === 0n) n--;
  return n === a.length ? a : a.slice(0, n);
}

const degree = (a: Poly): number => a.length - 1; // -1 for the zero polynomial

function sub(a: Poly, b: Poly): Poly {
  const out = new Array<bigint>(Math.max(a.length, b.length));
  for (let i = 0; i < out.length; i++) out[i] = mod((a[i] ?? 0n) - (b[i] ?? 0n));
  return trim(out);
}

function mul(a: Poly, b: Poly): Poly {
  if (!a.length || !b.length) return [];
  const out = new Array<bigint>(a.length + b.length - 1).fill(0n);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === 0n) continue;
    for (let j = 0; j < b.length; j++) out[i + j] = (out[i + j] + a[i] * b[j]) % P;
  }
  return trim(out);
}

/** Quotient and remainder of a / b (b not zero). */
function divmod(a: Poly, b: Poly): [Poly, Poly] {
  const db = degree(b);
  if (db < 0) throw new RangeError('division by the zero polynomial');
  const inv = invMod(b[db]);
  const r = a.slice();
  const q = new Array<bigint>(Math.max(0, a.length - db)).fill(0n);
  for (let i = r.length - 1; i >= db; i--) {
    const c = (r[i] * inv) % P;
    if (c === 0n) continue;
    q[i - db] = c;
    for (let j = 0; j <= db; j++) r[i - db + j] = mod(r[i - db + j] - c * b[j]);
  }
  return [trim(q), trim(r.slice(0, db))];
}

export function evaluate(a: Poly, x: bigint): bigint {
  let y = 0n;
  for (let i = a.length - 1; i >= 0; i--) y = (y * x + a[i]) % P; // Horner
  return y;
}

/** prod (x - x_i), and the polynomial of degree < m through the m points (xs distinct). */
export function interpolate(xs: readonly bigint[], ys: readonly bigint[]): { vanishing: Poly; poly: Poly } {
  const m = xs.length;
  let vanishing: Poly = [1n];
  for (const x of xs) vanishing = mul(vanishing, [mod(-x), 1n]);
  // Lagrange form: sum_i y_i / prod_{j != i} (x_i - x_j) * vanishing / (x - x_i).
  const denom = xs.map((xi, i) => {
    let d = 1n;
    for (let j = 0; j < m; j++) if (j !== i) d = (d * mod(xi - xs[j])) % P;
    return d;
  });
  const w = batchInvert(denom);
  const poly = new Array<bigint>(m).fill(0n);
  for (let i = 0; i < m; i++) {
    const wi = (w[i] * mod(ys[i])) % P;
    if (wi === 0n) continue;
    // Synthetic division vanishing / (x - x_i), exact; its coefficients from the top down.
    let c = 0n;
    for (let k = m; k >= 1; k--) {
      c = (vanishing[k] + c * xs[i]) % P; // coefficient of x^(k-1) in the quotient
      poly[k - 1] = (poly[k - 1] + wi * c) % P;
    }
  }
  return { vanishing, poly: trim(poly) };
}

export interface Decoded {
  /** The polynomial of degree < t that agrees with all but at most floor((m - t) / 2) of the points. */
  poly: Poly;
  /** Positions (indices into the input) of the points that are off it. */
  errors: number[];
}

/**
 * Gao's decoder: the unique polynomial of degree < t within floor((m - t) / 2) errors of the m points,
 * or null when there is none (too many errors). xs must be distinct; ys in [0, p).
 */
export function decode(xs: readonly bigint[], ys: readonly bigint[], t: number): Decoded | null {
  const m = xs.length;
  if (ys.length !== m) throw new RangeError('need one y per x');
  if (!Number.isInteger(t) || t < 1)
    throw new RangeError(`degree bound t must be a positive integer, got ${t}`);
  if (m < t) return null;
  const maxErrors = Math.floor((m - t) / 2);
  const { vanishing, poly } = interpolate(xs, ys);
  // Partial extended Euclid on (vanishing, poly), tracking only the cofactor of poly, until the
  // remainder's degree falls below (m + t) / 2.
  let r0 = vanishing;
  let r1 = poly;
  let v0: Poly = [];
  let v1: Poly = [1n];
  while (2 * degree(r1) >= m + t) {
    const [q, r] = divmod(r0, r1);
    [r0, r1] = [r1, r];
    [v0, v1] = [v1, sub(v0, mul(q, v1))];
  }
  const [f, rem] = divmod(r1, v1);
  if (rem.length || degree(f) >= t) return null;
  const errors: number[] = [];
  for (let i = 0; i < m; i++) if (evaluate(f, xs[i]) !== mod(ys[i])) errors.push(i);
  // Success above already implies this bound; checked again so a caller can rely on it unconditionally.
  if (errors.length > maxErrors) return null;
  return { poly: f, errors };
}
