import { clipL2InPlace } from '../dp/clip.ts';
import type { SecureRandom } from '../dp/secure-random.ts';
import { addSkellamInPlace, MAX_POISSON_MEAN } from '../dp/skellam.ts';
import { checkNoOverflow, decodeRingSum, encodeRing, ringBits } from '../secagg/ring.ts';

/**
 * How a client turns its model delta into a vector of the ring Z_{2^32}, and how the server turns the
 * sum back. The layout is [numParams parameters][weight][clip indicator][loss]:
 * - parameters: L2 clip to C (DP), clip each coordinate to +-coordClip, scale by `scale`, unbiased
 *   stochastic rounding, add Skellam noise (DP), clamp + offset into [0, 2^bits);
 * - weight u = clamp(numExamples / maxExamples, 0, 1), or 1 under uniform weighting (always under DP), so the
 *   server can divide sum(u x) by sum(u); maxExamples is a public cap set by the server, not a client's claim;
 * - clip indicator b = 1[||delta|| <= C] - 1/2 with its own noise, only with adaptive clipping; otherwise
 *   the neutral value 0 (an un-noised indicator would tell the server exactly how many clients were clipped);
 * - loss clipped to [0, LOSS_MAX] in fixed point, only WITHOUT DP: under DP it would be an un-noised
 *   per-client statistic in the released sum, so it is the neutral value 0 there.
 * Under secure aggregation the server sees only the sum of these coordinates, never one client's values.
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
  /** Whether the clip-indicator coordinate carries the (noised) indicator; false = neutral 0. */
  sendIndicator: boolean;
  /** Fixed-point scale of the loss coordinate; 0 = no loss is sent (DP, or a ring too narrow). */
  lossScale: number;
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

/** The coordinates after the parameters: weight, clip indicator, loss. */
export const EXTRA_COORDINATES = 3;
export const vectorLength = (numParams: number): number => numParams + EXTRA_COORDINATES;

/** Losses are clipped to [0, LOSS_MAX] before encoding (a cross-entropy above 16 means a diverged model). */
export const LOSS_MAX = 16;
/** Loss resolution: 2^-16 per client is far below any loss difference worth reporting. */
const MAX_LOSS_SCALE = 2 ** 16;

/** Largest power-of-two loss scale with LOSS_MAX * scale <= half - 1 (0 when the ring is too narrow). */
function lossScaleFor(bits: number): number {
  const room = (2 ** (bits - 1) - 1) / LOSS_MAX;
  return room < 1 ? 0 : Math.min(MAX_LOSS_SCALE, 2 ** Math.floor(Math.log2(room)));
}

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
  if (p.weighting === 'examples' && !(p.maxExamples > 0 && Number.isFinite(p.maxExamples)))
    throw new RangeError('maxExamples must be a positive number with example weighting');
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
    sendIndicator: p.noise !== null && p.noise.bitStd > 0,
    lossScale: p.noise ? 0 : lossScaleFor(bits),
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

/**
 * floor(x) + 1 with probability x - floor(x), else floor(x): unbiased, up to the 32-bit resolution of the
 * probability (P(up) = ceil(frac 2^32) / 2^32, off by < 2^-32). One 32-bit word a value, not a 53-bit
 * float: the keystream is most of a client's encoding time at 10^5 parameters.
 */
function stochasticRound(x: number, rand: SecureRandom): number {
  const f = Math.floor(x);
  return rand.uint32() < (x - f) * 4294967296 ? f + 1 : f;
}

/**
 * One client's ring vector. `loss` (mean training loss) is encoded only when the plan carries it
 * (plan.lossScale > 0); NaN or above LOSS_MAX counts as LOSS_MAX, below 0 as 0. Left out, it is sent as 0.
 */
