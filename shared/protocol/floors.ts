import type { RejectReason } from '../base/errors.ts';
import { integerSensitivity, type EncodingPlan } from '../fl/encoding.ts';
import { tryCheckTask } from '../model/task.ts';
import { SECAGG_MIN_COHORT, SECAGG_MIN_THRESHOLD, unsafeThreshold } from '../secagg/graph.ts';
import type { RoundStart } from './messages.ts';

/**
 * Floors the embedding page sets for its visitors (data-* attributes on the script tag, or options of
 * join()) and the server cannot lower: a round plan below any of them is refused, with a reason the
 * page can show. Every check reads the plan's own numbers (the noise the client will add, the clip it
 * will apply, the threshold its shares are cut for), never a server claim about them.
 */
export interface Floors {
  /** Refuse rounds without secure aggregation (the server would see each update on its own). */
  requireSecAgg: boolean;
  /** Fewest clients in a secure-aggregation round (never below SECAGG_MIN_COHORT). */
  minCohort: number;
  /** Lowest Shamir threshold (never below SECAGG_MIN_THRESHOLD). */
  minThreshold: number;
  /**
   * Lowest DP noise multiplier: the std of the noise on a released sum over its L2 sensitivity, counting
   * only the noise this plan makes each client add. 0 = DP not required.
   */
  minNoiseMultiplier: number;
  /** Largest L2 norm an update may be clipped to (in model units); null = no cap. */
  maxClipNorm: number | null;
}

/**
 * Defaults for a privacy-minded site that still runs today's demo: secure aggregation required (the demo
 * runs with it), the hard minimums on cohort and threshold (the demo's cohorts are small), and no DP
 * floor (the demo runs without DP by default; a site that wants DP sets data-min-noise).
 */
export const DEFAULT_FLOORS: Readonly<Floors> = {
  requireSecAgg: true,
  minCohort: SECAGG_MIN_COHORT,
  minThreshold: SECAGG_MIN_THRESHOLD,
  minNoiseMultiplier: 0,
  maxClipNorm: null,
};

/** The data-* attribute each floor is read from, as written on the script tag. */
export const FLOOR_ATTRIBUTES = {
  requireSecAgg: 'data-secagg',
  minCohort: 'data-min-cohort',
  minThreshold: 'data-min-threshold',
  minNoiseMultiplier: 'data-min-noise',
  maxClipNorm: 'data-max-clip',
} as const satisfies Record<keyof Floors, string>;

/** data-min-cohort -> minCohort, the key under which HTMLElement.dataset holds it. */
const datasetKey = (attr: string): string =>
  attr.slice('data-'.length).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Floors with defaults filled in, each checked; throws a RangeError naming the bad value. */
export function makeFloors(partial: Partial<Floors> = {}): Floors {
  const f: Floors = { ...DEFAULT_FLOORS, ...partial };
  if (typeof f.requireSecAgg !== 'boolean') throw new RangeError('requireSecAgg must be true or false');
  if (!Number.isInteger(f.minCohort) || f.minCohort < SECAGG_MIN_COHORT)
    throw new RangeError(`minCohort must be an integer >= ${SECAGG_MIN_COHORT}, got ${f.minCohort}`);
  if (!Number.isInteger(f.minThreshold) || f.minThreshold < SECAGG_MIN_THRESHOLD)
    throw new RangeError(`minThreshold must be an integer >= ${SECAGG_MIN_THRESHOLD}, got ${f.minThreshold}`);
  // t shares need t holders besides the client: a threshold floor implies a cohort floor one above it.
  f.minCohort = Math.max(f.minCohort, f.minThreshold + 1);
  if (!(Number.isFinite(f.minNoiseMultiplier) && f.minNoiseMultiplier >= 0))
    throw new RangeError(`minNoiseMultiplier must be a finite number >= 0, got ${f.minNoiseMultiplier}`);
  if (f.maxClipNorm !== null && !(Number.isFinite(f.maxClipNorm) && f.maxClipNorm > 0))
    throw new RangeError(`maxClipNorm must be a finite number > 0 or null, got ${f.maxClipNorm}`);
  return f;
}

