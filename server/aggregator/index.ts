import { planEncoding, vectorLength, type EncodingPlan } from '../../shared/fl/encoding.ts';
import { SECAGG_MIN_COHORT } from '../../shared/secagg/graph.ts';
import { FloatAccumulator } from './float.ts';
import { RingAccumulator } from './ring.ts';
import { SecureAccumulator } from './secure.ts';
import {
  cohortTarget,
  type Accumulator,
  type RoundContext,
  type RoundMode,
  type RoundSettings,
} from './types.ts';

export type * from './types.ts';
export { cohortTarget } from './types.ts';

/** Secure aggregation masks ring vectors; DP alone sends them unmasked; otherwise plain float32. */
export function roundMode(s: { secagg: unknown; dp: unknown }): RoundMode {
  return s.secagg ? 'secure' : s.dp ? 'ring' : 'float';
}

/** The smallest cohort a round in this mode can run with (secure aggregation of two shows each the other's input). */
export function minCohort(mode: RoundMode): number {
  return mode === 'secure' ? SECAGG_MIN_COHORT : 1;
}

/** The uint32 length of a ring update in this mode, or undefined when updates are float32 deltas. */
export function ringLengthFor(mode: RoundMode, numParams: number): number | undefined {
  return mode === 'float' ? undefined : vectorLength(numParams);
}

/** How clients encode their updates this round (the plan goes out with round:start). */
export function planRound(s: RoundSettings): EncodingPlan {
  const dp = s.dp;
  return planEncoding({
    numParams: s.numParams,
    maxClients: cohortTarget(s), // at most target inputs are summed, over-selected or not
    clipNorm: dp ? dp.clipNorm : null,
    coordClip: s.coordClip,
    weighting: dp ? 'uniform' : 'examples',
    maxExamples: s.maxExamples,
    noise: dp ? { multiplier: dp.noiseMultiplier, minSurvivors: s.minUpdates, bitStd: dp.bitStd } : null,
  });
}

/** The one place a round's aggregation is chosen: the accumulator for its mode, with its encoding plan. */
export function createAccumulator(s: RoundSettings, ctx: RoundContext): Accumulator {
  if (!(Number.isInteger(s.n) && s.n >= 1)) throw new RangeError(`cohort size must be >= 1, got ${s.n}`);
  const target = cohortTarget(s);
  if (!(Number.isInteger(target) && target >= 1 && target <= s.n))
    throw new RangeError(`target cohort must be an integer in 1..${s.n}, got ${target}`);
  // Same order as roundMode.
  if (s.secagg) return new SecureAccumulator({ ...s, secagg: s.secagg }, planRound(s), ctx);
  if (s.dp) return new RingAccumulator(s, planRound(s), ctx);
  return new FloatAccumulator(s, ctx);
}
