import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { DataSpec } from '../shared/data/dataset.ts';
import { decodeAggregate, planEncoding, vectorLength, type EncodingPlan } from '../shared/fl/encoding.ts';
import { chooseDegree, harary } from '../shared/secagg/graph.ts';
import { addInto } from '../shared/secagg/ring.ts';
import { createRng, permutation, type Rng } from '../shared/data/rng.ts';
import { WeightedMean } from '../shared/fl/fedavg.ts';
import { createServerOptimizer, type ServerOptimizer } from '../shared/fl/server-opt.ts';
import { numParams } from '../shared/model/spec.ts';
import {
  PROTOCOL_VERSION,
  type Ack,
  type BackendName,
  type ClientSource,
  type RoundRef,
  type SecAggRoundInfo,
  type RoundSummary,
  type ServerToClientEvents,
} from '../shared/protocol/messages.ts';
import { checkHello, checkReady, checkUpdate } from '../shared/protocol/validate.ts';
import { isRecord } from '../shared/base/record.ts';
import { samplingRate, type ServerConfig } from './config.ts';
import { PrivacyLedger } from './privacy.ts';
import { isRejectReason, ProtocolError } from '../shared/base/errors.ts';
import { SecureRound, type SecureOutcome } from './secure-round.ts';
import type { EvalResult } from './evaluator.ts';
import type { SecAggActivePhase } from '../shared/secagg/types.ts';
import type { Phase, ServerStatus } from '../shared/protocol/status.ts';
import type { Metrics } from './metrics.ts';

/** How the coordinator talks to one connected client; socket.io in production, anything in tests. */
export interface ClientLink {
  send<E extends keyof ServerToClientEvents>(event: E, ...args: Parameters<ServerToClientEvents[E]>): void;
}

/** How updates travel this round: plain float32, ring vectors (DP without masks), or masked ring vectors. */
type RoundMode = 'float' | 'ring' | 'secure';

interface ClientRecord {
  id: string;
  index: number;
  source: ClientSource;
  link: ClientLink | null;
  backend: BackendName | null;
  numExamples: number;
}

export interface CoordinatorDeps {
  config: ServerConfig;
  metrics: Metrics;
  evaluate: (weights: Float32Array) => Promise<EvalResult>;
  evalBackend: string;
  initialWeights: Float32Array;
  dataFor: (clientIndex: number) => DataSpec;
  log?: (msg: string) => void;
}

/**
 * The round state machine: waiting -> training (select, send weights, collect until everyone reported
 * or the deadline) -> evaluating (FedAvg step, held-out evaluation) -> waiting. A round that ends with
 * fewer than minUpdates accepted updates is discarded (the model is unchanged) and retried.
 */
export class Coordinator extends EventEmitter {
  private readonly cfg: ServerConfig;
  private readonly clients = new Map<string, ClientRecord>();
  private readonly numParams: number;
  private readonly rng: Rng;
  private weights: Float32Array;
  private weightsBytes: Buffer;
  private phase: Phase = 'waiting';
  private round = 1;
  private attempt = 0;
  private selected = new Set<string>();
  private reported = new Set<string>();
  private sum: WeightedMean | null = null;
  private ringSum: Uint32Array | null = null;
  private mode: RoundMode = 'float';
  private plan: EncodingPlan | null = null;
  private secure: SecureRound | null = null;
  private cohortIndex = new Map<string, number>();
  private cohort: ClientRecord[] = [];
  private reportedExamples = new Map<string, number>();
  private degree: { k: number; t: number } | null = null;
  private readonly ledger: PrivacyLedger | null;
  private stopReason: string | null = null;
  private readonly runId = randomBytes(8).toString('hex');
  private readonly optimizer: ServerOptimizer;
  private examples = 0;
  private roundStartedAt = 0;
  private deadlineAt: number | null = null;
  private deadlineTimer: ReturnType<typeof setTimeout> | null = null;
  private nextTimer: ReturnType<typeof setTimeout> | null = null;
  private nextIndex = 0;
  private initial: EvalResult | null = null;
  private readonly history: RoundSummary[] = [];
  private stopped = false;

