import { randomBytes } from '@noble/hashes/utils.js';
import { logAdd, logBinom } from '../dp/special.ts';

/**
 * SecAgg+ neighbourhoods (Bell et al. 2020): clients sit on a circle in a random order and each is
 * joined to its k/2 predecessors and k/2 successors (a Harary graph). k grows like O(log n); small
 * cohorts use the complete graph (classic SecAgg).
 */
export interface NeighbourhoodParams {
  /** Probability that a client drops out of a round (assumed, independent). */
  dropout: number;
  /** Fraction of clients that may collude with the server. */
  corrupt: number;
  /** Security parameter: disconnection / share-capture probability below 2^-sigma. */
  sigma: number;
  /** Correctness parameter: a round fails for lack of shares with probability below 2^-eta. */
  eta: number;
  /** Threshold as a fraction of k: t = floor(fraction * k) + 1. */
  thresholdFraction: number;
}

export const DEFAULT_NEIGHBOURHOOD: NeighbourhoodParams = {
  dropout: 0.1,
  corrupt: 0.05,
  sigma: 40,
  eta: 20,
  thresholdFraction: 0.5,
};

export interface Degree {
  /** Neighbours per client. */
  k: number;
  /** Shares needed to reconstruct a client's secret. */
  t: number;
  complete: boolean;
}

/** log P[Binomial(k, p) >= m]. */
export function logBinomialTail(k: number, p: number, m: number): number {
  if (m <= 0) return 0;
  if (m > k) return -Infinity;
  if (p <= 0) return -Infinity;
  if (p >= 1) return 0;
  let acc = -Infinity;
  for (let i = m; i <= k; i++) acc = logAdd(acc, logBinom(k, i) + i * Math.log(p) + (k - i) * Math.log1p(-p));
  return acc;
}

export function thresholdFor(k: number, fraction: number): number {
  return Math.min(k, Math.floor(fraction * k) + 1);
}

/**
 * The smallest even k for which (union bounds over the n clients):
 * - survivors stay connected: two runs of k/2 dropped neighbours are needed to cut the circle, n^2/2 * d^k < 2^-sigma;
 * - colluders never hold t shares of an honest client's secret: n * P[Bin(k, corrupt) >= t] < 2^-sigma;
 * - every secret keeps t live holders: n * P[Bin(k, dropout) > k - t] < 2^-eta.
 * Falls back to the complete graph (k = n - 1) when no smaller k qualifies.
 */
export function chooseDegree(n: number, p: NeighbourhoodParams = DEFAULT_NEIGHBOURHOOD): Degree {
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`cohort needs at least 2 clients, got ${n}`);
  const ln2 = Math.LN2;
  const logN = Math.log(n);
  for (let k = 2; k < n - 1; k += 2) {
    const t = thresholdFor(k, p.thresholdFraction);
    const cut = 2 * logN - ln2 + k * Math.log(p.dropout);
    const capture = logN + logBinomialTail(k, p.corrupt, t);
    const starve = logN + logBinomialTail(k, p.dropout, k - t + 1);
    if (cut < -p.sigma * ln2 && capture < -p.sigma * ln2 && starve < -p.eta * ln2)
      return { k, t, complete: false };
  }
  return { k: n - 1, t: thresholdFor(n - 1, p.thresholdFraction), complete: true };
}

/** Uniform integer in [0, n) from a CSPRNG, by rejection (no modulo bias). */
function secureInt(n: number, rand: (len: number) => Uint8Array): number {
  const limit = Math.floor(0x100000000 / n) * n;
  for (;;) {
    const b = rand(4);
    const v = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
    if (v < limit) return v % n;
  }
}

/**
 * Neighbour lists for clients 0..n-1 (positions in the cohort). The circle order is a fresh uniformly
 * random permutation, so which clients end up adjacent is unpredictable before the round.
 */
export function harary(n: number, k: number, rand: (len: number) => Uint8Array = randomBytes): number[][] {
  if (k >= n - 1)
    return Array.from({ length: n }, (_, i) => Array.from({ length: n - 1 }, (_, j) => (j < i ? j : j + 1)));
  if (k < 2 || k % 2 !== 0) throw new RangeError(`Harary degree must be even and >= 2 (or n - 1), got ${k}`);
  const circle = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = secureInt(i + 1, rand);
    [circle[i], circle[j]] = [circle[j], circle[i]];
  }
  const out: number[][] = Array.from({ length: n }, () => []);
  for (let pos = 0; pos < n; pos++) {
    for (let d = 1; d <= k / 2; d++) {
      const a = circle[pos];
      const b = circle[(pos + d) % n];
      out[a].push(b);
      out[b].push(a);
    }
  }
  for (const l of out) l.sort((x, y) => x - y);
  return out;
}
