import { createSecureRandom, type SecureRandom } from '../shared/dp/secure-random.ts';
import { permutation, type Rng } from '../shared/data/rng.ts';

/**
 * Who takes part in a round. Two rules, each matching what the privacy ledger assumes:
 * - `poisson`: every eligible client joins independently with probability q, drawn from a CSPRNG. This is
 *   the sampling the RDP accountant's amplification assumes (add/remove-one neighbours), so it is used
 *   whenever the ledger charges q < 1. The cohort size is random; it is never trimmed to a target (that
 *   would change the inclusion probability), and a draw outside [min, max] skips the round instead.
 * - `fixed`: a uniformly random subset of min(size, eligible) clients, from the experiment's seeded RNG
 *   (reproducible runs). The ledger then charges q = 1: no amplification is claimed.
 */
export type CohortRule =
  { kind: 'fixed'; size: number; rng: Rng } | { kind: 'poisson'; q: number; random?: SecureRandom };

/** Why a draw was not used (closed set: it is a metric label). */
export const COHORT_SKIPS = ['too_few', 'too_many'] as const;
export type CohortSkip = (typeof COHORT_SKIPS)[number];

export type CohortDraw<T> = { ok: true; chosen: T[] } | { ok: false; drawn: number; reason: CohortSkip };

export interface CohortBounds {
  /** Fewest members for which the round can run (secure aggregation and DP need a floor). */
  min: number;
  /** Most members the server will take in one round. */
  max: number;
}

export function chooseCohort<T>(
  eligible: readonly T[],
  rule: CohortRule,
  bounds: CohortBounds,
): CohortDraw<T> {
  if (rule.kind === 'fixed') {
    if (!(Number.isInteger(rule.size) && rule.size >= 1))
      throw new RangeError(`cohort size must be an integer >= 1, got ${rule.size}`);
    const order = permutation(eligible.length, rule.rng);
    const n = Math.min(rule.size, eligible.length, bounds.max);
    if (n < bounds.min) return { ok: false, drawn: n, reason: 'too_few' };
    return { ok: true, chosen: Array.from(order.subarray(0, n), (i) => eligible[i]) };
  }
  const q = rule.q;
  if (!(q > 0 && q <= 1)) throw new RangeError(`sampling probability must be in (0, 1], got ${q}`);
  const random = rule.random ?? defaultRandom();
  const chosen = eligible.filter(() => random.float() < q);
  if (chosen.length < bounds.min) return { ok: false, drawn: chosen.length, reason: 'too_few' };
  if (chosen.length > bounds.max) return { ok: false, drawn: chosen.length, reason: 'too_many' };
  return { ok: true, chosen };
}

let shared: SecureRandom | null = null;
function defaultRandom(): SecureRandom {
  shared ??= createSecureRandom();
  return shared;
}
