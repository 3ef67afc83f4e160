import { lgamma } from './special.ts';
import type { SecureRandom } from './secure-random.ts';

/**
 * Poisson(lambda) by multiplication for small lambda and PTRS (Hoermann 1993, transformed rejection with
 * squeeze) for lambda >= 10. Uniforms come from a CSPRNG; the sampler is exact up to float64 rounding.
 */
export function samplePoisson(lambda: number, rand: SecureRandom): number {
  if (!(lambda >= 0) || !Number.isFinite(lambda))
    throw new RangeError(`Poisson mean must be finite and >= 0, got ${lambda}`);
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
  const loglam = Math.log(lambda);
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
    if (
      Math.log(v) + Math.log(invAlpha) - Math.log(a / (us * us) + b) <=
      -lambda + k * loglam - lgamma(k + 1)
    )
      return k;
  }
}

/**
 * Symmetric Skellam noise with variance mu: Poisson(mu/2) - Poisson(mu/2). Integer-valued and closed
 * under summation (n clients with variance mu/n sum to exactly Skellam(mu)), so it survives the modular
 * arithmetic of secure aggregation, unlike continuous Gaussian noise.
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
  if (mu === 0) return;
  for (let i = from; i < to; i++) v[i] += sampleSkellam(mu, rand);
}
