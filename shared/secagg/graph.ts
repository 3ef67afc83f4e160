import { randomBytes } from '@noble/hashes/utils.js';
import { logAdd, logBinom } from '../dp/special.ts';

/**
 * SecAgg+ neighbourhoods (Bell et al. 2020): clients sit on a circle in a random order and each is
 * joined to its k/2 predecessors and k/2 successors (a Harary graph). k grows like O(log n); small
 * cohorts use the complete graph (classic SecAgg) with an honest-majority threshold.
 */

/** Fewest clients secure aggregation runs with: with two, the sum shows each client its peer's update. */
export const SECAGG_MIN_COHORT = 3;
/** Lowest Shamir threshold ever used: with t = 1 any single holder rebuilds a secret. */
export const SECAGG_MIN_THRESHOLD = 2;
/**
 * Cohorts at least this large are sized by the SecAgg+ bounds (which are loose union bounds and only
 * beat the complete graph once n is in the tens); smaller ones use the complete graph, t = floor(n/2) + 1.
 */
export const SECAGG_PLUS_MIN_COHORT = 50;
/** Sparse degrees searched before trying the complete graph (bounds only shrink with k; keeps n = 10^5 cheap). */
const MAX_SPARSE_DEGREE = 1024;

export interface NeighbourhoodParams {
  /** Probability that a client drops out of a round (assumed, independent). */
  dropout: number;
  /** Fraction of clients that may collude with the server (Sybils the server runs included). */
  corrupt: number;
  /** Security parameter: disconnection / share-capture probability below 2^-sigma. */
  sigma: number;
  /** Correctness parameter: a round fails for lack of shares with probability below 2^-eta. */
  eta: number;
  /** Threshold as a fraction of k: t = floor(fraction * k) + 1 (at least 0.5 for SecAgg+ cohorts). */
  thresholdFraction: number;
  /**
   * The server may deviate: it can split its unmask requests (ask some holders for a client's self-mask
   * shares, others for its key shares), so t is also raised until P[colluding neighbours >= 2t - k] < 2^-sigma.
   */
  maliciousServer?: boolean;
}

export const DEFAULT_NEIGHBOURHOOD: NeighbourhoodParams = {
  dropout: 0.1,
  corrupt: 0.05,
  sigma: 40,
  eta: 20,
  thresholdFraction: 0.5,
};

/** log2 of union bounds over the cohort (more negative is safer), as checked when k and t were chosen. */
export interface DegreeBounds {
  /** Security: the honest survivors' graph splits (the server would learn partial sums). */
  disconnect: number;
  /** Security: colluders hold t shares of some honest client's secret (the server follows the protocol). */
  capture: number;
  /** Security against a split unmask request: some honest client has >= 2t - k colluding neighbours. */
  split: number;
  /** Correctness: some secret keeps fewer than t live holders (the round fails cleanly). */
  starve: number;
  /** -max of the bounds that were enforced (disconnect, capture, and split in malicious-server mode). */
  securityBits: number;
  /** -starve. */
  correctnessBits: number;
}

export interface Degree {
  /** Neighbours per client. */
  k: number;
  /** Shares needed to reconstruct a client's secret. */
  t: number;
  complete: boolean;
  /**
   * Colluding clients the round withstands whoever they are, when the server follows the protocol:
   * t - 1 of them hold too few shares to rebuild both secrets of any client.
   */
  toleratedColluders: number;
  /** The same when the server splits its unmask requests: 2t - k - 1 (honest holders fill the rest). */
  toleratedColludersSplit: number;
  /** The SecAgg+ bounds for cohorts of SECAGG_PLUS_MIN_COHORT and more; null for small cohorts (complete graph). */
  bounds: DegreeBounds | null;
}

/** log P[Binomial(k, p) >= m]. */
export function logBinomialTail(k: number, p: number, m: number): number {
  if (m <= 0) return 0;
  if (m > k) return -Infinity;
  if (p <= 0) return -Infinity;
  if (p >= 1) return 0;
  let acc = -Infinity;
  for (let i = m; i <= k; i++) acc = logAdd(acc, logBinom(k, i) + i * Math.log(p) + (k - i) * Math.log1p(-p));
  return Math.min(0, acc);
}

