import { describe, expect, it } from 'vitest';
import { l2Norm } from '../dp/clip.ts';
import { createSecureRandom } from '../dp/secure-random.ts';
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
});
