import { createServerOptimizer, type ServerOptimizer } from '../shared/fl/server-opt.ts';
import type { RoundRef, RoundSummary } from '../shared/protocol/messages.ts';
import type { EvaluationStatus, PrivacyStatus } from '../shared/protocol/status.ts';
import type { RoundOutcome, RoundSettings } from './aggregator/index.ts';
import type { Clock } from './clock.ts';
import { samplingRate, serverTask, type ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import type { Metrics, ModelRejection } from './metrics.ts';
import { PrivacyLedger } from './privacy.ts';
import type { Checkpoint } from './run-state.ts';

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

/** An evaluation, or null when the evaluator failed (the score is unknown). */
type Scored = EvalResult | null;

/**
 * The model being trained and everything that changes only when a round is released: the weights, the
 * server optimizer's state, the privacy ledger, the held-out evaluation and the history of rounds.
 *
 * Keep-old-model guard (config.maxLossIncrease > 0): a released aggregate gives a candidate model, which
 * is evaluated before it replaces the current one; when its test loss exceeds the current model's by more
 * than the margin (or is not finite), the candidate is discarded: weights and optimizer state stay as they
 * were, the round is recorded as rejected (history, aegis_models_rejected_total) and training goes on.
 * This bounds what a poisoned aggregate that passed the bounds check can do to the model.
 */
export class GlobalModel {
  readonly numParams: number;
  /** The task's name (the --model preset's without --task). */
  readonly taskName: string;
  readonly history: RoundSummary[] = [];
  private w: Float32Array;
  private wBytes: Buffer;
  private readonly optimizer: ServerOptimizer;
  private readonly ledger: PrivacyLedger | null;
  private initialEval: EvalResult | null = null;
  /** Test scores of the current model: what the loss guard compares with (null until known). */
  private current: { accuracy: number; loss: number } | null = null;
  private rejected = 0;
  /** Per-class results of the current model (what status shows), null until an evaluation gave them. */
  private classes: EvaluationStatus | null = null;

  constructor(private readonly deps: GlobalModelDeps) {
    const cfg = deps.config;
    const task = serverTask(cfg);
    this.numParams = task.numParams;
    this.taskName = task.task.name;
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
    this.deps.metrics.evalDuration.observe(e.ms / 1000);
    this.initialEval = e;
    if (Number.isFinite(e.loss)) this.current = { accuracy: e.accuracy, loss: e.loss };
    this.classes = evaluationStatus(0, e);
    this.deps.metrics.testAccuracy.set(e.accuracy);
    this.deps.metrics.testLoss.set(e.loss);
    this.deps.log(`initial model: accuracy ${(e.accuracy * 100).toFixed(1)}%, loss ${e.loss.toFixed(4)}`);
    return e;
  }

  get initial(): EvalResult | null {
    return this.initialEval;
  }

  /** Per-class results of the current model and its predictions on the sample strip. */
  get evaluation(): EvaluationStatus | null {
    return this.classes;
  }

  /** Models the loss guard discarded so far. */
  get modelsRejected(): number {
    return this.rejected;
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
   * Releases one round: the server optimizer steps with the mean update, the ledger is charged, the
   * candidate weights are evaluated, then kept (or discarded by the loss guard) and the round joins the
   * history. Throws only before anything changes.
   */
  async release({ ref, startedAt, outcome: o }: Released): Promise<RoundSummary> {
    const clipNorm = this.ledger?.clipNorm ?? null;
    const margin = this.deps.config.maxLossIncrease;
    const saved = margin > 0 ? this.optimizer.save() : null;
    const candidate = this.optimizer.step(this.w, o.mean);
    // Charged even if the guard then discards the model: the noisy sum was computed, the candidate built
    // from it was evaluated and the keep/discard decision (and the candidate's scores, in the history)
    // depend on it, so the mechanism's output was used and released. Only attempts that end before an
    // aggregate exists (too few inputs, secagg aborted, bounds check failed) cost nothing.
    const epsilon = this.ledger ? this.ledger.charge(o.indicatorSum) : null;
    this.refreshPrivacyGauges();
    const ev = await this.evaluate(candidate);
    const verdict = saved ? this.judge(ev, margin) : null;
    if (verdict) this.optimizer.restore(saved!);
    else {
      this.w = candidate;
      this.wBytes = bytesOf(candidate);
      if (ev && Number.isFinite(ev.loss)) this.current = { accuracy: ev.accuracy, loss: ev.loss };
      // A failed evaluation leaves no per-class results for the new model: none shown rather than stale ones.
      this.classes = ev ? evaluationStatus(ref.round, ev) : null;
    }
    const score = ev ?? { accuracy: NaN, loss: NaN };
    const kept = verdict ? (this.current ?? { accuracy: NaN, loss: NaN }) : score;
    const now = this.deps.clock.now();
    const summary: RoundSummary = {
      round: ref.round,
      attempts: ref.attempt,
      clients: o.clients,
      examples: o.examples,
      stragglers: o.stragglers,
      accuracy: kept.accuracy,
      loss: kept.loss,
      trainLoss: o.trainLoss,
      rejected: verdict ? { reason: verdict.reason, accuracy: score.accuracy, loss: score.loss } : null,
      durationMs: now - startedAt,
      evalMs: ev ? ev.ms : null,
      completedAt: new Date(now).toISOString(),
      secagg: this.deps.config.secagg,
      epsilon,
      clipNorm,
    };
    this.history.push(summary);
    const m = this.deps.metrics;
    if (ev) m.evalDuration.observe(ev.ms / 1000);
    const vsServer = this.ledger?.epsilonAgainstServer();
    const eps =
      epsilon !== null
        ? `, epsilon ${epsilon.toFixed(3)} (released models; ${vsServer!.toFixed(3)} against the server)`
        : '';
    if (verdict) {
      this.rejected++;
      m.modelsRejected.inc({ reason: verdict.kind });
      this.deps.log(
        `round ${ref.round} model rejected (${verdict.reason}): kept the previous model, accuracy ${(kept.accuracy * 100).toFixed(1)}%, loss ${kept.loss.toFixed(4)}${eps}`,
      );
      return summary;
    }
    m.roundsCompleted.inc();
    m.roundDuration.observe(summary.durationMs / 1000);
    if (Number.isFinite(score.accuracy)) {
      m.testAccuracy.set(score.accuracy);
      m.testLoss.set(score.loss);
    }
    this.deps.log(
      `round ${ref.round} done (${o.why}): ${o.clients} updates, ${o.stragglers} stragglers, accuracy ${(score.accuracy * 100).toFixed(1)}%, loss ${score.loss.toFixed(4)}${eps}, ${(summary.durationMs / 1000).toFixed(1)}s${ev ? ` (evaluation ${(ev.ms / 1000).toFixed(2)}s)` : ''}`,
    );
    return summary;
  }

  /**
   * The loss guard's decision on a candidate: discard it when its test loss is not finite or exceeds the
   * current model's by more than the margin. An evaluation that failed decides nothing (the candidate
   * is kept, as without the guard).
   */
  private judge(ev: Scored, margin: number): { kind: ModelRejection; reason: string } | null {
    if (!ev) return null;
    if (!Number.isFinite(ev.loss)) return { kind: 'not_finite', reason: `test loss is ${ev.loss}` };
    const cur = this.current;
    if (cur && ev.loss > cur.loss + margin)
      return {
        kind: 'loss_increase',
        reason: `test loss ${ev.loss.toFixed(4)} is more than ${margin} above the current ${cur.loss.toFixed(4)}`,
      };
    return null;
  }

  /** Scores weights; null when the evaluator failed (the aggregate is kept, only its score is unknown). */
  private async evaluate(w: Float32Array): Promise<Scored> {
    try {
      return await this.deps.evaluate(w);
    } catch (e) {
      this.deps.log(`evaluation failed: ${(e as Error).message}`);
      return null;
    }
  }

  /** What one round's charge costs (its q and z), or null without DP: the ledger entry written before unmasking. */
  get chargeRate(): { q: number; z: number } | null {
    return this.ledger ? { q: this.ledger.cfg.q, z: this.ledger.cfg.noiseMultiplier } : null;
  }

  /** The state after completed round `round`, for the checkpoint (copies: later rounds do not change it). */
  checkpoint(round: number): Checkpoint {
    const cfg = this.deps.config;
    return {
      round,
      model: cfg.model.name,
      optimizer: cfg.serverOptimizer.name,
      weights: this.w.slice(),
      moments: this.optimizer.save(),
      clipNorm: this.ledger?.clipNorm ?? null,
      current: this.current,
      modelsRejected: this.rejected,
      history: [...this.history],
    };
  }

  /**
   * Resumes from a checkpoint (or from none: the initial weights) with the ledger's charges. Refuses a
   * checkpoint of another model or optimizer: its numbers would mean something else here.
   */
  restore(cp: Checkpoint | null, charges: readonly { q: number; z: number }[]): void {
    const cfg = this.deps.config;
    if (cp) {
      if (cp.model !== cfg.model.name || cp.weights.length !== this.numParams)
        throw new Error(
          `the checkpoint is of model ${cp.model} (${cp.weights.length} weights), this server trains ${cfg.model.name} (--model)`,
        );
      if (cp.optimizer !== cfg.serverOptimizer.name)
        throw new Error(
          `the checkpoint's server optimizer is ${cp.optimizer}, this server's is ${cfg.serverOptimizer.name} (--server-opt)`,
        );
      for (const x of [cp.moments.m, cp.moments.v])
        if (x && x.length !== this.numParams)
          throw new Error("the checkpoint's optimizer moments do not fit the model");
      this.optimizer.restore(cp.moments); // throws if the moments do not fit the optimizer
      this.w = cp.weights;
      this.wBytes = bytesOf(cp.weights);
      this.current = cp.current;
      this.rejected = cp.modelsRejected;
      this.history.push(...cp.history);
    }
    if (charges.length && !this.ledger)
      throw new Error('the run has spent privacy budget (ledger entries), but DP is off here (--dp-noise)');
    this.ledger?.restore(charges, cp?.clipNorm ?? null);
    this.refreshPrivacyGauges();
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

/** The per-class part of an evaluation as status carries it; null when the evaluator gave none. */
function evaluationStatus(round: number, e: EvalResult): EvaluationStatus | null {
  const c = e.classes;
  if (!c) return null;
  const preds = e.samplePreds ?? [];
  return {
    round,
    numClasses: c.numClasses,
    perClass: c.perClass,
    confusion: c.confusion,
    samples: e.sampleLabels ? preds.map((pred, i) => ({ label: e.sampleLabels![i], pred })) : [],
  };
}

function bytesOf(w: Float32Array): Buffer {
  return Buffer.from(w.buffer, w.byteOffset, w.byteLength);
}
