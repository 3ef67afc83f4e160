import { clipL2InPlace } from '../dp/clip.ts';
import type { SecureRandom } from '../dp/secure-random.ts';
import { addSkellamInPlace, MAX_POISSON_MEAN } from '../dp/skellam.ts';
import { checkNoOverflow, decodeRingSum, encodeRing, ringBits } from '../secagg/ring.ts';

/**
 * How a client turns its model delta into a vector of the ring Z_{2^32}, and how the server turns the
 * sum back. The layout is [numParams parameters][weight][clip indicator]:
 * - parameters: L2 clip to C (DP), clip each coordinate to +-coordClip, scale by `scale`, unbiased
 *   stochastic rounding, add Skellam noise (DP), clamp + offset into [0, 2^bits);
 * - weight u in [0, 1] (examples / maxExamples, or 1 under DP), so the server can divide sum(u x) by sum(u);
 * - clip indicator b = 1[||delta|| <= C] - 1/2 with its own noise, for adaptive clipping.
 * The server builds the plan each round and sends it with round:start.
 */
export interface EncodingPlan {
  bits: number;
  scale: number;
  weightScale: number;
  bitScale: number;
  /** L2 clip C; null = no L2 clipping (only the coordinate clip). */
  clipNorm: number | null;
  coordClip: number;
  weighting: 'examples' | 'uniform';
  maxExamples: number;
  /** Skellam variance each client adds to every parameter / to the indicator, in integer units. */
  noiseVariance: number;
  bitNoiseVariance: number;
}

export interface NoiseInput {
  /** Noise multiplier for the parameters' SUM (std / L2 sensitivity). */
  multiplier: number;
  /** The fewest survivors for which a round is accepted: each client adds 1/minSurvivors of the variance. */
  minSurvivors: number;
  /** Std of the noise on the sum of indicators (sigma_b); 0 without adaptive clipping. */
  bitStd: number;
}

export interface PlanInput {
  numParams: number;
  maxClients: number;
  clipNorm: number | null;
  coordClip: number;
  weighting: 'examples' | 'uniform';
  maxExamples: number;
  noise: NoiseInput | null;
}

/** Noise more than this many standard deviations out is clamped (probability ~1e-15 per value). */
const TAIL_SD = 8;
const BIT_SCALE = 1024;

export const vectorLength = (numParams: number): number => numParams + 2;

/** L2 sensitivity of one client's integer vector: ||round(s x)|| <= s C + sqrt(d) (rounding moves each value < 1). */
export function integerSensitivity(
  plan: Pick<EncodingPlan, 'scale' | 'clipNorm' | 'coordClip'>,
  numParams: number,
): number {
  const c = plan.clipNorm ?? plan.coordClip * Math.sqrt(numParams);
  return plan.scale * c + Math.sqrt(numParams);
}

/** Largest per-client Skellam std: variance 2 lambda, each Poisson mean lambda at the sampler's cap. */
const MAX_NOISE_STD = Math.sqrt(2 * MAX_POISSON_MEAN);

/**
 * Picks the largest fixed-point scale whose values, plus noise tails, fit the per-client ring width and whose
 * noise stays within the Skellam sampler's range (MAX_POISSON_MEAN per Poisson draw).
 */
