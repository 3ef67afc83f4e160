import { bd0, stirlerr } from './special.ts';
import type { SecureRandom } from './secure-random.ts';

/*
 * Why the log-pmf below, and the cap (precision at large means). The encoding picks the largest fixed-point
 * scale that fits the ring, so each client's Poisson mean lands around 1e11..1e16. An absolute error d in
 * PTRS's log p(k) scales that k's acceptance probability by e^d, but the textbook -lambda + k ln(lambda) -
 * lgamma(k + 1) is a difference of terms near 3e16 whose rounding alone is several units: the old sampler's
 * Skellam variance was +0.8% off at lambda = 1e14, +9% at 2^50 and +21% at 1.6e15, with excess kurtosis
 * 0.01 / 0.6 / 0.8 instead of ~0. The acceptance test now uses Loader's saddle-point form (logPoissonPmf), a
 * sum of small terms, and lambda is capped at MAX_POISSON_MEAN = 2^50 (RangeError beyond; planEncoding sizes
 * its scale to stay below it).
 */

/**
 * Largest Poisson mean a single draw accepts: 2^50. Below it doubles near lambda are spaced <= 1/4 apart, so
 * the PTRS count floor(x + lambda + 0.43) is an exact integer with its fractional offset still resolved, and
 * k - lambda is exact; toward 2^53 neither holds.
 */
export const MAX_POISSON_MEAN = 2 ** 50;

/**
 * ln P(K = k) for K ~ Poisson(lambda), integer k >= 0, lambda > 0, as -stirlerr(k) - bd0(k, lambda) - ln(2 pi
 * k)/2. Algebraically equal to -lambda + k ln(lambda) - ln(k!) (expand ln k! = k ln k - k + ln(2 pi k)/2 +
 * stirlerr(k)), but every term is small near the mode, so it is good to ~1e-14 absolute even at lambda =
 * 2^50.
 */
export function logPoissonPmf(k: number, lambda: number): number {
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`k must be an integer >= 0, got ${k}`);
  if (!(lambda > 0) || lambda === Infinity)
    throw new RangeError(`lambda must be finite and > 0, got ${lambda}`);
  if (k === 0) return -lambda;
  return -stirlerr(k) - bd0(k, lambda) - 0.5 * Math.log(2 * Math.PI * k);
}

/**
 * Poisson(lambda) by multiplication for small lambda and PTRS (Hoermann 1993, transformed rejection with
 * squeeze) for lambda >= 10, up to MAX_POISSON_MEAN. Uniforms come from a CSPRNG; the sampler is exact up to
 * float64 rounding.
 */
export function samplePoisson(lambda: number, rand: SecureRandom): number {
  if (!(lambda >= 0) || !Number.isFinite(lambda))
    throw new RangeError(`Poisson mean must be finite and >= 0, got ${lambda}`);
  if (lambda > MAX_POISSON_MEAN)
    throw new RangeError(`Poisson mean ${lambda} exceeds the sampler's cap 2^50 (float64 precision)`);
  if (lambda === 0) return 0;
  if (lambda < 10) {
    const limit = Math.exp(-lambda);
    let k = 0;
    let prod = rand.float();
    while (prod > limit) {
      k++;
      prod *= rand.float();
    }
    return k;
  }
  const slam = Math.sqrt(lambda);
  const b = 0.931 + 2.53 * slam;
  const a = -0.059 + 0.02483 * b;
  const invAlpha = 1.1239 + 1.1328 / (b - 3.4);
  const vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const u = rand.float() - 0.5;
    const v = rand.float();
    const us = 0.5 - Math.abs(u);
    const k = Math.floor(((2 * a) / us + b) * u + lambda + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    // Hoermann's inequality log v + log invAlpha - log(a/us^2 + b) <= log p(k), with log p(k) computed
    // stably.
    if (Math.log(v) + Math.log(invAlpha) - Math.log(a / (us * us) + b) <= logPoissonPmf(k, lambda)) return k;
  }
}

/**
 * Symmetric Skellam noise with variance mu <= 2 MAX_POISSON_MEAN: Poisson(mu/2) - Poisson(mu/2).
 * Integer-valued and closed under summation (n clients with variance mu/n sum to exactly Skellam(mu)), so it
 * survives the modular arithmetic of secure aggregation, unlike continuous Gaussian noise.
 */
export function sampleSkellam(mu: number, rand: SecureRandom): number {
  if (mu === 0) return 0;
  return samplePoisson(mu / 2, rand) - samplePoisson(mu / 2, rand);
}

/** Adds Skellam(mu) noise to every entry of v (integers stored in a Float64Array). */
export function addSkellamInPlace(
  v: Float64Array,
  mu: number,
  rand: SecureRandom,
  from = 0,
  to = v.length,
): void {
  addSkellamSumInPlace(v, mu, 1, rand, from, to);
}

/**
 * Adds to every entry of v the sum of `count` independent Skellam(mu) draws, drawn as few Skellams as the
 * sampler's cap allows: a sum of independent Skellams is Skellam with the summed variance (Poisson means
 * add), so the result has exactly the distribution of `count` clients each adding Skellam(mu). The
 * simulator uses it to draw a round's noise once for the sum instead of once per client (the same sum, in
 * distribution; each client's share of it costs ~1e6 uniforms at 137 000 parameters).
 */
export function addSkellamSumInPlace(
  v: Float64Array,
  mu: number,
  count: number,
  rand: SecureRandom,
  from = 0,
  to = v.length,
): void {
  if (!Number.isInteger(count) || count < 0)
    throw new RangeError(`count must be a whole number, got ${count}`);
  if (!(mu >= 0) || mu > 2 * MAX_POISSON_MEAN)
    throw new RangeError(`Skellam variance must be in [0, 2^51], got ${mu}`);
  if (mu === 0 || count === 0) return;
  // Clients per draw: as many as keep the draw's Poisson means mu * c / 2 within the cap.
  const per = Math.max(1, Math.min(count, Math.floor((2 * MAX_POISSON_MEAN) / mu)));
  const full = Math.floor(count / per);
  const rest = count - full * per;
  for (let i = from; i < to; i++) {
    let x = 0;
    for (let j = 0; j < full; j++) x += sampleSkellam(mu * per, rand);
    if (rest) x += sampleSkellam(mu * rest, rand);
    v[i] += x;
  }
}