/**
 * log P[X = x] for x = 0..draws, X ~ Hypergeometric(population, marked, draws): how many of `draws`
 * clients taken without replacement from `population` are among the `marked` ones.
 */
function logHypergeometricPmf(population: number, marked: number, draws: number): number[] {
  const out = new Array<number>(draws + 1).fill(-Infinity);
  const lo = Math.max(0, draws - (population - marked));
  const hi = Math.min(marked, draws);
  const whole = logBinom(population, draws);
  for (let x = lo; x <= hi; x++)
    out[x] = logBinom(marked, x) + logBinom(population - marked, draws - x) - whole;
  return out;
}

/** log P[X >= m], X ~ Hypergeometric(population, marked, draws). */
export function logHypergeometricTail(population: number, marked: number, draws: number, m: number): number {
  checkHypergeometric(population, marked, draws);
  if (m <= 0) return 0;
  const pmf = logHypergeometricPmf(population, marked, draws);
  let acc = -Infinity;
  for (let x = Math.min(m, draws + 1); x <= draws; x++) acc = logAdd(acc, pmf[x]);
  return Math.min(0, acc); // a probability, whatever lgamma's last bit says
}

function checkHypergeometric(population: number, marked: number, draws: number): void {
  const ok = (v: number, max: number) => Number.isInteger(v) && v >= 0 && v <= max;
  if (!ok(population, Infinity) || !ok(marked, population) || !ok(draws, population))
    throw new RangeError(`hypergeometric(${population}, ${marked}, ${draws}) is not defined`);
}

export function thresholdFor(k: number, fraction: number): number {
  return Math.min(k, Math.floor(fraction * k) + 1);
}

/** The honest-majority threshold of a complete graph on n clients. */
export function majorityThreshold(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Colluders the bounds assume among n clients: the fraction rounded up (a partial client counts whole). */
export function colludersOf(n: number, corrupt: number): number {
  return Math.min(n - 1, Math.ceil(corrupt * n - 1e-9));
}

export interface SplitBound {
  t: number;
  /** Colluding clients assumed among the n (colludersOf(n, corrupt)). */
  colluders: number;
  /** Colluding neighbours a split request needs to unmask one client: 2t - k. */
  needed: number;
  /** log2 P[an honest client's k neighbours include >= 2t - k colluders] (exact, hypergeometric). */
  log2PerClient: number;
  /** log2 of the union bound over the cohort's honest clients: the reported security of this t. */
  log2Bound: number;
}

/**
 * Why split requests matter: an honest holder of client v's shares reveals EITHER v's self-mask share
 * OR v's key share, as asked. A server that asks some holders for the one and the rest for the other
 * gets t of each once colluders c (who give both) and the k - c honest holders satisfy
 * c + h_b >= t, c + h_s >= t with h_b + h_s <= k - c, i.e. once c >= 2t - k.
 * With a fresh random circle, v's k neighbours are a uniform k-subset of the other n - 1 clients, of
 * which `colluders` collude: their count is hypergeometric. (That holds only while the server cannot
 * pick the circle; it picks it today, so in a malicious-server deployment the permutation must come
 * from randomness it cannot steer, or the complete graph must be used.)
 */
export function log2SplitBound(n: number, k: number, t: number, colluders: number): SplitBound {
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`cohort needs at least 2 clients, got ${n}`);
  if (!Number.isInteger(k) || k < 1 || k > n - 1)
    throw new RangeError(`degree must be in 1..${n - 1}, got ${k}`);
  if (!Number.isInteger(t) || t < 1 || t > k) throw new RangeError(`threshold must be in 1..${k}, got ${t}`);
  const needed = 2 * t - k;
  const perClient = logHypergeometricTail(n - 1, colluders, k, needed) / Math.LN2;
  return {
    t,
    colluders,
    needed,
    log2PerClient: perClient,
    log2Bound: perClient + Math.log2(n - colluders),
  };
}