  constructor(private readonly deps: CoordinatorDeps) {
    super();
    this.cfg = deps.config;
    this.numParams = numParams(this.cfg.model);
    if (deps.initialWeights.length !== this.numParams)
      throw new Error(
        `initial weights have ${deps.initialWeights.length} values, model needs ${this.numParams}`,
      );
    this.weights = deps.initialWeights;
    this.weightsBytes = Buffer.from(this.weights.buffer, this.weights.byteOffset, this.weights.byteLength);
    this.rng = createRng(this.cfg.seed ^ 0x5eed);
    this.optimizer = createServerOptimizer(
      { ...this.cfg.serverOptimizer, lr: this.cfg.serverLearningRate },
      this.numParams,
    );
    const dp = this.cfg.dp;
    this.ledger = dp
      ? new PrivacyLedger({
          noiseMultiplier: dp.noiseMultiplier,
          delta: dp.delta,
          epsilonBudget: dp.epsilonBudget,
          q: samplingRate(this.cfg),
          initialClip: dp.clipNorm,
          adaptive: dp.adaptive,
          expectedClients: this.cfg.clientsPerRound,
        })
      : null;
    this.refreshPrivacyGauges();
  }

  private refreshPrivacyGauges(): void {
    if (!this.ledger) return;
    const p = this.ledger.status();
    const m = this.deps.metrics;
    m.dpEpsilon.set(p.epsilon);
    m.dpDelta.set(p.delta);
    m.dpBudget.set(p.epsilonBudget);
    m.dpNoise.set(p.noiseMultiplier);
    m.dpClip.set(p.clipNorm);
  }

  private log(msg: string): void {
    this.deps.log?.(msg);
  }

  /** Evaluates the initial model (the baseline every round is compared with). */
  async init(): Promise<EvalResult> {
    this.initial = await this.deps.evaluate(this.weights);
    this.deps.metrics.testAccuracy.set(this.initial.accuracy);
    this.deps.metrics.testLoss.set(this.initial.loss);
    this.deps.metrics.currentRound.set(this.round);
    this.log(
      `initial model: accuracy ${(this.initial.accuracy * 100).toFixed(1)}%, loss ${this.initial.loss.toFixed(4)}`,
    );
    return this.initial;
  }

  get globalWeights(): Float32Array {
    return this.weights;
  }

  hello(link: ClientLink, raw: unknown): string {
    const h = checkHello(raw);
    if (!h.ok) throw new ProtocolError(h.reason, h.message);
    const { clientId, source } = h.value;
    let c = this.clients.get(clientId);
    if (!c) {
      c = { id: clientId, index: this.nextIndex++, source, link, backend: null, numExamples: 0 };
      this.clients.set(clientId, c);
    }
    c.link = link;
    this.refreshGauges();
    link.send('welcome', {
      protocolVersion: PROTOCOL_VERSION,
      clientId,
      model: this.cfg.model,
      data: this.deps.dataFor(c.index),
    });
    return clientId;
  }

  ready(clientId: string | null, raw: unknown): void {
    const c = clientId ? this.clients.get(clientId) : undefined;
    if (!c?.link) throw new ProtocolError('unknown_client', 'say hello before ready');
    const r = checkReady(raw, this.cfg.maxExamplesPerClient);
    if (!r.ok) throw new ProtocolError(r.reason, r.message);
    c.backend = r.value.backend;
    c.numExamples = r.value.numExamples;
    this.refreshGauges();
    this.maybeStart();
  }

  /** Validates and accumulates one update. Throws ProtocolError with the reason on any problem. */
  update(clientId: string | null, raw: unknown): Ack {
    const c = clientId ? this.clients.get(clientId) : undefined;
    if (!c) throw new ProtocolError('unknown_client', 'update from a client that never said hello');
    const ringLength = this.mode === 'float' ? undefined : vectorLength(this.numParams);
    const u = checkUpdate(raw, {
      numParams: this.numParams,
      maxExamples: this.cfg.maxExamplesPerClient,
      ringLength,
    });
    if (!u.ok) throw new ProtocolError(u.reason, u.message);
    const { round, attempt, numExamples } = u.value;
    this.checkRef({ round, attempt }, 'update');
    if (!this.selected.has(c.id))
      throw new ProtocolError('not_selected', `client was not selected for round ${round}`);
    if (this.reported.has(c.id))
      throw new ProtocolError('duplicate', `client already reported for round ${round}`);
    if (this.mode === 'secure') {
      this.secure!.masked(this.cohortIndex.get(c.id)!, u.value.ring!);
    } else if (this.mode === 'ring') {
      addInto(this.ringSum!, u.value.ring!);
    } else {
      this.sum!.add(u.value.delta!, numExamples);
    }
    this.reported.add(c.id);
    this.reportedExamples.set(c.id, numExamples);
    this.examples += numExamples;
    this.deps.metrics.updatesAccepted.inc();
    if (this.mode !== 'secure') {
      if (this.reported.size === this.selected.size) this.closeRound('all reported');
      else this.closeIfOnlyOfflineRemain();
    }
    return { ok: true };
  }