const INTEGER = /^\d{1,9}$/;
const DECIMAL = /^\d+(\.\d+)?(e[-+]?\d+)?$/i;

/**
 * Floors from the script tag's attributes: pass `script.dataset` (keys minCohort, ...) or a map of full
 * attribute names (data-min-cohort, ...). Absent attributes take the defaults; a malformed one throws,
 * so a typo cannot silently weaken what the page asked for. Other attributes are ignored.
 *   data-secagg="required" | "optional"   data-min-cohort="10"   data-min-threshold="4"
 *   data-min-noise="0.8"                   data-max-clip="1.5"
 */
export function parseFloors(attrs: Readonly<Record<string, string | undefined>>): Floors {
  const out: Partial<Floors> = {};
  const get = (attr: string): string | undefined => {
    const v = attrs[attr] ?? attrs[datasetKey(attr)];
    return v === undefined ? undefined : v.trim();
  };
  const bad = (attr: string, v: string, want: string): never => {
    throw new RangeError(`${attr}="${v.slice(0, 40)}" is not ${want}`);
  };
  const sec = get(FLOOR_ATTRIBUTES.requireSecAgg);
  if (sec !== undefined) {
    if (sec !== 'required' && sec !== 'optional')
      bad(FLOOR_ATTRIBUTES.requireSecAgg, sec, '"required" or "optional"');
    out.requireSecAgg = sec === 'required';
  }
  for (const key of ['minCohort', 'minThreshold'] as const) {
    const v = get(FLOOR_ATTRIBUTES[key]);
    if (v !== undefined)
      out[key] = INTEGER.test(v) ? Number(v) : bad(FLOOR_ATTRIBUTES[key], v, 'a whole number');
  }
  const noise = get(FLOOR_ATTRIBUTES.minNoiseMultiplier);
  if (noise !== undefined)
    out.minNoiseMultiplier = DECIMAL.test(noise)
      ? Number(noise)
      : bad(FLOOR_ATTRIBUTES.minNoiseMultiplier, noise, 'a number');
  const clip = get(FLOOR_ATTRIBUTES.maxClipNorm);
  if (clip !== undefined)
    out.maxClipNorm = DECIMAL.test(clip) ? Number(clip) : bad(FLOOR_ATTRIBUTES.maxClipNorm, clip, 'a number');
  return makeFloors(out);
}

export type FloorCheck =
  | {
      ok: true;
      /** Colluding clients the round withstands (t - 1), or null without secure aggregation. */
      toleratedColluders: number | null;
      /** The plan's noise multiplier as derived here (0 without DP noise). */
      noiseMultiplier: number;
    }
  | { ok: false; reason: RejectReason; message: string };

const refuse = (message: string): FloorCheck => ({ ok: false, reason: 'below_floor', message });
const malformed = (message: string): FloorCheck => ({ ok: false, reason: 'malformed', message });
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * The noise multiplier a plan really gives a released sum of `m` updates: each client adds Skellam
 * noise of variance plan.noiseVariance to every parameter, and one update moves the sum by at most
 * integerSensitivity (clip, scale and rounding included), so z = sqrt(m * variance) / sensitivity.
 */
export function planNoiseMultiplier(plan: EncodingPlan, numParams: number, m: number): number {
  return Math.sqrt(m * plan.noiseVariance) / integerSensitivity(plan, numParams);
}

/**
 * Whether this client takes part in the round `r` under `floors`. Refusals say why, in words for the
 * page, with reason 'below_floor' (or 'malformed' for numbers no honest server sends).
 *
 * How many updates the DP check assumes a released sum holds, m:
 * - with secure aggregation, t: this client reveals nothing unless t of its neighbours survived, and no
 *   sum is released with fewer than t inputs besides ours (privacy.md D: n_min is the threshold);
 * - without it, 1: the server sees each update on its own, protected by its own noise only.
 * Both assume the other survivors add the noise the plan asks for (colluders who add none lower it).
 */
