import { describe, expect, it } from 'vitest';
import { l2Norm } from '../dp/clip.ts';
import { createSecureRandom } from '../dp/secure-random.ts';
import { MAX_POISSON_MEAN } from '../dp/skellam.ts';
import { addInto } from '../secagg/ring.ts';
import {
  decodeAggregate,
  encodeContribution,
  integerSensitivity,
  planEncoding,
  vectorLength,
  type PlanInput,
} from './encoding.ts';

const rand = createSecureRandom();
const base: PlanInput = {
  numParams: 1000,
  maxClients: 10,
  clipNorm: null,
  coordClip: 0.5,
  weighting: 'examples',
  maxExamples: 100,
  noise: null,
};

function sumOf(deltas: Float32Array[], examples: number[], plan = planEncoding(base)) {
  const acc = new Uint32Array(vectorLength(deltas[0].length));
  let clamped = 0;
  deltas.forEach((d, i) => {
    const c = encodeContribution(d, examples[i], plan, rand);
    clamped += c.clamped;
    addInto(acc, c.ring);
  });
  return { agg: decodeAggregate(acc, deltas.length, plan), plan, clamped };
}

const randomDelta = (d: number, s = 0.05) =>
  Float32Array.from({ length: d }, () => (Math.random() - 0.5) * 2 * s);

