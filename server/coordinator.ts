import { EventEmitter } from 'node:events';
import type { DataSpec } from '../shared/data/dataset.ts';
import { createRng, permutation, type Rng } from '../shared/data/rng.ts';
import { WeightedMean, applyDelta } from '../shared/fl/fedavg.ts';
import { numParams } from '../shared/model/spec.ts';
import {
  PROTOCOL_VERSION,
  type Ack,
  type BackendName,
  type ClientSource,
  type RejectReason,
  type RoundSummary,
  type ServerToClientEvents,
} from '../shared/protocol/messages.ts';
import { checkHello, checkReady, checkUpdate } from '../shared/protocol/validate.ts';
import type { ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import type { Phase, ServerStatus } from '../shared/protocol/status.ts';
import type { Metrics } from './metrics.ts';

/** How the coordinator talks to one connected client; socket.io in production, anything in tests. */
export interface ClientLink {
  send<E extends keyof ServerToClientEvents>(event: E, ...args: Parameters<ServerToClientEvents[E]>): void;
}

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

/** Thrown back to the transport so it can tell the client and count the reason. */
export class Rejected extends Error {
  constructor(readonly reason: RejectReason, message: string) {
    super(message);
  }
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
    if (deps.initialWeights.length !== this.numParams) throw new Error(`initial weights have ${deps.initialWeights.length} values, model needs ${this.numParams}`);
    this.weights = deps.initialWeights;
    this.weightsBytes = Buffer.from(this.weights.buffer, this.weights.byteOffset, this.weights.byteLength);
    this.rng = createRng(this.cfg.seed ^ 0x5eed);
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
    this.log(`initial model: accuracy ${(this.initial.accuracy * 100).toFixed(1)}%, loss ${this.initial.loss.toFixed(4)}`);
    return this.initial;
  }

  get globalWeights(): Float32Array {
    return this.weights;
  }

  hello(link: ClientLink, raw: unknown): string {
    const h = checkHello(raw);
    if (!h.ok) throw new Rejected(h.reason, h.message);
    const { clientId, source } = h.value;
    let c = this.clients.get(clientId);
    if (!c) {
      c = { id: clientId, index: this.nextIndex++, source, link, backend: null, numExamples: 0 };
      this.clients.set(clientId, c);
    }
    c.link = link;
    this.refreshGauges();
    link.send('welcome', { protocolVersion: PROTOCOL_VERSION, clientId, model: this.cfg.model, data: this.deps.dataFor(c.index) });
    return clientId;
  }

  ready(clientId: string | null, raw: unknown): void {
    const c = clientId ? this.clients.get(clientId) : undefined;
    if (!c?.link) throw new Rejected('unknown_client', 'say hello before ready');
    const r = checkReady(raw, this.cfg.maxExamplesPerClient);
    if (!r.ok) throw new Rejected(r.reason, r.message);
    c.backend = r.value.backend;
    c.numExamples = r.value.numExamples;
    this.refreshGauges();
    this.maybeStart();
  }

  /** Validates and accumulates one update. Throws Rejected with the reason on any problem. */
  update(clientId: string | null, raw: unknown): Ack {
    const c = clientId ? this.clients.get(clientId) : undefined;
    if (!c) throw new Rejected('unknown_client', 'update from a client that never said hello');
    const u = checkUpdate(raw, { numParams: this.numParams, maxExamples: this.cfg.maxExamplesPerClient });
    if (!u.ok) throw new Rejected(u.reason, u.message);
    const { round, attempt, delta, numExamples } = u.value;
    if (round > this.round || (round === this.round && attempt > this.attempt)) {
      throw new Rejected('wrong_round', `update for round ${round}.${attempt}, server is at ${this.round}.${this.attempt}`);
    }
    if (round < this.round || attempt < this.attempt || this.phase !== 'training') {
      throw new Rejected('late', `round ${round}.${attempt} is closed`);
    }
    if (!this.selected.has(c.id)) throw new Rejected('not_selected', `client was not selected for round ${round}`);
    if (this.reported.has(c.id)) throw new Rejected('duplicate', `client already reported for round ${round}`);
    this.sum!.add(delta, numExamples);
    this.reported.add(c.id);
    this.examples += numExamples;
    this.deps.metrics.updatesAccepted.inc();
    if (this.reported.size === this.selected.size) this.closeRound('all reported');
    else this.closeIfOnlyOfflineRemain();
    return { ok: true };
  }

  disconnect(clientId: string, link: ClientLink): void {
    const c = this.clients.get(clientId);
    if (!c || c.link !== link) return; // a newer socket already took over
    c.link = null;
    this.refreshGauges();
    if (this.phase === 'training') this.closeIfOnlyOfflineRemain();
  }

  stop(): void {
    this.stopped = true;
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
      deadlineAt: this.deadlineAt,
      clients: { connected, ready, byBackend },
      model: { name: this.cfg.model.name, numParams: this.numParams },
      evalBackend: this.deps.evalBackend,
      initial: this.initial,
      history: this.history,
    };
  }

  private readyClients(): ClientRecord[] {
    return [...this.clients.values()].filter((c) => c.link && c.backend);
  }

  private refreshGauges(): void {
    const s = this.status();
    this.deps.metrics.clientsConnected.set(s.clients.connected);
    this.deps.metrics.clientsByBackend.reset();
    for (const [b, n] of Object.entries(s.clients.byBackend)) this.deps.metrics.clientsByBackend.set({ backend: b }, n);
  }

  private maybeStart(): void {
    if (this.phase !== 'waiting' || this.nextTimer || this.stopped || !this.initial) return;
    const ready = this.readyClients();
    if (ready.length < this.cfg.minClients) return;
    this.startRound(ready);
  }

  private startRound(ready: ClientRecord[]): void {
    this.attempt++;
    const order = permutation(ready.length, this.rng);
    const chosen = Array.from(order.subarray(0, Math.min(this.cfg.clientsPerRound, ready.length)), (i) => ready[i]);
    this.selected = new Set(chosen.map((c) => c.id));
    this.reported = new Set();
    this.sum = new WeightedMean(this.numParams);
    this.examples = 0;
    this.phase = 'training';
    this.roundStartedAt = Date.now();
    this.deadlineAt = this.roundStartedAt + this.cfg.roundDeadlineMs;
    this.deadlineTimer = setTimeout(() => this.closeRound('deadline'), this.cfg.roundDeadlineMs);
    const { epochs, batchSize, learningRate, optimizer } = this.cfg;
    for (const c of chosen) {
      c.link!.send('round:start', {
        round: this.round,
        attempt: this.attempt,
        model: this.cfg.model,
        train: { epochs, batchSize, learningRate, optimizer },
        deadlineMs: this.cfg.roundDeadlineMs,
        weights: this.weightsBytes,
      });
    }
    this.log(`round ${this.round}.${this.attempt}: selected ${chosen.length} of ${ready.length} ready clients`);
    this.emit('roundStart', { round: this.round, attempt: this.attempt, selected: chosen.length });
  }

  /** Ends the round early when every selected client that has not reported is offline (they cannot report). */
  private closeIfOnlyOfflineRemain(): void {
    if (this.phase !== 'training' || this.reported.size < this.cfg.minUpdates) return;
    for (const id of this.selected) {
      if (!this.reported.has(id) && this.clients.get(id)?.link) return;
    }
    this.closeRound('remaining clients offline');
  }

  private closeRound(why: string): void {
    if (this.phase !== 'training') return;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    this.deadlineAt = null;
    const stragglers = this.selected.size - this.reported.size;
    this.deps.metrics.stragglersDropped.inc(stragglers);
    const sum = this.sum!;
    this.sum = null;
    if (sum.clients < this.cfg.minUpdates) {
      this.deps.metrics.roundAttemptsFailed.inc({ reason: 'too_few_updates' });
      this.log(`round ${this.round}.${this.attempt} failed (${why}): ${sum.clients} of ${this.cfg.minUpdates} required updates; model unchanged, retrying`);
      this.phase = 'waiting';
      this.emit('roundFailed', { round: this.round, attempt: this.attempt, updates: sum.clients });
      this.scheduleNext();
      return;
    }
    this.phase = 'evaluating';
    void this.finishRound(sum, stragglers, why);
  }

  private async finishRound(sum: WeightedMean, stragglers: number, why: string): Promise<void> {
    this.weights = applyDelta(this.weights, sum.mean(), this.cfg.serverLearningRate);
    this.weightsBytes = Buffer.from(this.weights.buffer, this.weights.byteOffset, this.weights.byteLength);
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
      clients: sum.clients,
      examples: this.examples,
      stragglers,
      accuracy: ev.accuracy,
      loss: ev.loss,
      durationMs,
      completedAt: new Date().toISOString(),
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
      `round ${this.round} done (${why}): ${sum.clients} updates, ${stragglers} stragglers, accuracy ${(ev.accuracy * 100).toFixed(1)}%, loss ${ev.loss.toFixed(4)}, ${(durationMs / 1000).toFixed(1)}s`,
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