/**
 * The smallest t in (k/2, k] for which a server splitting its unmask requests unmasks some honest client
 * with probability below 2^-sigma (union bound over the honest clients), and that bound. Throws a
 * RangeError when even t = k is not enough.
 */
export function maliciousThreshold(n: number, k: number, corrupt: number, sigma = 40): SplitBound {
  if (!(corrupt >= 0 && corrupt < 1))
    throw new RangeError(`corrupt fraction must be in [0, 1), got ${corrupt}`);
  if (!(sigma > 0)) throw new RangeError(`sigma must be > 0, got ${sigma}`);
  const colluders = colludersOf(n, corrupt);
  log2SplitBound(n, k, k, colluders); // argument checks
  // One pmf, tails summed from the top: O(k) for all t together.
  const pmf = logHypergeometricPmf(n - 1, colluders, k);
  const tail = new Array<number>(k + 2).fill(-Infinity);
  for (let m = k; m >= 0; m--) tail[m] = logAdd(tail[m + 1], pmf[m]);
  const union = Math.log2(n - colluders);
  const lo = Math.max(SECAGG_MIN_THRESHOLD, Math.floor(k / 2) + 1);
  for (let t = lo; t <= k; t++) {
    if (tail[2 * t - k] / Math.LN2 + union < -sigma) return log2SplitBound(n, k, t, colluders);
  }
  throw new RangeError(
    `no threshold up to t = k = ${k} keeps ${colluders} colluders of ${n} clients below 2^-${sigma} against split unmask requests`,
  );
}

function checkParams(p: NeighbourhoodParams): void {
  for (const [name, v] of [
    ['dropout', p.dropout],
    ['corrupt', p.corrupt],
    ['thresholdFraction', p.thresholdFraction],
  ] as const)
    if (!(v >= 0 && v < 1)) throw new RangeError(`${name} must be in [0, 1), got ${v}`);
  if (!(p.sigma > 0) || !(p.eta > 0)) throw new RangeError(`sigma and eta must be > 0`);
}

/** The bounds of (k, t) on n clients; see DegreeBounds. */
export function degreeBounds(n: number, k: number, t: number, p: NeighbourhoodParams): DegreeBounds {
  const lnN = Math.log(n);
  // A dropped client and a colluding one both leave the honest survivors' graph; cutting the circle
  // takes two runs of k/2 consecutive such clients: at most n^2/2 places, probability removed^k each.
  const removed = 1 - (1 - p.dropout) * (1 - p.corrupt);
  const disconnect = k >= n - 1 ? -Infinity : (2 * lnN - Math.LN2 + k * Math.log(removed)) / Math.LN2;
  const capture = (lnN + logBinomialTail(k, p.corrupt, t)) / Math.LN2;
  const starve = (lnN + logBinomialTail(k, p.dropout, k - t + 1)) / Math.LN2;
  const split = log2SplitBound(n, k, t, colludersOf(n, p.corrupt)).log2Bound;
  const enforced = p.maliciousServer ? [disconnect, capture, split] : [disconnect, capture];
  return {
    disconnect,
    capture,
    split,
    starve,
    securityBits: -Math.max(...enforced),
    correctnessBits: -starve,
  };
}

function degree(k: number, t: number, complete: boolean, bounds: DegreeBounds | null): Degree {
  return {
    k,
    t,
    complete,
    toleratedColluders: t - 1,
    toleratedColludersSplit: Math.max(0, 2 * t - k - 1),
    bounds,
  };
}

/** t for degree k: the configured fraction, raised for split requests in malicious-server mode; null if none fits. */
function thresholdAt(n: number, k: number, p: NeighbourhoodParams, floor: number): number | null {
  let t = Math.max(floor, thresholdFor(k, p.thresholdFraction));
  if (p.maliciousServer) {
    try {
      t = Math.max(t, maliciousThreshold(n, k, p.corrupt, p.sigma).t);
    } catch {
      return null;
    }
  }
  return t <= k ? t : null;
}

