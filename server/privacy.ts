import { nextClipNorm, valueNoiseMultiplier, type AdaptiveClipConfig } from '../shared/dp/adaptive-clip.ts';
import { RdpAccountant, SAMPLING_ASSUMPTION } from '../shared/dp/rdp.ts';
import type { PrivacyStatus } from '../shared/protocol/status.ts';

export interface PrivacyConfig {
  /** Total noise multiplier z of each round (std on the SUM / clip norm). */
  noiseMultiplier: number;
  delta: number;
  /** Stop before a round that would take epsilon past this. */
  epsilonBudget: number;
  /** Sampling rate: expected clients per round / population (1 when the population is unknown). */
  q: number;
  initialClip: number;
  adaptive: AdaptiveClipConfig | null;
  /** Expected clients per round (m in the adaptive-clipping update). */
  expectedClients: number;
}

/**
 * The server's privacy ledger: the RDP accountant of the rounds released so far, the budget check made
 * before each round, and the (adaptive) clip norm. Only completed rounds are charged: an aborted round
 * released nothing.
 */
export class PrivacyLedger {
  private readonly accountant = new RdpAccountant();
  /**
   * The server sees who was sampled, so sampling amplifies nothing against it: the same rounds charged
   * at q = 1. (Secure aggregation still shows it only the noised sum.)
   */
  private readonly serverAccountant = new RdpAccountant();
  private rounds = 0;
  private clip: number;
  private exhausted: string | null = null;
  readonly valueNoise: number;

  constructor(readonly cfg: PrivacyConfig) {
    this.clip = cfg.initialClip;
    this.valueNoise = cfg.adaptive
      ? valueNoiseMultiplier(cfg.noiseMultiplier, cfg.adaptive.indicatorStd)
      : cfg.noiseMultiplier;
  }

  get clipNorm(): number {
    return this.clip;
  }

  /** Epsilon of the released models (sampling at q amplifies privacy against their users). */
  epsilon(): { epsilon: number; order: number | null } {
    if (this.rounds === 0) return { epsilon: 0, order: null };
    const r = this.accountant.epsilon(this.cfg.delta);
    return { epsilon: r.epsilon, order: r.order };
  }

  /** Epsilon against the server, which knows each cohort (q = 1). */
  epsilonAgainstServer(): number {
    return this.rounds === 0 ? 0 : this.serverAccountant.epsilon(this.cfg.delta).epsilon;
  }

  /** Epsilon if one more round is released, or why not (the ledger then stays exhausted). */
  checkNextRound(): { ok: true; epsilonAfter: number } | { ok: false; message: string } {
    const after = this.accountant
      .clone()
      .compose(this.cfg.q, this.cfg.noiseMultiplier)
      .epsilon(this.cfg.delta).epsilon;
    if (after > this.cfg.epsilonBudget) {
      this.exhausted = `privacy budget reached: round ${this.rounds + 1} would raise epsilon from ${this.epsilon().epsilon.toFixed(3)} to ${after.toFixed(3)}, over the budget of ${this.cfg.epsilonBudget} (delta ${this.cfg.delta})`;
      return { ok: false, message: this.exhausted };
    }
    return { ok: true, epsilonAfter: after };
  }

  /**
   * Restores the ledger of a resumed run: each charge composed at the q and z it was charged at (a
   * changed config cannot rewrite what was spent), and the clip norm the next round uses. Only on a
   * fresh ledger.
   */
  restore(charges: readonly { q: number; z: number }[], clipNorm: number | null): void {
    if (this.rounds !== 0) throw new Error('restore needs a ledger that has charged nothing');
    for (const { q, z } of charges) {
      if (!(q > 0 && q <= 1) || !(z > 0))
        throw new RangeError(`cannot restore a charge at q = ${q}, z = ${z}`);
      this.accountant.compose(q, z);
      this.serverAccountant.compose(1, z);
      this.rounds++;
    }
    if (clipNorm !== null) {
      if (!(clipNorm > 0 && Number.isFinite(clipNorm)))
        throw new RangeError(`clip norm ${clipNorm} is not > 0`);
      this.clip = clipNorm;
    }
  }

  /** Charges one released round; with adaptive clipping, moves the clip norm using the noisy count. */
  charge(noisyIndicatorSum: number | null): number {
    this.accountant.compose(this.cfg.q, this.cfg.noiseMultiplier);
    this.serverAccountant.compose(1, this.cfg.noiseMultiplier);
    this.rounds++;
    if (this.cfg.adaptive && noisyIndicatorSum !== null) {
      this.clip = nextClipNorm(
        this.clip,
        noisyIndicatorSum,
        this.cfg.expectedClients,
        this.cfg.adaptive,
      ).clip;
    }
    return this.epsilon().epsilon;
  }

  status(): PrivacyStatus {
    const e = this.epsilon();
    return {
      enabled: true,
      epsilon: e.epsilon,
      epsilonAgainstServer: this.epsilonAgainstServer(),
      delta: this.cfg.delta,
      epsilonBudget: this.cfg.epsilonBudget,
      noiseMultiplier: this.cfg.noiseMultiplier,
      valueNoiseMultiplier: this.valueNoise,
      clipNorm: this.clip,
      adaptiveClipping: this.cfg.adaptive !== null,
      q: this.cfg.q,
      sampling: SAMPLING_ASSUMPTION,
      bestOrder: e.order,
      rounds: this.rounds,
      exhausted: this.exhausted,
    };
  }
}
