import {
  aggregateBoundsOk,
  decodeAggregate,
  type Aggregate,
  type BoundsFailure,
  type EncodingPlan,
} from '../../shared/fl/encoding.ts';
import type { Metrics } from '../metrics.ts';

/**
 * Poisoning defence at the aggregate: the ring sum of n inputs is checked against what n clipped clients
 * can produce (aggregateBoundsOk) BEFORE it is decoded; a sum that fails is counted by check and never
 * decoded. Under secure aggregation the server cannot look at single inputs, so this is the place.
 */
export function checkedDecode(
  sum: Uint32Array,
  n: number,
  plan: EncodingPlan,
  metrics: Metrics,
): { ok: true; aggregate: Aggregate } | { ok: false; check: BoundsFailure; message: string } {
  const b = aggregateBoundsOk(sum, n, plan);
  if (!b.ok) {
    metrics.aggregatesRejected.inc({ check: b.failure });
    return { ok: false, check: b.failure, message: b.message };
  }
  return { ok: true, aggregate: decodeAggregate(sum, n, plan) };
}

/**
 * Examples behind a decoded aggregate: with example weighting each weight is numExamples / maxExamples
 * (capped at 1), so the weight sum times the public cap counts them; unknowable under uniform weighting.
 */
export function decodedExamples(agg: Aggregate, plan: EncodingPlan): number | null {
  return plan.weighting === 'examples' ? Math.round(agg.weightSum * plan.maxExamples) : null;
}