export function planEncoding(p: PlanInput): EncodingPlan {
  if (p.clipNorm !== null && !(p.clipNorm > 0)) throw new RangeError('clipNorm must be > 0');
  if (!(p.coordClip > 0)) throw new RangeError('coordClip must be > 0');
  if (p.noise && p.noise.multiplier > 0 && p.weighting !== 'uniform') {
    throw new RangeError('DP needs uniform client weights (the sum of example counts would leak unnoised)');
  }
  const bits = ringBits(p.maxClients);
  const half = 2 ** (bits - 1);
  const d = p.numParams;
  let scale: number;
  let noiseVariance = 0;
  let bitNoiseVariance = 0;
  const coord = p.clipNorm === null ? p.coordClip : Math.min(p.coordClip, p.clipNorm);
  if (p.noise && p.noise.multiplier > 0) {
    if (p.clipNorm === null) throw new RangeError('DP noise needs an L2 clip norm');
    const f = p.noise.multiplier / Math.sqrt(p.noise.minSurvivors); // per-client std / sensitivity
    // s*coord + 1 + TAIL_SD * f * (s*C + sqrt(d)) <= half - 1
    scale = Math.floor((half - 2 - TAIL_SD * f * Math.sqrt(d)) / (coord + TAIL_SD * f * p.clipNorm));
    if (!(scale >= 1))
      throw new RangeError(
        `a ${bits}-bit ring per client cannot hold ${d} parameters with noise multiplier ${p.noise.multiplier}; lower the cohort size`,
      );
    // Per-client std f (s C + sqrt(d)) <= MAX_NOISE_STD; wide rings (<= 4 clients) would otherwise exceed it.
    const clipNorm = p.clipNorm;
    const std = (s: number): number => f * (s * clipNorm + Math.sqrt(d));
    // The target is shrunk by 2^-40 so rounding cannot carry std(scale) past the cap; the loop is a backstop.
    scale = Math.min(scale, Math.floor(((MAX_NOISE_STD * (1 - 2 ** -40)) / f - Math.sqrt(d)) / clipNorm));
    while (scale >= 1 && std(scale) ** 2 / 2 > MAX_POISSON_MEAN)
      scale -= Math.max(1, Math.ceil(scale * 2 ** -40));
    if (!(scale >= 1))
      throw new RangeError(
        `noise multiplier ${p.noise.multiplier} with ${d} parameters needs more Skellam noise per client than the sampler's cap allows`,
      );
    noiseVariance = std(scale) ** 2;
  } else {
    scale = Math.floor((half - 2) / coord);
  }
  if (p.noise && p.noise.bitStd > 0)
    bitNoiseVariance = (p.noise.bitStd * BIT_SCALE) ** 2 / p.noise.minSurvivors;
  if (BIT_SCALE / 2 + TAIL_SD * Math.sqrt(bitNoiseVariance) > half - 1)
    throw new RangeError('ring too narrow for the clip indicator noise');
  if (bitNoiseVariance / 2 > MAX_POISSON_MEAN)
    throw new RangeError('clip indicator noise exceeds the Skellam sampler cap');
  return {
    bits,
    scale,
    weightScale: half - 1,
    bitScale: BIT_SCALE,
    clipNorm: p.clipNorm,
    coordClip: p.coordClip,
    weighting: p.weighting,
    maxExamples: p.maxExamples,
    noiseVariance,
    bitNoiseVariance,
  };
}

export interface Contribution {
  ring: Uint32Array;
  /** L2 norm of the delta before clipping. */
  norm: number;
  /** The adaptive-clipping indicator before noise: +1/2 if ||delta|| <= C else -1/2. */
  indicator: number;
  clamped: number;
}

function stochasticRound(x: number, rand: SecureRandom): number {
  const f = Math.floor(x);
  return rand.float() < x - f ? f + 1 : f;
}

export function encodeContribution(
  delta: Float32Array,
  numExamples: number,
  plan: EncodingPlan,
  rand: SecureRandom,
): Contribution {
  const d = delta.length;
  const x = new Float64Array(d + 2);
  for (let i = 0; i < d; i++) x[i] = delta[i];
  const params = x.subarray(0, d);
  let norm: number;
  let indicator = 0.5;
  if (plan.clipNorm !== null) {
    const r = clipL2InPlace(params, plan.clipNorm);
    norm = r.norm;
    indicator = r.norm <= plan.clipNorm ? 0.5 : -0.5;
  } else {
    let s = 0;
    for (let i = 0; i < d; i++) s += x[i] * x[i];
    norm = Math.sqrt(s);
  }
  const u = plan.weighting === 'uniform' ? 1 : Math.min(1, numExamples / plan.maxExamples);
  const c = plan.coordClip;
  const su = plan.scale * u; // u <= 1 keeps the weighted vector inside the clip (and the sensitivity)
  for (let i = 0; i < d; i++) {
    const v = x[i] < -c ? -c : x[i] > c ? c : x[i];
    x[i] = stochasticRound(v * su, rand);
  }
  addSkellamInPlace(x, plan.noiseVariance, rand, 0, d);
  x[d] = Math.round(u * plan.weightScale);
  x[d + 1] = indicator * plan.bitScale;
  addSkellamInPlace(x, plan.bitNoiseVariance, rand, d + 1, d + 2);
  const { ring, clamped } = encodeRing(x, plan.bits);
  return { ring, norm, indicator, clamped };
}

export interface Aggregate {
  /** sum(u x) / sum(u): the (weighted) mean delta. */
  mean: Float32Array;
  weightSum: number;
  /** Noisy sum of clip indicators (in units of the indicator, i.e. +-1/2 each). */
  indicatorSum: number;
}

/** Decodes the ring sum of n contributions. */
export function decodeAggregate(sum: Uint32Array, n: number, plan: EncodingPlan): Aggregate {
  checkNoOverflow(n, plan.bits);
  const ints = decodeRingSum(sum, n, plan.bits);
  const d = ints.length - 2;
  const weightSum = ints[d] / plan.weightScale;
  if (!(weightSum > 0)) throw new RangeError('aggregate has no weight');
  const mean = new Float32Array(d);
  const k = 1 / (plan.scale * weightSum);
  for (let i = 0; i < d; i++) mean[i] = ints[i] * k;
  return { mean, weightSum, indicatorSum: ints[d + 1] / plan.bitScale };
}