  /** A message for the round attempt in progress, or a reason why not. */
  private checkRef(ref: RoundRef, what: string): void {
    const { round, attempt } = ref;
    if (!Number.isInteger(round) || !Number.isInteger(attempt))
      throw new ProtocolError('malformed', `${what} must name its round and attempt`);
    if (round > this.round || (round === this.round && attempt > this.attempt)) {
      throw new ProtocolError(
        'wrong_round',
        `${what} for round ${round}.${attempt}, server is at ${this.round}.${this.attempt}`,
      );
    }
    if (round < this.round || attempt < this.attempt || this.phase !== 'training')
      throw new ProtocolError('late', `round ${round}.${attempt} is closed`);
  }

  /** secagg:keys / secagg:shares / secagg:reveal: routed to the secure round after the common checks. */
  secagg(kind: 'keys' | 'shares' | 'reveal', clientId: string | null, raw: unknown): Ack {
    const c = clientId ? this.clients.get(clientId) : undefined;
    if (!c) throw new ProtocolError('unknown_client', `secagg:${kind} from a client that never said hello`);
    if (!isRecord(raw)) throw new ProtocolError('malformed', `secagg:${kind} must be an object`);
    this.checkRef({ round: raw.round as number, attempt: raw.attempt as number }, `secagg:${kind}`);
    if (this.mode !== 'secure' || !this.secure)
      throw new ProtocolError('wrong_phase', 'this round does not use secure aggregation');
    const index = this.cohortIndex.get(c.id);
    if (index === undefined)
      throw new ProtocolError('not_selected', `client was not selected for round ${this.round}`);
    const s = this.secure;
    if (kind === 'keys') s.keys(index, raw);
    else if (kind === 'shares') s.shares(index, raw);
    else s.reveal(index, raw);
    return { ok: true };
  }

  /** A client declined a request (e.g. both shares of one peer): counted, and it is treated as a dropout. */
  secaggRefuse(clientId: string | null, raw: unknown): void {
    const reason = (raw as { reason?: unknown } | null)?.reason;
    // The label comes from the closed set, never from the client's string (one series per value).
    const r = isRejectReason(reason) ? reason : 'unknown';
    this.deps.metrics.secaggRefusals.inc({ reason: r });
    this.log(`client ${clientId ?? '?'} refused a secure-aggregation request: ${r}`);
  }

  disconnect(clientId: string, link: ClientLink): void {
    const c = this.clients.get(clientId);
    if (!c || c.link !== link) return; // a newer socket already took over
    c.link = null;
    this.refreshGauges();
    if (this.phase !== 'training') return;
    if (this.secure) this.secure.maybeCloseEarly();
    else this.closeIfOnlyOfflineRemain();
  }

  stop(): void {
    this.stopped = true;
    this.secure?.stop();
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    if (this.nextTimer) clearTimeout(this.nextTimer);
  }

