import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSecureRandom, type SecureRandom } from './secure-random.ts';
import {
  addSkellamSumInPlace,
  logPoissonPmf,
  MAX_POISSON_MEAN,
  samplePoisson,
  sampleSkellam,
} from './skellam.ts';
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
    // uint32 reads the same stream a word at a time (RFC 8439 A.2 #1, bytes 8-15), a fresh copy from its start.
    expect([a.uint32(), a.uint32()]).toEqual([0xe56a5d40, 0x28bd8653]);
    expect(createSecureRandom(new Uint8Array(32)).uint32()).toBe(0xade0b876);
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

  it('refuses a negative or non-finite mean, and a mean above the 2^50 cap', () => {
    const r = createSecureRandom();
    expect(() => samplePoisson(-1, r)).toThrow();
    expect(() => samplePoisson(Infinity, r)).toThrow();
    expect(() => samplePoisson(MAX_POISSON_MEAN * (1 + 2 ** -52), r)).toThrow(RangeError);
    expect(() => sampleSkellam(2 * MAX_POISSON_MEAN * (1 + 2 ** -52), r)).toThrow(RangeError);
    expect(Number.isInteger(samplePoisson(MAX_POISSON_MEAN, r))).toBe(true);
    expect(Number.isInteger(sampleSkellam(2 * MAX_POISSON_MEAN, r))).toBe(true);
  });
});

describe('logPoissonPmf (Loader saddle point)', () => {
  // Reference: mpmath 1.3 at 60 digits of -lambda + k log(lambda) - loggamma(k + 1), e.g.
  // python3 -c 'from mpmath import *; mp.dps = 60; k = mpf(10**15 + 3*10**7); print(-10**15 + k*log(10**15) - loggamma(k+1))'.
  // The float64 direct form is off by 1.4 at (1e15 + 3e7, 1e15) and by 6.7 at (2^50 - 1e8, 2^50).
  it.each([
    [0, 10, -10],
    [10, 10, -2.078561643135058455],
    [3, 40, -30.725121106886246092],
    [1000100000, 1e9, -16.280454790927536675],
    [1e12, 1e12, -14.734449091169030179],
    [1e15 + 3e7, 1e15, -18.638326741160015298],
    [2 ** 50 - 1e8, 2 ** 50, -22.688510232771832131],
  ])('log P(K = %d | lambda = %d) matches the 60-digit value', (k, lambda, v) => {
    expect(Math.abs(logPoissonPmf(k, lambda) - v)).toBeLessThan(1e-13);
  });

  it('equals -lambda + k ln(lambda) - lgamma(k + 1) at moderate lambda (the PTRS test is unchanged there)', () => {
    for (const lambda of [10, 37.5, 100, 1e3, 1e4]) {
      const sd = Math.sqrt(lambda);
      for (let k = Math.max(0, Math.floor(lambda - 8 * sd)); k <= lambda + 8 * sd; k++) {
        const terms = [-lambda, k * Math.log(lambda), -lgamma(k + 1)];
        const direct = terms[0] + terms[1] + terms[2];
        // The direct form is good to about lgamma's relative error (~1e-15) times its largest term.
        const tol = 2e-15 * Math.max(...terms.map(Math.abs)) + 1e-14;
        expect(Math.abs(logPoissonPmf(k, lambda) - direct)).toBeLessThan(tol);
      }
    }
  });

  it('steps by ln(lambda / (k + 1)) between neighbours at the largest mean, as the Poisson recurrence says', () => {
    const lambda = MAX_POISSON_MEAN;
    for (const dk of [-3e8, -1e7, -1, 0, 5e6, 2e8]) {
      const k = lambda + dk;
      const step = logPoissonPmf(k + 1, lambda) - logPoissonPmf(k, lambda);
      expect(Math.abs(step - Math.log1p((lambda - k - 1) / (k + 1)))).toBeLessThan(1e-13);
    }
  });

  it('refuses a non-integer or negative k and a non-positive lambda', () => {
    expect(() => logPoissonPmf(1.5, 10)).toThrow(RangeError);
    expect(() => logPoissonPmf(-1, 10)).toThrow(RangeError);
    expect(() => logPoissonPmf(1, 0)).toThrow(RangeError);
  });
});

/**
 * Reproducible uniforms for the statistical tests only (never for real noise): sfc32 seeded through
 * splitmix32, as in shared/data/rng.ts, but with 53-bit floats like SecureRandom and its state in a
 * Uint32Array; closure variables holding uint32 values get boxed, which made the 3e8 draws below 6x slower.
 */
function seededRandom(seed: number): SecureRandom {
  const st = new Uint32Array(4);
  let x = seed >>> 0;
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    st[i] = z ^ (z >>> 16);
  }
  const u32 = (): number => {
    const a = st[0];
    const b = st[1];
    const c = st[2];
    const d = st[3];
    const t = (a + b + d) >>> 0;
    st[3] = d + 1;
    st[0] = b ^ (b >>> 9);
    st[1] = c + (c << 3);
    st[2] = ((c << 21) | (c >>> 11)) + t;
    return t;
  };
  for (let i = 0; i < 12; i++) u32();
  return { float: () => ((u32() >>> 5) * 67108864 + (u32() >>> 6)) / 9007199254740992, uint32: u32 };
}