/**
 * (k, t) for a cohort of n, or a RangeError saying why none is acceptable:
 * - n < 3: refused (two clients' sum shows each its peer's update).
 * - n < SECAGG_PLUS_MIN_COHORT: the complete graph with an honest majority, t = floor(n/2) + 1 (or more,
 *   if the fraction or malicious-server mode asks for it); its guarantee is the colluder count, not a bound.
 * - larger n: the smallest even k whose (k, t) keeps every security bound below 2^-sigma and the
 *   correctness bound below 2^-eta (DegreeBounds); the complete graph only if it meets them too.
 */
export function chooseDegree(n: number, p: NeighbourhoodParams = DEFAULT_NEIGHBOURHOOD): Degree {
  checkParams(p);
  if (!Number.isInteger(n) || n < SECAGG_MIN_COHORT)
    throw new RangeError(
      `secure aggregation needs at least ${SECAGG_MIN_COHORT} clients (with 2, the sum shows each its peer's update), got ${n}`,
    );
  if (n < SECAGG_PLUS_MIN_COHORT) {
    const t = thresholdAt(n, n - 1, p, majorityThreshold(n));
    if (t === null)
      throw new RangeError(
        `no threshold keeps ${colludersOf(n, p.corrupt)} colluders of ${n} clients from unmasking a client by splitting unmask requests`,
      );
    return degree(n - 1, t, true, null);
  }
  if (p.thresholdFraction < 0.5)
    throw new RangeError(
      `threshold fraction ${p.thresholdFraction} gives t <= k/2: a server splitting its unmask requests would need no colluder`,
    );
  const meets = (b: DegreeBounds): boolean => b.securityBits > p.sigma && b.correctnessBits > p.eta;
  for (let k = 2; k < n - 1 && k <= MAX_SPARSE_DEGREE; k += 2) {
    const t = thresholdAt(n, k, p, SECAGG_MIN_THRESHOLD);
    if (t === null) continue;
    const b = degreeBounds(n, k, t, p);
    if (meets(b)) return degree(k, t, false, b);
  }
  const k = n - 1;
  const t = thresholdAt(n, k, p, SECAGG_MIN_THRESHOLD);
  if (t === null)
    throw new RangeError(
      `no threshold keeps ${colludersOf(n, p.corrupt)} colluders of ${n} clients below 2^-${p.sigma} against split unmask requests`,
    );
  const b = degreeBounds(n, k, t, p);
  if (meets(b)) return degree(k, t, true, b);
  const why =
    b.correctnessBits <= p.eta
      ? `a secret keeps fewer than t live holders with probability up to 2^${b.starve.toFixed(1)} (need < 2^-${p.eta})`
      : `colluders capture a secret with probability up to 2^${Math.max(b.capture, p.maliciousServer ? b.split : -Infinity).toFixed(1)} (need < 2^-${p.sigma})`;
  throw new RangeError(
    `no neighbourhood for ${n} clients (dropout ${p.dropout}, corrupt ${p.corrupt}) is safe: even the complete graph with t = ${t}: ${why}`,
  );
}

/**
 * Why (n, k, t) handed to a client is unsafe whatever its floors say, or null. The rules chooseDegree
 * follows, checked from the client's side: at least 3 clients and t >= 2; below SECAGG_PLUS_MIN_COHORT
 * only the complete graph with an honest majority; a sparse graph needs t > k/2, or a server splitting its
 * unmask requests rebuilds both secrets of a client from honest holders alone.
 */