  status(): ServerStatus {
    const byBackend: Record<string, number> = {};
    let connected = 0;
    let ready = 0;
    for (const c of this.clients.values()) {
      if (!c.link) continue;
      connected++;
      if (c.backend) {
        ready++;
        byBackend[c.backend] = (byBackend[c.backend] ?? 0) + 1;
      }
    }
    return {
      protocolVersion: PROTOCOL_VERSION,
      phase: this.phase,
      round: this.round,
      attempt: this.attempt,
      targetRounds: this.cfg.rounds,
      selected: this.selected.size,
      reported: this.reported.size,
      deadlineAt: this.secure ? this.secure.deadlineAt : this.deadlineAt,
      clients: { connected, ready, byBackend },
      model: { name: this.cfg.model.name, numParams: this.numParams },
      evalBackend: this.deps.evalBackend,
      initial: this.initial,
      history: this.history,
      secagg: {
        enabled: this.cfg.secagg,
        phase: this.secure && this.phase === 'training' ? (this.secure.phase as SecAggActivePhase) : null,
        k: this.degree?.k ?? null,
        t: this.degree?.t ?? null,
      },
      privacy: this.ledger ? this.ledger.status() : { enabled: false },
      stopReason: this.stopReason,
    };
  }

  private readyClients(): ClientRecord[] {
    return [...this.clients.values()].filter((c) => c.link && c.backend);
  }

  private refreshGauges(): void {
    const s = this.status();
    this.deps.metrics.clientsConnected.set(s.clients.connected);
    this.deps.metrics.clientsByBackend.reset();
    for (const [b, n] of Object.entries(s.clients.byBackend))
      this.deps.metrics.clientsByBackend.set({ backend: b }, n);
  }

  private maybeStart(): void {
    if (this.phase !== 'waiting' || this.nextTimer || this.stopped || !this.initial) return;
    const ready = this.readyClients();
    if (ready.length < this.cfg.minClients) return;
    if (this.ledger) {
      const check = this.ledger.checkNextRound();
      if (!check.ok) {
        this.stopReason = check.message;
        this.phase = 'done';
        this.log(`training stopped: ${check.message}`);
        this.emit('done', this.history);
        return;
      }
    }
    this.startRound(ready);
  }