export function encodeContribution(
  delta: Float32Array,
  numExamples: number,
  plan: EncodingPlan,
  rand: SecureRandom,
  loss?: number,
): Contribution {
  const d = delta.length;
  const x = new Float64Array(vectorLength(d));
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
  const u = weightOf(numExamples, plan);
  const c = plan.coordClip;
  const su = plan.scale * u; // u <= 1 keeps the weighted vector inside the clip (and the sensitivity)
  for (let i = 0; i < d; i++) {
    const v = x[i] < -c ? -c : x[i] > c ? c : x[i];
    x[i] = stochasticRound(v * su, rand);
  }
  addSkellamInPlace(x, plan.noiseVariance, rand, 0, d);
  x[d] = Math.round(u * plan.weightScale);
  if (plan.sendIndicator) {
    x[d + 1] = indicator * plan.bitScale;
    addSkellamInPlace(x, plan.bitNoiseVariance, rand, d + 1, d + 2);
  }
  if (plan.lossScale > 0 && loss !== undefined)
    x[d + 2] = stochasticRound(clipLoss(loss) * plan.lossScale, rand);
  const { ring, clamped } = encodeRing(x, plan.bits);
  return { ring, norm, indicator, clamped };
}

/** The weight u in [0, 1]: 1 under uniform weighting, else numExamples / maxExamples clamped. */
function weightOf(numExamples: number, plan: EncodingPlan): number {
  if (plan.weighting === 'uniform') return 1;
  if (!Number.isFinite(numExamples)) throw new RangeError(`numExamples must be finite, got ${numExamples}`);
  return Math.min(1, Math.max(0, numExamples / plan.maxExamples));
}

function clipLoss(loss: number): number {
  return loss >= 0 ? Math.min(loss, LOSS_MAX) : Number.isNaN(loss) ? LOSS_MAX : 0;
}

export interface Aggregate {
  /** sum(u x) / sum(u): the (weighted) mean delta. */
  mean: Float32Array;
  weightSum: number;
  /** Noisy sum of clip indicators (in units of the indicator, i.e. +-1/2 each); null unless the plan sends it. */
  indicatorSum: number | null;
  /** Mean clipped training loss of the n contributions; null when the plan carries no loss. */
  meanLoss: number | null;
}

function checkSum(sum: Uint32Array, n: number, plan: EncodingPlan): void {
  if (sum.length <= EXTRA_COORDINATES)
    throw new RangeError(`a ring sum needs more than ${EXTRA_COORDINATES} values, got ${sum.length}`);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
  checkNoOverflow(n, plan.bits);
}

/** Decodes the ring sum of n contributions. Run aggregateBoundsOk first: this trusts the sum. */
export function decodeAggregate(sum: Uint32Array, n: number, plan: EncodingPlan): Aggregate {
  checkSum(sum, n, plan);
  const ints = decodeRingSum(sum, n, plan.bits);
  const d = ints.length - EXTRA_COORDINATES;
  const weightSum = ints[d] / plan.weightScale;
  if (!(weightSum > 0)) throw new RangeError('aggregate has no weight');
  const mean = new Float32Array(d);
  const k = 1 / (plan.scale * weightSum);
  for (let i = 0; i < d; i++) mean[i] = ints[i] * k;
  return {
    mean,
    weightSum,
    indicatorSum: plan.sendIndicator ? ints[d + 1] / plan.bitScale : null,
    meanLoss: plan.lossScale > 0 ? ints[d + 2] / (plan.lossScale * n) : null,
  };
}

/** Which bound a ring sum broke (a closed set, safe as a metric label). */
export const BOUNDS_FAILURES = ['weight', 'indicator', 'loss', 'norm', 'coordinate'] as const;
export type BoundsFailure = (typeof BOUNDS_FAILURES)[number];
export type BoundsCheck = { ok: true } | { ok: false; failure: BoundsFailure; message: string };

/**
 * -ln of the failure probability allowed for an honest sum in each noise bound below (e^-40 ~ 4e-18):
 * an honest round is refused with negligible probability.
 */
const TAIL_LOG = 40;

/**
 * Bernstein bound on |X| for X a sum of Skellam noise with variance v: X = P1 - P2 with independent
 * Poisson P1, P2, so P(|X| > t) <= 2 exp(-t^2 / (2 (v + t/3))). Returns t for probability e^-logP.
 */
export function skellamTail(variance: number, logP: number): number {
  if (variance === 0) return 0;
  return logP / 3 + Math.sqrt(logP ** 2 / 9 + 2 * logP * variance);
}

