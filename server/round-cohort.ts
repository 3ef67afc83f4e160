import { createRng } from '../shared/data/rng.ts';
import type { SecureRandom } from '../shared/dp/secure-random.ts';
import type { Culprit, CulpritKind } from '../shared/secagg/types.ts';
import { minCohort, roundMode } from './aggregator/index.ts';
import type { ClientRecord } from './clients.ts';
import { chooseCohort, type CohortRule, type CohortSkip } from './cohort.ts';
import { invitedPerRound, type ServerConfig } from './config.ts';
import type { LogLimiter } from './limits.ts';
import type { Metrics } from './metrics.ts';
import type { Training } from './round-state.ts';

/** Least wait before drawing again after a draw outside the cohort bounds (no busy loop at --round-pause-ms 0). */
export const SKIP_RETRY_MS = 1000;
/** Culprit ids a log line names (the rest are counted). */
const CULPRITS_LOGGED = 5;

export interface RoundCohortDeps {
  config: ServerConfig;
  metrics: Metrics;
  /** The q the privacy ledger charges per round. */
  samplingRate: number;
  /** CSPRNG of Poisson cohort draws (default: one keyed by the OS); tests inject a seeded one. */
  random?: SecureRandom;
  /** Rate-limited log of lines about client input. */
  inputLog: LogLimiter | null;
}

/**
 * An attempt's invitees and the cohort size they are cut to (target < cohort.length: over-selected, the
 * first target to answer take part), or a skipped draw (already counted); `note` is the log text of either.
 */
export type AttemptCohort =
  | { ok: true; cohort: ClientRecord[]; target: number; note: string }
  | { ok: false; drawn: number; eligible: number; reason: CohortSkip; wait: number; note: string };

/** Who takes part in each attempt: the draw the ledger assumes, minus the round's proven culprits. */
export class RoundCohort {
  /** Fewest members the round mode needs (secure aggregation needs more than one). */
  readonly minCohort: number;
  private readonly rule: CohortRule;
  /**
   * Clients named as culprits in an attempt of the current round: they sit out its remaining attempts.
   * Naming is sound (shares are dealer-signed, so an honest client is never named), and keeping them out
   * stops one cheater from aborting every retry. It lasts only until the round completes: a session is
   * not a person (a cheater can return under a new session, so a longer ban buys little), and the set
   * stays bounded by one cohort instead of growing with the run.
   */
  private readonly culprits = new Set<string>();

  constructor(private readonly d: RoundCohortDeps) {
    const cfg = d.config;
    this.minCohort = minCohort(roundMode(cfg));
    // Who takes part must match what the ledger charges: Poisson sampling at q exactly when it charges
    // q < 1 (--dp-population), from every eligible client and a CSPRNG; otherwise a fixed-size draw from
    // the seeded experiment RNG, charged at q = 1. Over-selection (--over-select) invites more than
    // --clients-per-round in the fixed draw only: keeping the fastest is not Poisson sampling (the config
    // refuses the two together, and a Poisson rule here never over-selects).
    const q = d.samplingRate;
    this.rule =
      q < 1
        ? { kind: 'poisson', q, random: d.random }
        : { kind: 'fixed', size: invitedPerRound(cfg), rng: createRng(cfg.seed ^ 0x5eed) };
  }

  /**
   * Draws the cohort of the next attempt from the ready clients. A draw outside the bounds starts no
   * attempt: it is counted, and drawn afresh after a pause. It is never trimmed or topped up, which would
   * change each client's inclusion probability. (Redrawing does condition released cohorts on their size:
   * the ledger's q holds while such skips are rare, i.e. while q times the eligible clients is well above
   * the minimum; the log shows how often they happen.)
   */
  choose(ready: ClientRecord[]): AttemptCohort {
    const eligible = this.culprits.size ? ready.filter((c) => !this.culprits.has(c.id)) : ready;
    // Fewer than --min-updates could never complete (and DP noise is sized for that many).
    const bounds = { min: Math.max(this.minCohort, this.d.config.minUpdates), max: Infinity };
    const draw = chooseCohort(eligible, this.rule, bounds);
    if (!draw.ok) {
      const { drawn, reason } = draw;
      this.d.metrics.cohortSkips.inc({ reason });
      const wait = Math.max(this.d.config.roundPauseMs, SKIP_RETRY_MS);
      const why =
        reason === 'too_few' ? `fewer than the ${bounds.min} a round needs` : 'more than the cohort limit';
      const note = `${this.ruleText()} drew ${drawn} of ${eligible.length} eligible clients, ${why}; no attempt, drawing again in ${wait} ms`;
      return { ok: false, drawn, eligible: eligible.length, reason, wait, note };
    }
    const cohort = draw.chosen;
    const target =
      this.rule.kind === 'fixed' ? Math.min(this.d.config.clientsPerRound, cohort.length) : cohort.length;
    const sat = ready.length - eligible.length;
    const satOut = sat ? `, ${sat} named culprit${sat === 1 ? '' : 's'} sitting out` : '';
    const over =
      target < cohort.length ? `, the first ${target} to answer form the cohort (over-selection)` : '';
    const note = `selected ${cohort.length} of ${ready.length} ready clients by ${this.ruleText()}${over}${satOut}`;
    return { ok: true, cohort, target, note };
  }

  /** Culprits the attempt named: they sit out the rest of the round (see `culprits`); logged, rate-limited. */
  noteCulprits(t: Training, culprits: readonly Culprit[]): void {
    const kinds = new Map<CulpritKind, number>();
    const ids = new Set<string>();
    for (const c of culprits) {
      const rec = t.cohort[c.index - 1];
      if (!rec) continue;
      ids.add(rec.id);
      this.culprits.add(rec.id);
      kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
    }
    if (!ids.size) return;
    const list = [...ids].slice(0, CULPRITS_LOGGED).join(', ');
    const more = ids.size > CULPRITS_LOGGED ? ` and ${ids.size - CULPRITS_LOGGED} more` : '';
    const evidence = [...kinds].map(([k, n]) => `${k} x${n}`).join(', ');
    this.d.inputLog?.write(
      `round ${t.ref.round}.${t.ref.attempt}: ${ids.size} client${ids.size === 1 ? '' : 's'} proven to have cheated (${evidence}): ${list}${more}; excluded until round ${t.ref.round} completes`,
    );
  }

  /** The round is complete: its culprits may take part again (see `culprits`). */
  roundComplete(): void {
    this.culprits.clear();
  }

  private ruleText(): string {
    const r = this.rule;
    return r.kind === 'poisson' ? `Poisson sampling (q = ${r.q})` : `a fixed-size draw of ${r.size}`;
  }
}