describe('Skellam at the means the encoding uses (seeded, reproducible)', () => {
  // Skellam(mu) with mu = 2 lambda has mean 0, variance mu and excess kurtosis kappa4 / kappa2^2 = 1/mu
  // (both cumulants are 2 lambda). With N = 2.4e7 draws the relative standard error of the sample variance is
  // sqrt((2 + 1/mu) / N) = 2.89e-4, so the 0.1% band is 3.5 standard errors; the sample excess kurtosis has
  // standard error sqrt(24 / N) = 1e-3 (near-normal data) and its band is 4 of those; the mean's is
  // sqrt(mu / N), band 4 of those. The old sampler missed by 26 SE (variance) at 1e14 and by 300 SE at 2^50.
  const N = 24_000_000;
  const KURT_BAND = 4 * Math.sqrt(24 / N);
  it.each([
    ['1e9', 1e9, 1],
    ['1e12', 1e12, 2],
    ['1e14', 1e14, 3],
    ['2^50, the cap and the largest the encoding produces', MAX_POISSON_MEAN, 4],
  ])('lambda = %s per Poisson: mean 0, variance mu within 1e-3, excess kurtosis 1/mu', (_, lambda, seed) => {
    const mu = 2 * lambda;
    const r = seededRandom(seed);
    const sd = Math.sqrt(mu);
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let s4 = 0;
    for (let i = 0; i < N; i++) {
      const z = sampleSkellam(mu, r) / sd;
      const z2 = z * z;
      s1 += z;
      s2 += z2;
      s3 += z2 * z;
      s4 += z2 * z2;
    }
    const m = s1 / N;
    const m2 = s2 / N - m * m;
    const m4 = s4 / N - 4 * m * (s3 / N) + 6 * m * m * (s2 / N) - 3 * m ** 4;
    expect(Math.abs(m)).toBeLessThan(4 / Math.sqrt(N));
    expect(Math.abs((m2 * N) / (N - 1) - 1)).toBeLessThan(1e-3);
    expect(Math.abs(m4 / (m2 * m2) - 3 - 1 / mu)).toBeLessThan(KURT_BAND);
  });

  it.each([
    [1e9, 5],
    [1e12, 6],
    [1e14, 7],
    [MAX_POISSON_MEAN, 8],
  ])('Poisson(%d) has mean lambda (4 standard errors)', (lambda, seed) => {
    const n = 2 ** 22;
    const r = seededRandom(seed);
    let s = 0;
    for (let i = 0; i < n; i++) s += samplePoisson(lambda, r) - lambda;
    expect(Math.abs(s / n)).toBeLessThan(4 * Math.sqrt(lambda / n));
  });
});

describe("addSkellamSumInPlace: one draw for the sum of many clients' noise", () => {
  it.each([
    ['small variance, one draw', 1e4, 500],
    ["at the encoding's scale (1e14 per client), 500 clients: ~23 per draw", 2e14, 500],
    ['at the cap: one client per draw', 2 * MAX_POISSON_MEAN, 7],
  ])('%s: mean 0, variance count * mu, integers', (_, mu, count) => {
    const r = createSecureRandom();
    const v = new Float64Array(40_000).fill(3);
    addSkellamSumInPlace(v, mu, count, r, 0, v.length);
    const xs = Array.from(v, (x) => x - 3);
    const m = moments(xs);
    const want = mu * count;
    expect(xs.every(Number.isInteger)).toBe(true);
    expect(Math.abs(m.mean)).toBeLessThan(5 * Math.sqrt(want / xs.length));
    // Relative SE of a sample variance of N near-normal draws is sqrt(2 / N) = 0.7%: a 3.5% band is 5 SE.
    expect(m.variance / want).toBeGreaterThan(0.965);
    expect(m.variance / want).toBeLessThan(1.035);
  });

  it('touches only [from, to); nothing for count 0 or variance 0; refuses a bad count or variance', () => {
    const r = createSecureRandom();
    const v = new Float64Array(10);
    addSkellamSumInPlace(v, 1e6, 100, r, 3, 6);
    expect([...v.subarray(0, 3), ...v.subarray(6)].every((x) => x === 0)).toBe(true);
    expect(v.subarray(3, 6).some((x) => x !== 0)).toBe(true);
    const w = new Float64Array(4);
    addSkellamSumInPlace(w, 1e6, 0, r);
    addSkellamSumInPlace(w, 0, 10, r);
    expect([...w]).toEqual([0, 0, 0, 0]);
    expect(() => addSkellamSumInPlace(w, 1e6, 1.5, r)).toThrow(RangeError);
    expect(() => addSkellamSumInPlace(w, 4 * MAX_POISSON_MEAN, 1, r)).toThrow(RangeError);
  });
});
