import { logAdd, logBinom, logErfc } from './special.ts';

/**
 * Rényi-DP accountant for the sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019), as used for
 * user-level DP-FedAvg: each round samples each client independently with probability q (POISSON sampling,
 * add-or-remove-one-client neighbours) and the SUM of clipped updates gets Gaussian noise of std z*C.
 * Fixed-size cohorts without replacement are a different (replace-one) relation this accountant does not cover.
 */
export const SAMPLING_ASSUMPTION = 'poisson-add-remove' as const;

/** [1.1, 1.2, ..., 10.9] + [11..63] + [128, 256, 512, 1024]. */
export const DEFAULT_ORDERS: readonly number[] = [
  ...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10),
  ...Array.from({ length: 53 }, (_, i) => 11 + i),
  128,
  256,
  512,
  1024,
];

const MAX_TERMS = 1000;

/** log A_alpha for integer alpha: a finite binomial sum. */
function logAInt(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  for (let i = 0; i <= alpha; i++) {
    const t =
      logBinom(alpha, i) + i * Math.log(q) + (alpha - i) * Math.log1p(-q) + (i * i - i) / (2 * sigma * sigma);
    logA = logAdd(logA, t);
  }
  return logA;
}

/** log A_alpha for fractional alpha (sec. 3.3); adds |terms|, slightly conservative. Infinity if it does not converge. */
function logAFrac(q: number, sigma: number, alpha: number): number {
  let a0 = -Infinity;
  let a1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  const s2 = 2 * sigma * sigma;
  let prev0 = Infinity;
  let prev1 = Infinity;
  for (let i = 0; i < MAX_TERMS; i++) {
    const j = alpha - i;
    const c = logBinom(alpha, i);
    const s0 =
      c +
      i * Math.log(q) +
      j * Math.log1p(-q) +
      (i * i - i) / s2 +
      Math.log(0.5) +
      logErfc((i - z0) / (Math.SQRT2 * sigma));
    const s1 =
      c +
      j * Math.log(q) +
      i * Math.log1p(-q) +
      (j * j - j) / s2 +
      Math.log(0.5) +
      logErfc((z0 - j) / (Math.SQRT2 * sigma));
    a0 = logAdd(a0, s0);
    a1 = logAdd(a1, s1);
    const total = logAdd(a0, a1);
    if (s0 < prev0 && s1 < prev1 && Math.max(s0, s1) < total - 30) return total;
    prev0 = s0;
    prev1 = s1;
  }
  return Infinity;
}

/** RDP of ONE step of the sampled Gaussian mechanism at order alpha. */
export function rdpSampledGaussian(q: number, noiseMultiplier: number, alpha: number): number {
  if (!(q >= 0 && q <= 1)) throw new Error(`sampling rate q must be in [0, 1], got ${q}`);
  if (!(noiseMultiplier >= 0)) throw new Error(`noise multiplier must be >= 0, got ${noiseMultiplier}`);
  if (!(alpha > 1)) throw new Error(`RDP order must be > 1, got ${alpha}`);
  if (q === 0) return 0;
  if (alpha === Infinity || noiseMultiplier === 0) return Infinity;
  if (q === 1) return alpha / (2 * noiseMultiplier * noiseMultiplier);
  const logA = Number.isInteger(alpha)
    ? logAInt(q, noiseMultiplier, alpha)
    : logAFrac(q, noiseMultiplier, alpha);
  return logA / (alpha - 1);
}

/** RDP of `steps` compositions at each order. */
export function computeRdp(
  q: number,
  noiseMultiplier: number,
  steps: number,
  orders: readonly number[] = DEFAULT_ORDERS,
): Float64Array {
  if (!(Number.isInteger(steps) && steps >= 0))
    throw new Error(`steps must be a non-negative integer, got ${steps}`);
  return Float64Array.from(orders, (a) => steps * rdpSampledGaussian(q, noiseMultiplier, a));
}

export interface EpsilonResult {
  epsilon: number;
  /** The order that gave the tightest bound. */
  order: number;
}

/**
 * (epsilon, delta) from RDP with the improved conversion of Balle et al. 2020 / Canonne-Kamath-Steinke:
 * eps = r + log1p(-1/a) - log(delta * a) / (a - 1), minimised over orders.
 */
export function rdpToEpsilon(
  orders: readonly number[],
  rdp: ArrayLike<number>,
  delta: number,
): EpsilonResult {
  if (orders.length !== rdp.length) throw new Error(`${orders.length} orders but ${rdp.length} RDP values`);
  if (!(delta > 0 && delta < 1)) throw new Error(`delta must be in (0, 1), got ${delta}`);
  let best: EpsilonResult = { epsilon: Infinity, order: NaN };
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k];
    const r = rdp[k];
    let eps: number;
    if (r < 0) eps = 0;
    else if (delta * delta + Math.expm1(-r) > 0) eps = 0;
    else if (a > 1.01) eps = r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1);
    else eps = Infinity;
    if (eps < best.epsilon) best = { epsilon: eps, order: a };
  }
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

/** Accumulates rounds that may differ in q and z (e.g. a changing population) and answers epsilon at any time. */
export class RdpAccountant {
  readonly sampling = SAMPLING_ASSUMPTION;
  private readonly rdp: Float64Array;

  constructor(readonly orders: readonly number[] = DEFAULT_ORDERS) {
    this.rdp = new Float64Array(orders.length);
  }

  compose(q: number, noiseMultiplier: number, steps = 1): this {
    const add = computeRdp(q, noiseMultiplier, steps, this.orders);
    for (let k = 0; k < add.length; k++) this.rdp[k] += add[k];
    return this;
  }

  clone(): RdpAccountant {
    const c = new RdpAccountant(this.orders);
    c.rdp.set(this.rdp);
    return c;
  }

  epsilon(delta: number): EpsilonResult {
    return rdpToEpsilon(this.orders, this.rdp, delta);
  }
}