  private startRound(ready: ClientRecord[]): void {
    this.attempt++;
    const order = permutation(ready.length, this.rng);
    const chosen = Array.from(
      order.subarray(0, Math.min(this.cfg.clientsPerRound, ready.length)),
      (i) => ready[i],
    );
    this.cohort = chosen;
    this.cohortIndex = new Map(chosen.map((c, i) => [c.id, i + 1]));
    this.selected = new Set(chosen.map((c) => c.id));
    this.reported = new Set();
    this.reportedExamples = new Map();
    this.examples = 0;
    this.phase = 'training';
    this.roundStartedAt = Date.now();
    const cfg = this.cfg;
    this.mode = cfg.secagg ? 'secure' : cfg.dp ? 'ring' : 'float';
    this.plan = null;
    this.sum = null;
    this.ringSum = null;
    this.secure = null;
    if (this.mode === 'float') {
      this.sum = new WeightedMean(this.numParams);
    } else {
      const dp = cfg.dp;
      this.plan = planEncoding({
        numParams: this.numParams,
        maxClients: chosen.length,
        clipNorm: dp ? this.ledger!.clipNorm : null,
        coordClip: cfg.coordClip,
        weighting: dp ? 'uniform' : 'examples',
        maxExamples: Math.max(...chosen.map((c) => c.numExamples)),
        noise: dp
          ? {
              multiplier: this.ledger!.valueNoise,
              minSurvivors: cfg.minUpdates,
              bitStd: dp.adaptive?.indicatorStd ?? 0,
            }
          : null,
      });
      this.ringSum = this.mode === 'ring' ? new Uint32Array(vectorLength(this.numParams)) : null;
    }
    const ref = { round: this.round, attempt: this.attempt };
    let secaggInfo: ((i: number) => SecAggRoundInfo) | null = null;
    if (this.mode === 'secure') {
      const n = chosen.length;
      const degree =
        n >= 2
          ? chooseDegree(n, {
              dropout: cfg.secaggDropout,
              corrupt: cfg.secaggCorrupt,
              sigma: 40,
              eta: 20,
              thresholdFraction: cfg.secaggThreshold,
            })
          : { k: 0, t: 1, complete: true };
      this.degree = degree;
      const neighbours = harary(n, degree.k).map((l) => l.map((v) => v + 1));
      const tag = `aegisfl/${this.runId}/${this.round}.${this.attempt}`;
      const linkOf = (i: number): ClientLink | null => chosen[i - 1]?.link ?? null;
      const sendTo =
        <E extends 'secagg:roster' | 'secagg:inbox' | 'secagg:unmask'>(event: E) =>
        (i: number, m: Parameters<ServerToClientEvents[E]>[0]): boolean => {
          const l = linkOf(i);
          if (!l) return false;
          (l.send as (e: E, m: unknown) => void)(event, m);
          return true;
        };
      this.secure = new SecureRound({
        ref,
        tag,
        n,
        neighbours,
        t: degree.t,
        vectorLength: vectorLength(this.numParams),
        minSurvivors: cfg.minUpdates,
        keysDeadlineMs: cfg.secaggKeysDeadlineMs,
        sharesDeadlineMs: cfg.secaggSharesDeadlineMs,
        maskedDeadlineAt: this.roundStartedAt + cfg.roundDeadlineMs,
        unmaskDeadlineMs: cfg.secaggUnmaskDeadlineMs,
        metrics: this.deps.metrics,
        send: {
          roster: sendTo('secagg:roster'),
          inbox: sendTo('secagg:inbox'),
          unmask: sendTo('secagg:unmask'),
        },
        online: (i) => linkOf(i) !== null,
        log: (m) => this.log(`round ${ref.round}.${ref.attempt}: ${m}`),
        done: (o) => this.onSecureDone(o),
      });
      secaggInfo = (i) => ({ tag, index: i, n, t: degree.t, k: degree.k });
      this.deadlineAt = null;
    } else {
      this.deadlineAt = this.roundStartedAt + cfg.roundDeadlineMs;
      this.deadlineTimer = setTimeout(() => this.closeRound('deadline'), cfg.roundDeadlineMs);
    }
    const { epochs, batchSize, learningRate, optimizer, proximalMu, augment } = cfg;
    chosen.forEach((c, i) => {
      c.link!.send('round:start', {
        ...ref,
        model: cfg.model,
        train: {
          epochs,
          batchSize,
          learningRate,
          optimizer,
          ...(proximalMu > 0 ? { proximalMu } : {}),
          ...(augment ? { augment } : {}),
        },
        deadlineMs: cfg.roundDeadlineMs,
        weights: this.weightsBytes,
        ...(this.plan ? { encoding: this.plan } : {}),
        ...(secaggInfo ? { secagg: secaggInfo(i + 1) } : {}),
      });
    });
    const how =
      this.mode === 'secure'
        ? `secure aggregation, k = ${this.degree!.k}, t = ${this.degree!.t}`
        : this.mode === 'ring'
          ? 'ring-encoded, unmasked'
          : 'plain float32';
    this.log(
      `round ${this.round}.${this.attempt}: selected ${chosen.length} of ${ready.length} ready clients (${how}${cfg.dp ? `, DP z = ${cfg.dp.noiseMultiplier}, C = ${this.ledger!.clipNorm.toPrecision(3)}` : ''})`,
    );
    this.emit('roundStart', { round: this.round, attempt: this.attempt, selected: chosen.length });
  }

  private onSecureDone(o: SecureOutcome): void {
    if (this.phase !== 'training') return;
    const stragglers = this.selected.size - (o.ok ? o.survivors.length : 0);
    this.deps.metrics.stragglersDropped.inc(Math.max(0, this.selected.size - this.reported.size));
    if (!o.ok) {
      this.failRound('secagg_aborted', o.reason, this.reported.size);
      return;
    }
    const survivorsExamples = o.survivors.reduce(
      (s, i) => s + (this.reportedExamples.get(this.cohort[i - 1].id) ?? 0),
      0,
    );
    this.examples = survivorsExamples;
    this.aggregateRing(o.sum, o.survivors.length, stragglers, 'secure aggregation complete');
  }

  /** Decodes a ring sum of n contributions and finishes the round with it. */
  private aggregateRing(sum: Uint32Array, n: number, stragglers: number, why: string): void {
    const agg = decodeAggregate(sum, n, this.plan!);
    this.phase = 'evaluating';
    void this.finishRound(agg.mean, n, stragglers, why, this.cfg.dp?.adaptive ? agg.indicatorSum : null);
  }

