import { computeRdp, DEFAULT_ORDERS, rdpToEpsilon } from './rdp.ts';

/** Epsilon after `steps` rounds of the sampled Gaussian with multiplier z at rate q. */
export function epsilonFor(q: number, z: number, steps: number, delta: number): number {
  if (steps === 0) return 0;
  return rdpToEpsilon(DEFAULT_ORDERS, computeRdp(q, z, steps, DEFAULT_ORDERS), delta).epsilon;
}

/**
 * The smallest noise multiplier (to 3 significant digits, rounded up) whose epsilon after `steps`
 * rounds stays within `targetEpsilon`. Epsilon falls monotonically in z, so bisection suffices.
 */
export function noiseForEpsilon(targetEpsilon: number, delta: number, q: number, steps: number): number {
  if (!(targetEpsilon > 0)) throw new RangeError('target epsilon must be > 0');
  if (!(steps >= 1)) throw new RangeError('steps must be >= 1');
  let lo = 0.01;
  let hi = 1;
  while (epsilonFor(q, hi, steps, delta) > targetEpsilon) {
    hi *= 2;
    if (hi > 1e6)
      throw new RangeError(`no noise multiplier reaches epsilon ${targetEpsilon} in ${steps} rounds`);
  }
  for (let i = 0; i < 60 && hi - lo > 1e-4 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (epsilonFor(q, mid, steps, delta) > targetEpsilon) lo = mid;
    else hi = mid;
  }
  const mag = 10 ** (Math.floor(Math.log10(hi)) - 2);
  return Math.ceil(hi / mag) * mag;
}