/**
 * Bound on the L2 norm of d i.i.d. noise values of variance v (Laurent-Massart 2000 for Gaussian noise:
 * ||N||^2 <= v (d + 2 sqrt(d L) + 2 L) with probability 1 - e^-L). The Skellam sums used here have
 * variances far above 1, where their excess kurtosis 1/v is negligible and the Gaussian tail applies.
 */
export function noiseNormBound(variance: number, d: number, logP: number): number {
  return Math.sqrt(variance * (d + 2 * Math.sqrt(d * logP) + 2 * logP));
}

/**
 * What n honest clients can produce, checked on the ring sum before it is decoded (poisoning defence):
 * - weight: sum of u in (0, n] (exactly n under uniform weighting; no noise is ever added to it);
 * - indicator: exactly 0 when not sent, else within n/2 plus the noise's tail;
 * - loss: exactly 0 when not sent, else in [0, n * LOSS_MAX];
 * - every parameter of the sum within s * c * sum(u) + n (rounding) plus the noise's tail, where
 *   c = min(coordClip, C);
 * - the parameters' L2 norm within s * C' * sum(u) + n sqrt(d) plus the noise's norm bound, where
 *   C' = min(C, coordClip sqrt(d)) (coordClip sqrt(d) without an L2 clip).
 * Each client's integer vector satisfies these without noise (rounding moves a value by < 1, the ring
 * clamp only shrinks values); the noise bounds fail for an honest sum with probability < e^-40 each.
 * A single malicious client can still contribute up to these bounds (about n honest clients' worth, or
 * whatever hides in the noise slack): the check stops gross poisoning, e.g. a random or huge ring vector.
 */
export function aggregateBoundsOk(sum: Uint32Array, n: number, plan: EncodingPlan): BoundsCheck {
  checkSum(sum, n, plan);
  const ints = decodeRingSum(sum, n, plan.bits);
  const d = ints.length - EXTRA_COORDINATES;
  const fail = (failure: BoundsFailure, message: string): BoundsCheck => ({ ok: false, failure, message });
  const w = ints[d];
  const wMax = n * plan.weightScale;
  if (plan.weighting === 'uniform' ? w !== wMax : !(w > 0 && w <= wMax))
    return fail('weight', `weight sum ${w / plan.weightScale} is impossible for ${n} clients`);
  const ind = ints[d + 1];
  if (!plan.sendIndicator) {
    if (ind !== 0) return fail('indicator', 'clip indicator sum is not the neutral value');
  } else {
    const bound = (n * plan.bitScale) / 2 + skellamTail(n * plan.bitNoiseVariance, TAIL_LOG + Math.LN2);
    if (Math.abs(ind) > bound)
      return fail('indicator', `clip indicator sum is out of bounds for ${n} clients`);
  }
  const loss = ints[d + 2];
  const lossMax = plan.lossScale > 0 ? n * LOSS_MAX * plan.lossScale : 0;
  if (loss < 0 || loss > lossMax)
    return fail(
      'loss',
      plan.lossScale > 0 ? 'loss sum is out of bounds' : 'loss sum is not the neutral value',
    );
  // sum(u) over the clients, from the rounded weights: u <= (w + 1/2) / weightScale for each.
  const uSum = plan.weighting === 'uniform' ? n : (w + n / 2) / plan.weightScale;
  const sigma2 = n * plan.noiseVariance;
  const coord = plan.clipNorm === null ? plan.coordClip : Math.min(plan.coordClip, plan.clipNorm);
  const coordBound = plan.scale * coord * uSum + n + skellamTail(sigma2, TAIL_LOG + Math.log(2 * d));
  const l2 = Math.min(plan.clipNorm ?? Infinity, plan.coordClip * Math.sqrt(d));
  const normBound = plan.scale * l2 * uSum + n * Math.sqrt(d) + noiseNormBound(sigma2, d, TAIL_LOG);
  let s = 0;
  let max = 0;
  for (let i = 0; i < d; i++) {
    const v = ints[i];
    s += v * v;
    if (Math.abs(v) > max) max = Math.abs(v);
  }
  if (max > coordBound)
    return fail('coordinate', `a coordinate of the sum exceeds what ${n} clients can send`);
  const norm = Math.sqrt(s);
  if (norm > normBound)
    return fail('norm', `L2 norm of the sum is ${(norm / normBound).toFixed(2)}x what ${n} clients can send`);
  return { ok: true };
}