  private failRound(reason: string, why: string, updates: number): void {
    this.deps.metrics.roundAttemptsFailed.inc({ reason });
    this.log(`round ${this.round}.${this.attempt} failed (${why}); model unchanged, retrying`);
    this.phase = 'waiting';
    this.secure = null;
    this.emit('roundFailed', { round: this.round, attempt: this.attempt, updates, reason });
    this.scheduleNext();
  }

  /** Ends the round early when every selected client that has not reported is offline (they cannot report). */
  private closeIfOnlyOfflineRemain(): void {
    if (this.phase !== 'training' || this.mode === 'secure' || this.reported.size < this.cfg.minUpdates)
      return;
    for (const id of this.selected) {
      if (!this.reported.has(id) && this.clients.get(id)?.link) return;
    }
    this.closeRound('remaining clients offline');
  }

  private closeRound(why: string): void {
    if (this.phase !== 'training' || this.mode === 'secure') return;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    this.deadlineAt = null;
    const stragglers = this.selected.size - this.reported.size;
    this.deps.metrics.stragglersDropped.inc(stragglers);
    const n = this.reported.size;
    if (n < this.cfg.minUpdates) {
      this.failRound('too_few_updates', `${why}: ${n} of ${this.cfg.minUpdates} required updates`, n);
      return;
    }
    if (this.mode === 'ring') {
      this.aggregateRing(this.ringSum!, n, stragglers, why);
      return;
    }
    const sum = this.sum!;
    this.sum = null;
    this.phase = 'evaluating';
    void this.finishRound(sum.mean(), sum.clients, stragglers, why, null);
  }

  private async finishRound(
    mean: Float32Array,
    clients: number,
    stragglers: number,
    why: string,
    indicatorSum: number | null,
  ): Promise<void> {
    const clipUsed = this.ledger?.clipNorm ?? null;
    this.weights = this.optimizer.step(this.weights, mean);
    this.weightsBytes = Buffer.from(this.weights.buffer, this.weights.byteOffset, this.weights.byteLength);
    const epsilon = this.ledger ? this.ledger.charge(indicatorSum) : null;
    this.refreshPrivacyGauges();
    this.secure = null;
    let ev: EvalResult;
    try {
      ev = await this.deps.evaluate(this.weights);
    } catch (e) {
      // The aggregate is kept (it is valid); only its score is unknown.
      this.log(`evaluation failed: ${(e as Error).message}`);
      ev = { accuracy: NaN, loss: NaN, examples: 0, ms: 0 };
    }
    const durationMs = Date.now() - this.roundStartedAt;
    const summary: RoundSummary = {
      round: this.round,
      attempts: this.attempt,
      clients,
      examples: this.examples,
      stragglers,
      accuracy: ev.accuracy,
      loss: ev.loss,
      durationMs,
      completedAt: new Date().toISOString(),
      secagg: this.mode === 'secure',
      epsilon,
      clipNorm: clipUsed,
    };
    this.history.push(summary);
    const m = this.deps.metrics;
    m.roundsCompleted.inc();
    m.roundDuration.observe(durationMs / 1000);
    m.evalDuration.observe(ev.ms / 1000);
    if (Number.isFinite(ev.accuracy)) {
      m.testAccuracy.set(ev.accuracy);
      m.testLoss.set(ev.loss);
    }
    this.log(
      `round ${this.round} done (${why}): ${clients} updates, ${stragglers} stragglers, accuracy ${(ev.accuracy * 100).toFixed(1)}%, loss ${ev.loss.toFixed(4)}${epsilon !== null ? `, epsilon ${epsilon.toFixed(3)}` : ''}, ${(durationMs / 1000).toFixed(1)}s`,
    );
    for (const c of this.clients.values()) c.link?.send('round:end', summary);
    this.round++;
    this.attempt = 0;
    m.currentRound.set(this.round);
    this.emit('roundEnd', summary);
    if (this.cfg.rounds > 0 && this.history.length >= this.cfg.rounds) {
      this.phase = 'done';
      this.log(`all ${this.cfg.rounds} rounds done`);
      this.emit('done', this.history);
      return;
    }
    this.phase = 'waiting';
    this.scheduleNext();
  }

  private scheduleNext(): void {
    if (this.stopped) return;
    this.nextTimer = setTimeout(() => {
      this.nextTimer = null;
      this.maybeStart();
    }, this.cfg.roundPauseMs);
  }
}
