import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSecureRandom } from './secure-random.ts';
import { samplePoisson, sampleSkellam } from './skellam.ts';
import { lgamma } from './special.ts';

afterEach(() => vi.restoreAllMocks());

function moments(xs: number[]): { mean: number; variance: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean, variance: xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1) };
}

/** Chi-square of samples against a pmf over the bins [lo, hi] with both tails folded into the end bins. */
function chiSquare(
  samples: number[],
  pmf: (k: number) => number,
  lo: number,
  hi: number,
): { stat: number; dof: number } {
  const obs = new Map<number, number>();
  for (const s of samples) {
    const k = Math.min(hi, Math.max(lo, s));
    obs.set(k, (obs.get(k) ?? 0) + 1);
  }
  let stat = 0;
  let below = 0;
  for (let k = lo - 200; k < lo; k++) below += pmf(k);
  let above = 1;
  for (let k = lo - 200; k <= hi - 1; k++) above -= pmf(k);
  for (let k = lo; k <= hi; k++) {
    const p = k === lo ? pmf(k) + below : k === hi ? Math.max(0, above) : pmf(k);
    const e = p * samples.length;
    stat += ((obs.get(k) ?? 0) - e) ** 2 / e;
  }
  return { stat, dof: hi - lo };
}

const poissonPmf = (lambda: number) => (k: number) =>
  k < 0 ? 0 : Math.exp(-lambda + k * Math.log(lambda) - lgamma(k + 1));

describe('secure random', () => {
  it('is uniform on [0,1) (mean, variance, never 1) and differs between instances', () => {
    const r = createSecureRandom();
    const xs = Array.from({ length: 200_000 }, () => r.float());
    const m = moments(xs);
    expect(Math.abs(m.mean - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(m.variance - 1 / 12)).toBeLessThan(0.002);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(createSecureRandom().float()).not.toBe(createSecureRandom().float());
  });
  it('is reproducible from a seed (known-answer check of the ChaCha20 expansion)', () => {
    const a = createSecureRandom(new Uint8Array(32));
    // First keystream words of ChaCha20(key 0, nonce 0): 0xade0b876, 0x903df1a0 -> (hi 27 bits, lo 26 bits)
    expect(a.float()).toBe(((0xade0b876 >>> 5) * 67108864 + (0x903df1a0 >>> 6)) / 2 ** 53);
  });
});

describe('Poisson and Skellam samplers (CSPRNG, never Math.random)', () => {
  it('never call Math.random', () => {
    const spy = vi.spyOn(Math, 'random');
    const r = createSecureRandom();
    for (let i = 0; i < 1000; i++) sampleSkellam(i % 2 ? 3 : 5000, r);
    expect(spy).not.toHaveBeenCalled();
  });

  it.each([0.5, 3, 9.5, 10, 40, 250])('Poisson(%s) matches its pmf (chi-square, p = 1e-6)', (lambda) => {
    const r = createSecureRandom();
    const xs = Array.from({ length: 60_000 }, () => samplePoisson(lambda, r));
    const sd = Math.sqrt(lambda);
    const lo = Math.max(0, Math.floor(lambda - 3 * sd));
    const hi = Math.ceil(lambda + 3 * sd) + 1;
    const { stat, dof } = chiSquare(xs, poissonPmf(lambda), lo, hi);
    // Wilson-Hilferty bound for the chi-square quantile at p = 1e-6.
    const crit = dof * (1 - 2 / (9 * dof) + 4.753 * Math.sqrt(2 / (9 * dof))) ** 3;
    expect(stat).toBeLessThan(crit);
  });

  it.each([2, 1e4, 1e8])('Skellam(mu = %s) has mean 0 and variance mu', (mu) => {
    const r = createSecureRandom();
    const xs = Array.from({ length: 100_000 }, () => sampleSkellam(mu, r));
    const m = moments(xs);
    expect(xs.every(Number.isInteger)).toBe(true);
    expect(Math.abs(m.mean)).toBeLessThan(5 * Math.sqrt(mu / xs.length));
    expect(m.variance / mu).toBeGreaterThan(0.98);
    expect(m.variance / mu).toBeLessThan(1.02);
  });

  it('refuses a negative or non-finite mean', () => {
    const r = createSecureRandom();
    expect(() => samplePoisson(-1, r)).toThrow();
    expect(() => samplePoisson(Infinity, r)).toThrow();
  });
});