export function unsafeThreshold(n: number, k: number, t: number): string | null {
  if (!(n >= SECAGG_MIN_COHORT))
    return `a round of ${n} clients shows each its peers' updates (secure aggregation needs ${SECAGG_MIN_COHORT})`;
  if (!(t >= SECAGG_MIN_THRESHOLD)) return `threshold ${t} lets a single holder rebuild a secret`;
  if (k >= n - 1) {
    if (t < majorityThreshold(n))
      return `threshold ${t} is below the honest majority ${majorityThreshold(n)} of ${n} clients`;
    return null;
  }
  if (n < SECAGG_PLUS_MIN_COHORT)
    return `a sparse neighbourhood (k = ${k}) for only ${n} clients; below ${SECAGG_PLUS_MIN_COHORT} the graph is complete`;
  if (2 * t <= k)
    return `threshold ${t} is at most half of ${k} neighbours: split unmask requests need no colluder`;
  return null;
}

const bound = (log2: number): string => (Number.isFinite(log2) ? `2^${Math.ceil(log2)}` : '0');

const clients = (c: number): string => `${c} colluding client${c === 1 ? '' : 's'}`;

/** One line for status pages and logs: what the round's (k, t) protects against. */
export function describeDegree(n: number, d: Degree): string {
  const graph = d.complete ? `complete graph of ${n} clients` : `${n} clients, ${d.k} neighbours each`;
  const head =
    `${graph}, threshold ${d.t}: tolerates ${clients(d.toleratedColluders)} ` +
    `(${d.toleratedColludersSplit} if the server splits its unmask requests)`;
  if (!d.bounds) return head;
  return (
    `${head}; with the assumed colluding fraction a client is exposed with probability below ` +
    `${bound(-d.bounds.securityBits)}, and a round fails for lack of shares below ${bound(-d.bounds.correctnessBits)}`
  );
}

/**
 * Uniform integers in [0, n) by rejection (no modulo bias) from 32-bit words of `rand`, drawn 4 KiB at a
 * time (one call per word cost ~50 ms of the round's start at 10 000 clients). The words are taken in
 * stream order, so a byte stream gives the same draws whatever the block size.
 */
function secureInts(rand: (len: number) => Uint8Array): (n: number) => number {
  let pool: Uint8Array = new Uint8Array(0);
  let at = 0;
  return (n) => {
    const limit = Math.floor(0x100000000 / n) * n;
    for (;;) {
      if (at + 4 > pool.length) {
        pool = rand(4096);
        at = 0;
        if (pool.length < 4) throw new RangeError('the random source returned too few bytes');
      }
      const v = ((pool[at] << 24) | (pool[at + 1] << 16) | (pool[at + 2] << 8) | pool[at + 3]) >>> 0;
      at += 4;
      if (v < limit) return v % n;
    }
  };
}

/**
 * Neighbour lists for clients 0..n-1 (positions in the cohort). The circle order is a fresh uniformly
 * random permutation, so which clients end up adjacent is unpredictable before the round.
 */
export function harary(n: number, k: number, rand: (len: number) => Uint8Array = randomBytes): number[][] {
  if (k >= n - 1)
    return Array.from({ length: n }, (_, i) => Array.from({ length: n - 1 }, (_, j) => (j < i ? j : j + 1)));
  if (k < 2 || k % 2 !== 0) throw new RangeError(`Harary degree must be even and >= 2 (or n - 1), got ${k}`);
  const circle = new Int32Array(n);
  for (let i = 0; i < n; i++) circle[i] = i;
  const draw = secureInts(rand);
  for (let i = n - 1; i > 0; i--) {
    const j = draw(i + 1);
    const c = circle[i];
    circle[i] = circle[j];
    circle[j] = c;
  }
  // Client circle[pos]'s neighbours are the k/2 on each side of pos; sorted as a typed array (numeric,
  // no comparator calls), 10 000 lists in a few ms.
  const out: number[][] = new Array(n);
  const half = k / 2;
  const l = new Int32Array(k);
  for (let pos = 0; pos < n; pos++) {
    for (let d = 1; d <= half; d++) {
      l[2 * d - 2] = circle[(pos + d) % n];
      l[2 * d - 1] = circle[(pos - d + n) % n];
    }
    out[circle[pos]] = Array.from(l.sort());
  }
  return out;
}
