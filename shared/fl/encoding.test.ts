import { describe, expect, it } from 'vitest';
import { l2Norm } from '../dp/clip.ts';
import { createSecureRandom } from '../dp/secure-random.ts';
import { MAX_POISSON_MEAN } from '../dp/skellam.ts';
import { addInto } from '../secagg/ring.ts';
import {
  aggregateBoundsOk,
  decodeAggregate,
  encodeContribution,
  integerSensitivity,
  LOSS_MAX,
  noiseNormBound,
  planEncoding,
  skellamTail,
  vectorLength,
  type EncodingPlan,
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

  it('stochastic rounding draws one 32-bit word a value: up iff word < frac * 2^32 (scripted words)', () => {
    const plan = { ...planEncoding(base), scale: 1, coordClip: 10 };
    const half = 2 ** (plan.bits - 1);
    const scripted = (words: number[]) => ({
      float: () => {
        throw new Error('stochastic rounding takes uint32 words');
      },
      uint32: () => words.shift()!,
    });
    // 0.25 and -1.75 (frac 0.25): the threshold is 2^30; integers never move, whatever the word.
    const v = Float32Array.from([0.25, 0.25, -1.75, -1.75, 2, 0]);
    const c = encodeContribution(v, 100, plan, scripted([2 ** 30 - 1, 2 ** 30, 0, 2 ** 32 - 1, 0, 0]));
    expect(Array.from(c.ring.subarray(0, 6), (x) => x - half)).toEqual([1, 0, -1, -2, 2, 0]);
  });

  it('clips to L2 norm C and reports the indicator; with adaptive clipping the indicator sum decodes', () => {
    const plan = { ...planEncoding({ ...base, clipNorm: 0.1, weighting: 'uniform' }), sendIndicator: true };
    const big = randomDelta(1000, 0.5);
    const small = randomDelta(1000, 0.001);
    const cb = encodeContribution(big, 1, plan, rand);
    const cs = encodeContribution(small, 1, plan, rand);
    expect(cb.indicator).toBe(-0.5);
    expect(cs.indicator).toBe(0.5);
    const acc = new Uint32Array(vectorLength(1000));
    addInto(acc, cb.ring);
    addInto(acc, cs.ring);
    expect(decodeAggregate(acc, 2, plan).indicatorSum).toBe(0);
    const twoBig = new Uint32Array(vectorLength(1000));
    addInto(twoBig, cb.ring);
    addInto(twoBig, cb.ring);
    expect(decodeAggregate(twoBig, 2, plan).indicatorSum).toBe(-1);
    // The big update arrives clipped to norm 0.1.
    const single = new Uint32Array(vectorLength(1000));
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
      numParams: 8000,
      maxClients: 10,
      clipNorm: 0.5,
      weighting: 'uniform',
      noise: { multiplier: 1.2, minSurvivors: 4, bitStd: 0 },
    };
    const plan = planEncoding(input);
    const n = 10;
    const zeros = Array.from({ length: n }, () => new Float32Array(8000));
    const { agg, clamped } = sumOf(zeros, new Array(n).fill(1), plan);
    expect(clamped).toBe(0);
    // Noise std on the SUM (in parameter units) must be z * sensitivity * sqrt(n / minSurvivors). With 8000
    // coordinates the estimate has relative s.e. 1/sqrt(2 * 8000) = 0.8%, so +-5% is a 6-sigma band.
    let s2 = 0;
    for (const x of agg.mean) s2 += (x * n) ** 2;
    const sdSum = Math.sqrt(s2 / 8000);
    const sens = integerSensitivity(plan, 8000) / plan.scale;
    const want = 1.2 * sens * Math.sqrt(n / 4);
    expect(sdSum / want).toBeGreaterThan(0.95);
    expect(sdSum / want).toBeLessThan(1.05);
    // Worst case input: every coordinate at the clip, plus noise, still fits.
    const worst = Array.from({ length: n }, () => new Float32Array(8000).fill(0.5));
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

describe('extra coordinates: weight, clip indicator, loss', () => {
  const d = 50;
  const small = { ...base, numParams: d };
  const dpInput: PlanInput = {
    ...small,
    clipNorm: 0.5,
    weighting: 'uniform',
    noise: { multiplier: 1, minSurvivors: 4, bitStd: 0 },
  };
  const offset = (plan: EncodingPlan) => 2 ** (plan.bits - 1);

  it('without adaptive clipping the indicator coordinate is exactly the offset, clipped or not', () => {
    for (const input of [{ ...small, clipNorm: 0.1 }, dpInput]) {
      const plan = planEncoding(input);
      expect(plan.sendIndicator).toBe(false);
      for (const delta of [randomDelta(d, 1), randomDelta(d, 1e-4)]) {
        const c = encodeContribution(delta, 1, plan, rand);
        expect(c.ring[d + 1]).toBe(offset(plan));
      }
      const acc = new Uint32Array(vectorLength(d));
      addInto(acc, encodeContribution(randomDelta(d, 1), 1, plan, rand).ring);
      expect(decodeAggregate(acc, 1, plan).indicatorSum).toBeNull();
    }
  });

  it('with adaptive clipping the indicator carries its noise', () => {
    const plan = planEncoding({ ...dpInput, noise: { multiplier: 1, minSurvivors: 4, bitStd: 2 } });
    expect(plan.sendIndicator).toBe(true);
    expect(plan.bitNoiseVariance).toBeCloseTo((2 * plan.bitScale) ** 2 / 4, 6);
    const values = new Set<number>();
    for (let k = 0; k < 20; k++)
      values.add(encodeContribution(randomDelta(d, 1e-4), 1, plan, rand).ring[d + 1]);
    // +1/2 * bitScale plus noise of std 1024: twenty draws do not all coincide.
    expect(values.size).toBeGreaterThan(1);
  });

  it('the loss travels only without DP, clipped to [0, LOSS_MAX]; the sum decodes to the mean loss', () => {
    const plan = planEncoding(small);
    expect(plan.lossScale).toBeGreaterThan(0);
    expect(LOSS_MAX * plan.lossScale).toBeLessThanOrEqual(offset(plan) - 1);
    const losses = [0.5, 2.25, 20, -1, NaN];
    const clipped = [0.5, 2.25, LOSS_MAX, 0, LOSS_MAX];
    const acc = new Uint32Array(vectorLength(d));
    for (const l of losses) addInto(acc, encodeContribution(randomDelta(d), 100, plan, rand, l).ring);
    const want = clipped.reduce((a, b) => a + b) / losses.length;
    expect(Math.abs(decodeAggregate(acc, losses.length, plan).meanLoss! - want)).toBeLessThan(
      1 / plan.lossScale,
    );
    // Under DP the loss would be an un-noised per-client statistic: the coordinate stays neutral.
    const dp = planEncoding(dpInput);
    expect(dp.lossScale).toBe(0);
    expect(encodeContribution(randomDelta(d), 1, dp, rand, 3.5).ring[d + 2]).toBe(offset(dp));
    const one = new Uint32Array(vectorLength(d));
    addInto(one, encodeContribution(randomDelta(d), 1, dp, rand, 3.5).ring);
    expect(decodeAggregate(one, 1, dp).meanLoss).toBeNull();
  });

  it('the example weight is numExamples / maxExamples clamped to [0, 1]', () => {
    const plan = planEncoding(small); // maxExamples 100
    const w = (examples: number) =>
      encodeContribution(randomDelta(d), examples, plan, rand).ring[d] - offset(plan);
    expect(w(50)).toBe(Math.round(0.5 * plan.weightScale));
    expect(w(100_000)).toBe(plan.weightScale);
    expect(w(-5)).toBe(0);
    expect(() => w(NaN)).toThrow(/finite/);
    expect(() => planEncoding({ ...small, maxExamples: 0 })).toThrow(/maxExamples/);
    // Uniform weighting ignores the count entirely.
    const uni = planEncoding({ ...small, weighting: 'uniform', maxExamples: 0 });
    expect(encodeContribution(randomDelta(d), 7, uni, rand).ring[d] - offset(uni)).toBe(uni.weightScale);
  });
});

describe('aggregate bounds (poisoning check on the decoded sum)', () => {
  const d = 400;
  const n = 8;
  const inputs: Record<string, PlanInput> = {
    'coordinate clip only, example weights': { ...base, numParams: d, maxClients: 10 },
    'L2 clip, example weights': { ...base, numParams: d, maxClients: 10, clipNorm: 0.2 },
    'DP with adaptive clipping': {
      ...base,
      numParams: d,
      maxClients: 10,
      clipNorm: 0.2,
      weighting: 'uniform',
      noise: { multiplier: 1, minSurvivors: 4, bitStd: 0.5 },
    },
    'DP without adaptive clipping': {
      ...base,
      numParams: d,
      maxClients: 10,
      clipNorm: 0.2,
      weighting: 'uniform',
      noise: { multiplier: 0.7, minSurvivors: 8, bitStd: 0 },
    },
  };

  /** Honest sum of k clients with the largest inputs they can send: one shared direction, past the clip. */
  function worstHonest(plan: EncodingPlan, k: number): Uint32Array {
    const acc = new Uint32Array(vectorLength(d));
    const v = new Float32Array(d).fill(plan.coordClip * 3);
    for (let i = 0; i < k; i++) addInto(acc, encodeContribution(v, 10_000, plan, rand, 100).ring);
    return acc;
  }

  function honest(plan: EncodingPlan, k: number): Uint32Array {
    const acc = new Uint32Array(vectorLength(d));
    for (let i = 0; i < k; i++)
      addInto(acc, encodeContribution(randomDelta(d, 0.3), 10 + i * 20, plan, rand, 1 + i / 4).ring);
    return acc;
  }

  const randomRing = () =>
    Uint32Array.from({ length: vectorLength(d) }, () => Math.floor(Math.random() * 2 ** 32));

  for (const [name, input] of Object.entries(inputs)) {
    it(`${name}: honest sums pass, also at the worst case`, () => {
      const plan = planEncoding(input);
      expect(aggregateBoundsOk(honest(plan, n), n, plan)).toEqual({ ok: true });
      expect(aggregateBoundsOk(worstHonest(plan, n), n, plan)).toEqual({ ok: true });
      expect(aggregateBoundsOk(worstHonest(plan, 1), 1, plan)).toEqual({ ok: true });
    });

    it(`${name}: n - 1 honest clients plus one random ring vector fail`, () => {
      const plan = planEncoding(input);
      for (let trial = 0; trial < 5; trial++) {
        const acc = honest(plan, n - 1);
        addInto(acc, randomRing());
        expect(aggregateBoundsOk(acc, n, plan).ok).toBe(false);
        // Also with the extra coordinates copied from an honest client: the parameters alone fail.
        const sneaky = honest(plan, n - 1);
        const evil = randomRing();
        evil.set(encodeContribution(randomDelta(d), 100, plan, rand, 1).ring.subarray(d), d);
        addInto(sneaky, evil);
        const r = aggregateBoundsOk(sneaky, n, plan);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(['norm', 'coordinate']).toContain(r.failure);
      }
    });
  }

  it('without noise the bound is tight: one client at twice the clip beside n - 1 clipped clients fails', () => {
    for (const input of [
      inputs['L2 clip, example weights'],
      inputs['coordinate clip only, example weights'],
    ]) {
      const plan = planEncoding(input);
      const acc = worstHonest(plan, n - 1);
      // Twice the largest honest vector, with an honest client's extra coordinates.
      const top = encodeContribution(
        new Float32Array(d).fill(plan.coordClip * 3),
        10_000,
        plan,
        rand,
        1,
      ).ring;
      const evil = top.slice();
      const off = 2 ** (plan.bits - 1);
      for (let i = 0; i < d; i++) evil[i] = off + 2 * (top[i] - off);
      addInto(acc, evil);
      const r = aggregateBoundsOk(acc, n, plan);
      expect(r.ok).toBe(false);
    }
  });

  it('a huge parameter vector with well-formed extra coordinates fails the norm check', () => {
    const plan = planEncoding(inputs['DP with adaptive clipping']);
    const half = 2 ** (plan.bits - 1);
    const acc = honest(plan, n - 1);
    // The adversary copies an honest client's extra coordinates and fills its ring width in every parameter:
    // the sum's coordinates stay within what n clients may send, the vector as a whole does not.
    const evil = encodeContribution(randomDelta(d, 0.01), 1, plan, rand).ring;
    for (let i = 0; i < d; i++) evil[i] = i % 2 ? 2 * half - 1 : 0;
    addInto(acc, evil);
    const r = aggregateBoundsOk(acc, n, plan);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.failure).toBe('norm');
  });

  it('one coordinate beyond the coordinate bound fails even when the norm passes', () => {
    const plan = planEncoding(inputs['coordinate clip only, example weights']);
    const acc = honest(plan, n - 1);
    const evil = encodeContribution(new Float32Array(d), 100, plan, rand).ring;
    // Sums of n clients decode into [-n half, n half); the ring's other values are out of reach for them.
    evil[3] = 3 * 2 ** 30;
    addInto(acc, evil);
    const r = aggregateBoundsOk(acc, n, plan);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.failure).toBe('coordinate');
  });

  it('names the extra coordinate that is out of bounds', () => {
    const failure = (plan: EncodingPlan, at: number, delta: number) => {
      const acc = honest(plan, n);
      acc[d + at] = (acc[d + at] + delta) >>> 0;
      const r = aggregateBoundsOk(acc, n, plan);
      return r.ok ? 'ok' : r.failure;
    };
    const ex = planEncoding(inputs['L2 clip, example weights']);
    const dp = planEncoding(inputs['DP without adaptive clipping']);
    expect(failure(ex, 0, n * ex.weightScale)).toBe('weight'); // sum of weights above n
    expect(failure(dp, 0, -1)).toBe('weight'); // uniform weights sum to exactly n
    expect(failure(dp, 1, 1)).toBe('indicator'); // not sent: must stay neutral
    expect(failure(dp, 2, 1)).toBe('loss'); // not sent under DP: must stay neutral
    expect(failure(ex, 2, n * LOSS_MAX * ex.lossScale + 1)).toBe('loss');
    expect(failure(ex, 1, 1)).toBe('indicator');
  });

  it('noise bounds: the Bernstein tail and the norm bound cover sampled Skellam noise', () => {
    expect(skellamTail(0, 40)).toBe(0);
    // Gaussian limit: about sqrt(2 * 40) sd for a large variance.
    expect(skellamTail(1e12, 40) / 1e6).toBeCloseTo(Math.sqrt(80), 2);
    expect(noiseNormBound(0, 100, 40)).toBe(0);
    // The bound sits above the expected norm sqrt(v d), and not absurdly far.
    const b = noiseNormBound(4, 10_000, 40);
    expect(b).toBeGreaterThan(2 * 100);
    expect(b).toBeLessThan(2 * 100 * 1.1);
  });
});