export function checkRoundAgainstFloors(r: RoundStart, floors: Floors): FloorCheck {
  let toleratedColluders: number | null = null;
  let m = 1;
  const s = r.secagg;
  if (!s) {
    if (floors.requireSecAgg)
      return refuse('this page requires secure aggregation; the round would show the server each update');
  } else {
    // Over-selection: the cohort that takes part (k and t are sized for it); n is then the invited count.
    const n = s.cohort ?? s.n;
    if (
      ![s.n, n, s.t, s.k, s.index].every(isCount) ||
      n > s.n ||
      s.index < 1 ||
      s.index > s.n ||
      s.k > n - 1 ||
      s.t > s.k
    )
      return malformed(`secure aggregation plan n = ${n}, k = ${s.k}, t = ${s.t} is inconsistent`);
    if (!r.encoding) return malformed('secure aggregation without an encoding plan');
    if (n < floors.minCohort)
      return refuse(`the round has ${n} clients; this page requires at least ${floors.minCohort}`);
    if (s.t < floors.minThreshold)
      return refuse(`the threshold is ${s.t}; this page requires at least ${floors.minThreshold}`);
    const unsafe = unsafeThreshold(n, s.k, s.t);
    if (unsafe) return refuse(unsafe);
    toleratedColluders = s.t - 1;
    m = s.t;
  }
  const plan = r.encoding;
  let d = 0;
  if (plan) {
    const task = tryCheckTask(r.task);
    if (!task.ok) return malformed(`round task: ${task.message}`);
    d = task.value.numParams;
    if (!(Number.isInteger(plan.bits) && plan.bits >= 2 && plan.bits <= 32))
      return malformed(`encoding plan has a ring width of ${String(plan.bits)} bits`);
    const finite = [
      plan.scale,
      plan.noiseVariance,
      plan.coordClip,
      plan.clipNorm ?? 1,
      plan.bitNoiseVariance,
      plan.bitScale,
      plan.lossScale,
    ].every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0);
    if (!finite || !(plan.scale > 0) || !(plan.coordClip > 0) || plan.clipNorm === 0)
      return malformed('encoding plan has a scale, clip or noise that is not a positive finite number');
  }
  let noiseMultiplier = 0;
  if (floors.minNoiseMultiplier > 0) {
    if (!plan) return refuse('this page requires DP noise; the round sends the update without any');
    if (plan.weighting !== 'uniform')
      return refuse(
        'this page requires DP; the round weights updates by example counts, which are not noised',
      );
    // Every coordinate of the released sum must be noised: the loss would go out exact, so it must be off.
    if (plan.lossScale !== 0)
      return refuse('this page requires DP; the round would send the training loss without noise');
    noiseMultiplier = planNoiseMultiplier(plan, d, m);
    if (plan.sendIndicator) {
      // The clip indicator (+-1/2, times bitScale) carries its own noise; the release is as private as both
      // together (RDP adds: z^-2 = z_values^-2 + z_indicator^-2), so a noiseless indicator gives z = 0.
      const zBit = Math.sqrt(m * plan.bitNoiseVariance) / (plan.bitScale / 2);
      noiseMultiplier = zBit > 0 ? 1 / Math.sqrt(noiseMultiplier ** -2 + zBit ** -2) : 0;
    }
    if (!(noiseMultiplier >= floors.minNoiseMultiplier))
      return refuse(
        `the round's DP noise multiplier is ${noiseMultiplier.toPrecision(3)} (over ${m} update${m === 1 ? '' : 's'}); this page requires at least ${floors.minNoiseMultiplier}`,
      );
  } else if (plan) {
    noiseMultiplier = planNoiseMultiplier(plan, d, m);
  }
  if (floors.maxClipNorm !== null) {
    if (!plan) return refuse('this page caps the update norm; the round sends the update unclipped');
    // Without an L2 clip the coordinate clip still bounds the norm: coordClip * sqrt(d).
    const clip = plan.clipNorm ?? plan.coordClip * Math.sqrt(d);
    if (!(clip <= floors.maxClipNorm))
      return refuse(
        `the round clips updates to norm ${clip.toPrecision(3)}; this page allows at most ${floors.maxClipNorm}`,
      );
  }
  return { ok: true, toleratedColluders, noiseMultiplier };
}
