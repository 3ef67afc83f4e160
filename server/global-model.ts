import { createServerOptimizer, type ServerOptimizer } from '../shared/fl/server-opt.ts';
import { numParams } from '../shared/model/spec.ts';
import type { RoundRef, RoundSummary } from '../shared/protocol/messages.ts';
import type { PrivacyStatus } from '../shared/protocol/status.ts';
import type { RoundOutcome, RoundSettings } from './aggregator/index.ts';
import type { Clock } from './clock.ts';
import { samplingRate, type ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import type { Metrics } from './metrics.ts';
import { PrivacyLedger } from './privacy.ts';

export interface GlobalModelDeps {
  config: ServerConfig;
  metrics: Metrics;
  evaluate: (weights: Float32Array) => Promise<EvalResult>;
  initialWeights: Float32Array;
  clock: Clock;
  log: (msg: string) => void;
}

/** A round whose aggregate is ready to release. */
export interface Released {
  ref: RoundRef;
  startedAt: number;
  outcome: Extract<RoundOutcome, { ok: true }>;
}

/**
 * The model being trained and everything that changes only when a round is released: the weights, the
 * server optimizer's state, the privacy ledger, the held-out evaluation and the history of rounds.
 */
export class GlobalModel {
  readonly numParams: number;
  readonly history: RoundSummary[] = [];
  private w: Float32Array;
  private wBytes: Buffer;
  private readonly optimizer: ServerOptimizer;
  private readonly ledger: PrivacyLedger | null;
  private initialEval: EvalResult | null = null;

  constructor(private readonly deps: GlobalModelDeps) {
    const cfg = deps.config;
    this.numParams = numParams(cfg.model);
    if (deps.initialWeights.length !== this.numParams)
      throw new Error(
        `initial weights have ${deps.initialWeights.length} values, model needs ${this.numParams}`,
      );
    this.w = deps.initialWeights;
    this.wBytes = bytesOf(this.w);
    this.optimizer = createServerOptimizer(
      { ...cfg.serverOptimizer, lr: cfg.serverLearningRate },
      this.numParams,
    );
    const dp = cfg.dp;
    this.ledger = dp
      ? new PrivacyLedger({
          noiseMultiplier: dp.noiseMultiplier,
          delta: dp.delta,
          epsilonBudget: dp.epsilonBudget,
          q: samplingRate(cfg),
          initialClip: dp.clipNorm,
          adaptive: dp.adaptive,
          expectedClients: cfg.clientsPerRound,
        })
      : null;
    if (this.ledger) deps.metrics.enablePrivacy();
    this.refreshPrivacyGauges();
  }

  /** Evaluates the initial model (the baseline every round is compared with). */
  async init(): Promise<EvalResult> {
    const e = await this.deps.evaluate(this.w);
    this.initialEval = e;
    this.deps.metrics.testAccuracy.set(e.accuracy);
    this.deps.metrics.testLoss.set(e.loss);
    this.deps.log(`initial model: accuracy ${(e.accuracy * 100).toFixed(1)}%, loss ${e.loss.toFixed(4)}`);
    return e;
  }

  get initial(): EvalResult | null {
    return this.initialEval;
  }

  get weights(): Float32Array {
    return this.w;
  }

  /** The weights as little-endian float32 bytes (what round:start carries), without a copy. */
  get weightsBytes(): Buffer {
    return this.wBytes;
  }

  /** The sampling rate the ledger charges: < 1 only with DP and --dp-population; 1 otherwise. */
  get samplingRate(): number {
    return this.ledger?.cfg.q ?? 1;
  }

  /** The DP settings the next round uses (clip norm moves with adaptive clipping); null without DP. */
  roundDp(): RoundSettings['dp'] {
    const dp = this.deps.config.dp;
    if (!dp || !this.ledger) return null;
    return {
      clipNorm: this.ledger.clipNorm,
      noiseMultiplier: this.ledger.valueNoise,
      bitStd: dp.adaptive?.indicatorStd ?? 0,
      adaptive: dp.adaptive !== null,
    };
  }

  /** Whether one more round fits the privacy budget (always, without DP). */
  checkBudget(): { ok: true } | { ok: false; message: string } {
    const c = this.ledger?.checkNextRound();
    return !c || c.ok ? { ok: true } : { ok: false, message: c.message };
  }

  /**
   * Releases one round: the server optimizer steps with the mean update, the ledger is charged, the new
   * weights are evaluated and the round joins the history. Throws only before the weights change.
   */
  async release({ ref, startedAt, outcome: o }: Released): Promise<RoundSummary> {
    const clipNorm = this.ledger?.clipNorm ?? null;
    this.w = this.optimizer.step(this.w, o.mean);
    this.wBytes = bytesOf(this.w);
    const epsilon = this.ledger ? this.ledger.charge(o.indicatorSum) : null;
    this.refreshPrivacyGauges();
    const ev = await this.evaluate();
    const now = this.deps.clock.now();
    const summary: RoundSummary = {
      round: ref.round,
      attempts: ref.attempt,
      clients: o.clients,
      examples: o.examples,
      stragglers: o.stragglers,
      accuracy: ev.accuracy,
      loss: ev.loss,
      durationMs: now - startedAt,
      completedAt: new Date(now).toISOString(),
      secagg: this.deps.config.secagg,
      epsilon,
      clipNorm,
    };
    this.history.push(summary);
    const m = this.deps.metrics;
    m.roundsCompleted.inc();
    m.roundDuration.observe(summary.durationMs / 1000);
    m.evalDuration.observe(ev.ms / 1000);
    if (Number.isFinite(ev.accuracy)) {
      m.testAccuracy.set(ev.accuracy);
      m.testLoss.set(ev.loss);
    }
    const vsServer = this.ledger?.epsilonAgainstServer();
    const eps =
      epsilon !== null
        ? `, epsilon ${epsilon.toFixed(3)} (released models; ${vsServer!.toFixed(3)} against the server)`
        : '';
    this.deps.log(
      `round ${ref.round} done (${o.why}): ${o.clients} updates, ${o.stragglers} stragglers, accuracy ${(ev.accuracy * 100).toFixed(1)}%, loss ${ev.loss.toFixed(4)}${eps}, ${(summary.durationMs / 1000).toFixed(1)}s`,
    );
    return summary;
  }

  /** Scores the current weights; a failure gives NaN (the aggregate is kept, only its score is unknown). */
  private async evaluate(): Promise<EvalResult> {
    try {
      return await this.deps.evaluate(this.w);
    } catch (e) {
      this.deps.log(`evaluation failed: ${(e as Error).message}`);
      return { accuracy: NaN, loss: NaN, examples: 0, ms: 0 };
    }
  }

  privacyStatus(): PrivacyStatus | { enabled: false } {
    return this.ledger ? this.ledger.status() : { enabled: false };
  }

  private refreshPrivacyGauges(): void {
    if (!this.ledger) return;
    const p = this.ledger.status();
    const m = this.deps.metrics;
    m.dp.epsilon.set(p.epsilon);
    m.dp.epsilonAgainstServer.set(p.epsilonAgainstServer);
    m.dp.delta.set(p.delta);
    m.dp.budget.set(p.epsilonBudget);
    m.dp.noise.set(p.noiseMultiplier);
    m.dp.clip.set(p.clipNorm);
    m.dp.samplingRate.set(p.q);
  }
}

function bytesOf(w: Float32Array): Buffer {
  return Buffer.from(w.buffer, w.byteOffset, w.byteLength);
}