describe('update encoding into the ring', () => {
  it('weighted mean of decoded contributions = FedAvg mean, to within the fixed-point step', () => {
    const deltas = [randomDelta(1000), randomDelta(1000), randomDelta(1000)];
    const examples = [10, 50, 100];
    const { agg, plan } = sumOf(deltas, examples);
    const w = examples.map((e) => e / 100);
    const W = w.reduce((a, b) => a + b);
    expect(agg.weightSum).toBeCloseTo(W, 6);
    for (let i = 0; i < 1000; i++) {
      const exact = deltas.reduce((s, d, k) => s + w[k] * d[i], 0) / W;
      expect(Math.abs(agg.mean[i] - exact)).toBeLessThan(3 / (plan.scale * W) + 1e-7);
    }
  });

  it('stochastic rounding is unbiased: the mean of many encodings of 0.3 steps converges to 0.3 steps', () => {
    const plan = { ...planEncoding(base), scale: 1 }; // one step = 1.0: rounding error is as large as it gets
    const v = new Float32Array(1000).fill(0.3);
    let total = 0;
    for (let r = 0; r < 20; r++) {
      const c = encodeContribution(v, 100, plan, rand);
      for (let i = 0; i < 1000; i++) total += c.ring[i] - 2 ** (plan.bits - 1);
    }
    expect(total / 20_000).toBeGreaterThan(0.28);
    expect(total / 20_000).toBeLessThan(0.32);
  });

  it('clips to L2 norm C and reports the indicator; the indicator sum decodes', () => {
    const plan = planEncoding({ ...base, clipNorm: 0.1, weighting: 'uniform' });
    const big = randomDelta(1000, 0.5);
    const small = randomDelta(1000, 0.001);
    const cb = encodeContribution(big, 1, plan, rand);
    const cs = encodeContribution(small, 1, plan, rand);
    expect(cb.indicator).toBe(-0.5);
    expect(cs.indicator).toBe(0.5);
    const acc = new Uint32Array(1002);
    addInto(acc, cb.ring);
    addInto(acc, cs.ring);
    const agg = decodeAggregate(acc, 2, plan);
    expect(agg.indicatorSum).toBe(0);
    // The big update arrives clipped to norm 0.1.
    const single = new Uint32Array(1002);
    addInto(single, cb.ring);
    expect(l2Norm(decodeAggregate(single, 1, plan).mean)).toBeCloseTo(0.1, 3);
  });

  it('coordinates beyond the coordinate clip are clipped, not wrapped', () => {
    const v = new Float32Array(1000);
    v[0] = 3;
    v[1] = -3;
    const { agg } = sumOf([v], [100]);
    expect(agg.mean[0]).toBeCloseTo(0.5, 5);
    expect(agg.mean[1]).toBeCloseTo(-0.5, 5);
  });

  it('with DP noise: the decoded sum carries the planned noise; nothing is clamped at the largest cohort', () => {
    const input: PlanInput = {
      ...base,
      numParams: 2000,
      maxClients: 10,
      clipNorm: 0.5,
      weighting: 'uniform',
      noise: { multiplier: 1.2, minSurvivors: 4, bitStd: 0 },
    };
    const plan = planEncoding(input);
    const n = 10;
    const zeros = Array.from({ length: n }, () => new Float32Array(2000));
    const { agg, clamped } = sumOf(zeros, new Array(n).fill(1), plan);
    expect(clamped).toBe(0);
    // Noise std on the SUM (in parameter units) must be z * sensitivity * sqrt(n / minSurvivors).
    let s2 = 0;
    for (const x of agg.mean) s2 += (x * n) ** 2;
    const sdSum = Math.sqrt(s2 / 2000);
    const sens = integerSensitivity(plan, 2000) / plan.scale;
    const want = 1.2 * sens * Math.sqrt(n / 4);
    expect(sdSum / want).toBeGreaterThan(0.95);
    expect(sdSum / want).toBeLessThan(1.05);
    // Worst case input: every coordinate at the clip, plus noise, still fits.
    const worst = Array.from({ length: n }, () => new Float32Array(2000).fill(0.5));
    expect(sumOf(worst, new Array(n).fill(1), plan).clamped).toBe(0);
  });

  it('refuses DP with example weights, DP without an L2 clip, and a ring too narrow for the noise', () => {
    expect(() =>
      planEncoding({ ...base, clipNorm: 1, noise: { multiplier: 1, minSurvivors: 2, bitStd: 0 } }),
    ).toThrow(/uniform/);
    expect(() =>
      planEncoding({ ...base, weighting: 'uniform', noise: { multiplier: 1, minSurvivors: 2, bitStd: 0 } }),
    ).toThrow(/clip/);
    expect(() =>
      planEncoding({
        ...base,
        numParams: 1e12,
        maxClients: 2 ** 28,
        clipNorm: 1,
        weighting: 'uniform',
        noise: { multiplier: 10, minSurvivors: 1, bitStd: 0 },
      }),
    ).toThrow(/cannot hold/);
  });

  describe('the Skellam noise stays within the sampler cap (Poisson mean <= 2^50 per draw)', () => {
    const MAX_STD = Math.sqrt(2 * MAX_POISSON_MEAN);
    /** Does scale s fit the ring (values + 8 sd noise tails) and the sampler cap, for this input? */
    function fits(input: PlanInput, s: number): { ring: boolean; cap: boolean } {
      const n = input.noise!;
      const f = n.multiplier / Math.sqrt(n.minSurvivors);
      const c = input.clipNorm!;
      const half = 2 ** (planEncoding(input).bits - 1);
      const std = f * (s * c + Math.sqrt(input.numParams));
      return {
        ring: s * Math.min(input.coordClip, c) + 1 + 8 * std <= half - 1,
        cap: (std * std) / 2 <= MAX_POISSON_MEAN,
      };
    }

    it('keeps every plan within the cap, and its scale the largest that fits ring and cap (property sweep)', () => {
      let plans = 0;
      let capBound = 0;
      for (const maxClients of [1, 2, 3, 4, 5, 16, 100, 1000])
        for (const clipNorm of [1e-6, 1e-3, 0.1, 1, 10])
          for (const numParams of [1, 1000, 1e6])
            for (const multiplier of [0.3, 1, 4, 20])
              for (const minSurvivors of [1, 3]) {
                const input: PlanInput = {
                  ...base,
                  numParams,
                  maxClients,
                  clipNorm,
                  coordClip: 1,
                  weighting: 'uniform',
                  noise: { multiplier, minSurvivors, bitStd: 1 },
                };
                let plan;
                try {
                  plan = planEncoding(input);
                } catch (e) {
                  expect(String(e)).toMatch(/cannot hold/); // the ring is too narrow: nothing to check
                  continue;
                }
                plans++;
                expect(plan.noiseVariance / 2).toBeLessThanOrEqual(MAX_POISSON_MEAN);
                expect(plan.bitNoiseVariance / 2).toBeLessThanOrEqual(MAX_POISSON_MEAN);
                const now = fits(input, plan.scale);
                expect(now.ring && now.cap).toBe(true);
                // Largest: a slightly larger scale breaks one of them. The planner aims 2^-40 below the cap
                // so rounding cannot cross it, which costs at most 1 + 2^-40 MAX_STD / (f C) scale units.
                const f = multiplier / Math.sqrt(minSurvivors);
                const slack = 2 + Math.ceil((2 ** -39 * MAX_STD) / (f * clipNorm));
                const next = fits(input, plan.scale + slack);
                expect(next.ring && next.cap).toBe(false);
                if (next.ring) capBound++;
              }
      expect(plans).toBeGreaterThan(500);
      expect(capBound).toBeGreaterThan(20); // the cap does bind somewhere in the sweep
    });

    it('the largest plan (1 client, tiny clip, minimum survivors) sits at the cap and encodes without clamping', () => {
      const input: PlanInput = {
        ...base,
        numParams: 1,
        maxClients: 1,
        clipNorm: 1e-6,
        coordClip: 1,
        weighting: 'uniform',
        noise: { multiplier: 0.3, minSurvivors: 1, bitStd: 0 },
      };
      const plan = planEncoding(input);
      expect(plan.noiseVariance / 2).toBeLessThanOrEqual(MAX_POISSON_MEAN);
      expect(plan.noiseVariance / 2).toBeGreaterThan(MAX_POISSON_MEAN * (1 - 1e-9));
      // The ring alone would take a scale 4x larger (lambda ~1.8e16, as before the cap).
      expect(fits(input, 3.9 * plan.scale).ring).toBe(true);
      let clamped = 0;
      for (let i = 0; i < 200; i++) {
        const c = encodeContribution(Float32Array.of(i % 2 ? 1e-6 : -1e-6), 1, plan, rand);
        clamped += c.clamped;
        expect(Number.isFinite(decodeAggregate(c.ring, 1, plan).mean[0])).toBe(true);
      }
      expect(clamped).toBe(0);
    });

    it('refuses noise that the cap cannot hold even at scale 1', () => {
      expect(() =>
        planEncoding({
          ...base,
          // Rounding alone adds std f sqrt(d) = 1e8 > 2^25.5 per client; the ring would hold it.
          numParams: 1e12,
          maxClients: 1,
          clipNorm: 1,
          weighting: 'uniform',
          noise: { multiplier: 100, minSurvivors: 1, bitStd: 0 },
        }),
      ).toThrow(/cap/);
      expect(() =>
        planEncoding({
          ...base,
          maxClients: 1,
          clipNorm: 1,
          weighting: 'uniform',
          noise: { multiplier: 1, minSurvivors: 1, bitStd: 1e5 },
        }),
      ).toThrow(/cap/);
    });
  });
});
