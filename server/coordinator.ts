import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { RoundRef, RoundSummary } from '../shared/protocol/messages.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { createAccumulator, type DegreeReport, type RoundOutcome } from './aggregator/index.ts';
import { ClientRegistry, type ClientLink, type ClientRecord } from './clients.ts';
import { systemClock, type Clock } from './clock.ts';
import { Containment } from './contain.ts';
import type { ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import { GlobalModel } from './global-model.ts';
import { Intake } from './intake.ts';
import { LogLimiter } from './limits.ts';
import type { AttemptFailure, InternalErrorSite } from './metrics.ts';
import { RoundCohort, type AttemptCohort } from './round-cohort.ts';
import { dpNote, roundSettings, roundStart } from './round-setup.ts';
import type { CoordinatorDeps, CoordinatorEvents, RoundState } from './round-state.ts';
import type { RunState } from './run-state.ts';
import { AggregateRejections, coordinatorStatus } from './status.ts';
import type { CheckedTask } from '../shared/model/task.ts';
import { serverTask } from './config.ts';
import { newResumeKey } from './sessions.ts';

export type { ClientLink } from './clients.ts';
export type { CoordinatorDeps, CoordinatorEvents, RoundState } from './round-state.ts';
export { SKIP_RETRY_MS } from './round-cohort.ts';

/**
 * The round lifecycle: waiting -> training (select, send weights, collect until the accumulator closes)
 * -> evaluating (server optimizer step, held-out evaluation) -> waiting, until done. An attempt that ends
 * without enough inputs, or in an internal error, leaves the model unchanged and is retried. Every entry
 * point (message, timer, deadline) is contained: an exception is counted and aborts only that attempt.
 */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  private readonly cfg: ServerConfig;
  private readonly clock: Clock;
  private readonly guard: Containment;
  /** The clock rounds get: its callbacks run contained. */
  private readonly timers: Clock;
  private readonly clients: ClientRegistry;
  private readonly model: GlobalModel;
  private readonly intake: Intake;
  private readonly cohorts: RoundCohort;
  private readonly rejections = new AggregateRejections();
  private runId = randomBytes(8).toString('hex');
  /** Binds secure-aggregation tags to this run and this start (attempt numbers restart after a crash). */
  private tagPrefix = `aegisfl/${this.runId}`;
  /** The release of the round in progress (evaluating), awaited by a clean shutdown. */
  private releasing: Promise<void> | null = null;
  private st: RoundState = { kind: 'waiting', pause: null };
  private ref: RoundRef = { round: 1, attempt: 0 };
  private degree: DegreeReport | null = null;
  private stopped = false;

  /** Where the rounds stand; every change is announced ('changed': status observers are pushed a new view). */
  private get state(): RoundState {
    return this.st;
  }

  private set state(next: RoundState) {
    this.st = next;
    this.announce('changed');
  }

  constructor(private readonly deps: CoordinatorDeps) {
    super();
    this.cfg = deps.config;
    this.clock = deps.clock ?? systemClock;
    const logError = deps.logError ?? deps.log;
    // Lines about client input (and errors a message may trigger) are rate-limited: a socket cannot fill the log.
    const errorLog = logError ? new LogLimiter(logError, this.clock) : null;
    const inputLog = deps.log ? new LogLimiter(deps.log, this.clock) : null;
    this.guard = new Containment(
      deps.metrics,
      (where) => this.abort(where),
      errorLog ? (m) => errorLog.write(m) : undefined,
    );
    this.timers = this.guard.clock(this.clock);
    this.model = new GlobalModel({ ...deps, clock: this.clock, log: (m) => this.log(m) });
    this.clients = new ClientRegistry({
      clock: this.clock,
      sessionTtlMs: this.cfg.sessionTtlMs,
      maxSessions: this.cfg.maxSessions,
      metrics: deps.metrics,
      onSendError: (e) => this.guard.count('send', e),
      resumeKey: deps.resumeKeys?.key ?? newResumeKey(),
      previousResumeKey: deps.resumeKeys?.previousKey,
      firstIndex: deps.firstClientIndex,
    });
    const { config, metrics, dataFor } = deps;
    const clients = this.clients;
    this.intake = new Intake({
      config,
      metrics,
      dataFor,
      clients,
      numParams: this.model.numParams,
      guard: this.guard,
      inputLog,
      round: () => ({ ref: this.ref, state: this.state }),
      onReady: () => this.maybeStart(),
    });
    const samplingRate = this.model.samplingRate;
    this.cohorts = new RoundCohort({ config, metrics, samplingRate, random: deps.cohortRandom, inputLog });
  }

  /**
   * Resumes the run from the state store (when there is one), then evaluates the model (the baseline
   * every round is compared with).
   */
  async init(): Promise<EvalResult> {
    const rs = this.deps.runState;
    if (rs) this.resume(rs);
    const e = await this.model.init();
    this.deps.metrics.currentRound.set(this.ref.round);
    return e;
  }

  /** Restores the model, optimizer, ledger and round counter; says so in one line. */
  private resume(rs: RunState): void {
    const { runId, boots, checkpoint: cp } = rs.loaded;
    this.runId = runId;
    this.tagPrefix = boots > 0 ? `aegisfl/${runId}.${boots}` : `aegisfl/${runId}`;
    this.model.restore(
      cp,
      rs.ledger.filter((e) => e.status === 'charged'),
    );
    const round = (cp?.round ?? 0) + 1;
    // Attempt numbers go on from the last one the ledger charged in this round: a charge is never reused.
    const attempt = Math.max(0, ...rs.ledger.filter((e) => e.round === round).map((e) => e.attempt));
    this.ref = { round, attempt };
    if (this.cfg.rounds > 0 && this.model.history.length >= this.cfg.rounds)
      this.state = { kind: 'done', reason: null };
    const p = this.model.privacyStatus();
    const eps = p.enabled ? p.epsilon.toFixed(3) : '0 (DP off)';
    if (boots === 0 && !cp) this.log(`new run ${runId} (state in ${rs.where})`);
    else this.log(`resumed run ${runId} at round ${round}, ε spent ${eps}`);
  }

  get runIdentity(): string {
    return this.runId;
  }

  get globalWeights(): Float32Array {
    return this.model.weights;
  }

  /** The task being trained (its model's architecture and weight shapes; the weights are globalWeights). */
  get task(): CheckedTask {
    return serverTask(this.cfg);
  }

  /** Rounds completed so far: the round the current global weights come from (0 = the initial model). */
  get roundsCompleted(): number {
    return this.model.history.length;
  }

  // Client messages: checked by the intake, which starts an attempt (ready) or feeds the one in progress.
  /** A hello; a cohort member that resumed its session within the attempt rejoins it where it can. */
  readonly hello: Intake['hello'] = (link, raw) => {
    const id = this.intake.hello(link, raw);
    this.guard.run('message', () => this.rejoin(id));
    return id;
  };
  readonly ready: Intake['ready'] = (clientId, raw) => this.intake.ready(clientId, raw);
  readonly update: Intake['update'] = (clientId, raw) => this.intake.update(clientId, raw);
  readonly secagg: Intake['secagg'] = (kind, clientId, raw) => this.intake.secagg(kind, clientId, raw);
  readonly secaggRefuse: Intake['secaggRefuse'] = (clientId, raw) => this.intake.secaggRefuse(clientId, raw);
  readonly roundRefuse: Intake['roundRefuse'] = (clientId, raw) => this.intake.roundRefuse(clientId, raw);
  // Scale-out (server/cluster/): gateways sum their clients' masked inputs and claim them here first.
  readonly claimUpdate: Intake['claimUpdate'] = (clientId, raw, gateway) =>
    this.intake.claimUpdate(clientId, raw, gateway);
  readonly partialSum: Intake['partialSum'] = (gateway, p) => this.intake.partialSum(gateway, p);
  readonly gatewayLost: Intake['gatewayLost'] = (gateway) => this.intake.gatewayLost(gateway);
  readonly releaseClaims: Intake['releaseClaims'] = (gateway, ref, members) =>
    this.intake.releaseClaims(gateway, ref, members);

  /** The session valid credentials resume, or null (see ClientRegistry.sessionOf). */
  sessionOf(raw: unknown): string | null {
    return this.clients.sessionOf(raw);
  }

  disconnect(link: ClientLink): void {
    this.guard.run('disconnect', () => {
      if (!this.clients.disconnect(link)) return; // the link never had an identity
      if (this.state.kind === 'training') this.state.accumulator.settle();
    });
  }

  stop(): void {
    this.stopped = true;
    const s = this.state;
    if (s.kind === 'training') s.accumulator.stop();
    if (s.kind === 'waiting' && s.pause) this.clock.clearTimeout(s.pause);
  }

  /**
   * A clean shutdown (SIGTERM): no new attempt starts, the attempt in training is abandoned (its ledger
   * charge, if written, stays: it may over-count, never under-count), a round being evaluated is finished
   * and checkpointed, and every write has landed when this resolves.
   */
  async shutdown(): Promise<void> {
    const s = this.state;
    this.stop();
    if (s.kind === 'training') {
      this.log(`round ${s.ref.round}.${s.ref.attempt} abandoned: shutting down`);
      this.state = { kind: 'waiting', pause: null };
    }
    await this.releasing;
    await this.deps.runState?.flush();
  }

  /**
   * Member `id` (re)connected during the attempt in training: it is sent what it needs to take part
   * again, where the protocol allows. Without secure aggregation, or in the keys phase, that is the
   * round:start (only if it has not answered yet); in a later phase, that phase's request, if it still
   * owes an answer. A member that missed a whole phase is out of the attempt (its keys or shares are
   * not in the graph): it waits for the next one.
   */
  private rejoin(id: string): void {
    const t = this.state;
    if (t.kind !== 'training') return;
    const member = t.members.get(id);
    if (member === undefined || t.refused.has(member) || t.accumulator.hasReported(member)) return;
    const rec = t.cohort[member - 1];
    const secure = t.accumulator.secure;
    if (secure && secure.phase !== 'keys') {
      secure.resend(member);
      return;
    }
    if (secure && t.accepted.has(`secagg:keys/${member}`)) return; // keys sent: it holds the attempt's state
    this.clients.send(
      rec,
      'round:start',
      roundStart(this.cfg, t.ref, this.model.weightsBytes, t.accumulator, member),
    );
  }

  status(): ServerStatus {
    const { cfg: config, model, clients, state, ref, degree, rejections } = this;
    const { evalBackend, data = null } = this.deps;
    const needed = this.needed;
    const view = { config, model, clients, evalBackend, state, ref, degree, rejections, needed, data };
    return coordinatorStatus(view);
  }

  /** Ready clients a round waits for. */
  private get needed(): number {
    return Math.max(this.cfg.minClients, this.cohorts.minCohort);
  }

  private maybeStart(): void {
    const s = this.state;
    if (s.kind !== 'waiting' || s.pause || this.stopped || !this.model.initial) return;
    if (this.clients.readyCount < this.needed) return;
    const budget = this.model.checkBudget();
    if (!budget.ok) {
      this.state = { kind: 'done', reason: budget.message };
      this.log(`training stopped: ${budget.message}`);
      this.announce('done', this.model.history);
      return;
    }
    this.startRound(this.clients.readyClients());
  }

  private startRound(ready: ClientRecord[]): void {
    const cfg = this.cfg;
    const draw = this.cohorts.choose(ready);
    if (!draw.ok) return this.skipDraw(draw);
    const { cohort, target } = draw;
    const ref = (this.ref = { round: this.ref.round, attempt: this.ref.attempt + 1 });
    const startedAt = this.clock.now();
    const dp = this.model.roundDp();
    const tag = `${this.tagPrefix}/${ref.round}.${ref.attempt}`;
    // A member that refused the plan counts as offline for the rest of the attempt.
    const refused = new Set<number>();
    const settings = roundSettings(cfg, this.model.numParams, cohort.length, target, dp, tag);
    const accumulator = createAccumulator(settings, {
      ref,
      clock: this.timers,
      metrics: this.deps.metrics,
      // A claimed input (scale-out) is on its way in its gateway's partial sum, its client there or not.
      online: (i) => (Boolean(cohort[i - 1]?.link) && !refused.has(i)) || this.intake.claimPending(ref, i),
      send: (i, event, ...args) =>
        cohort[i - 1] && !refused.has(i) ? this.clients.send(cohort[i - 1], event, ...args) : false,
      defer: (fn) => this.guard.defer(fn),
      log: (m) => this.log(`round ${ref.round}.${ref.attempt}: ${m}`),
      close: (o) => this.onClose(ref, o),
      // Only with a state store: without one, unmask requests go out at once, as they always did.
      beforeUnmask: this.deps.runState ? () => this.chargeAttempt(ref) : undefined,
      hold: this.deps.testHold ? (phase) => this.held(phase, ref) : undefined,
      unmask: this.deps.unmask,
    });
    const members = new Map(cohort.map((c, i) => [c.id, i + 1]));
    const accepted = new Map<string, Buffer>();
    this.state = { kind: 'training', ref, startedAt, cohort, members, refused, accumulator, accepted };
    if (accumulator.secure) this.degree = accumulator.secure.degree;
    const weights = this.model.weightsBytes;
    cohort.forEach((c, i) =>
      this.clients.send(c, 'round:start', roundStart(cfg, ref, weights, accumulator, i + 1)),
    );
    this.log(
      `round ${ref.round}.${ref.attempt}: ${draw.note} (${accumulator.description}${dpNote(cfg, dp)})`,
    );
    this.announce('roundStart', { ...ref, selected: cohort.length });
  }

  /** Test hook only (see CoordinatorDeps.testHold). */
  private held(phase: string, ref: RoundRef): boolean {
    const h = this.deps.testHold;
    return h !== undefined && phase === h.phase && ref.round >= h.round;
  }

  /** A draw outside the bounds (counted by the cohort): no attempt; drawn again after a pause. */
  private skipDraw(skip: Extract<AttemptCohort, { ok: false }>): void {
    const { drawn, eligible, reason } = skip;
    this.log(`round ${this.ref.round}: ${skip.note}`);
    this.state = this.pauseThenStart(skip.wait);
    this.announce('cohortSkipped', { round: this.ref.round, drawn, eligible, reason });
  }

  /** The accumulator of attempt `ref` closed: release the aggregate, or fail the attempt. */
  private onClose(ref: RoundRef, o: RoundOutcome): void {
    const t = this.state;
    if (t.kind !== 'training' || t.ref !== ref) return;
    this.deps.metrics.stragglersDropped.inc(o.dropped);
    if (o.culprits?.length) this.cohorts.noteCulprits(t, o.culprits);
    if (!o.ok) {
      if (o.reason === 'aggregate_rejected') this.rejections.note(ref, o.check, o.why);
      // Nothing released: a charge written before unmasking is void, as in the in-memory ledger.
      this.deps.runState?.void(ref).catch((e) => this.guard.count('persist', e));
      return this.failRound(o.reason, o.why, o.updates);
    }
    const reported = t.accumulator.reported;
    this.state = { kind: 'evaluating', ref, startedAt: t.startedAt, selected: t.cohort.length, reported };
    const released = this.chargeAttempt(ref)
      .then(() => this.model.release({ ref, startedAt: t.startedAt, outcome: o }))
      .then(async (summary) => {
        await this.checkpoint(summary.round);
        this.guard.run('finish', () => this.roundEnded(summary));
      })
      .catch((err) => this.guard.fault('finish', err)) // nothing released: the attempt fails, model unchanged
      .finally(() => {
        if (this.releasing === released) this.releasing = null;
      });
    this.releasing = released;
  }

  /**
   * Writes the attempt's privacy charge to the ledger in the store (with DP and a store; else nothing).
   * Resolves when it is durable; secure rounds send no unmask request before, other rounds release
   * nothing before.
   */
  private chargeAttempt(ref: RoundRef): Promise<void> {
    const rate = this.model.chargeRate;
    const rs = this.deps.runState;
    if (!rs || !rate) return Promise.resolve();
    return rs.charge(ref, rate.q, rate.z);
  }

  /** The completed round's checkpoint. A failed write is counted and logged; training goes on (the next round writes again). */
  private async checkpoint(round: number): Promise<void> {
    const rs = this.deps.runState;
    if (!rs) return;
    try {
      await rs.saveCheckpoint(this.model.checkpoint(round));
    } catch (e) {
      this.guard.count('persist', e);
    }
  }

  private roundEnded(summary: RoundSummary): void {
    const cfg = this.cfg;
    this.ref = { round: summary.round + 1, attempt: 0 };
    this.cohorts.roundComplete(); // its culprits may take part again (see RoundCohort)
    this.deps.metrics.currentRound.set(this.ref.round);
    const finished = cfg.rounds > 0 && this.model.history.length >= cfg.rounds;
    this.state = finished ? { kind: 'done', reason: null } : this.pauseThenStart();
    this.clients.broadcast('round:end', summary);
    this.announce('roundEnd', summary);
    if (finished) {
      this.log(`all ${cfg.rounds} rounds done`);
      this.announce('done', this.model.history);
    }
  }

  private failRound(reason: AttemptFailure, why: string, updates: number): void {
    const { round, attempt } = this.ref;
    this.deps.metrics.roundAttemptsFailed.inc({ reason });
    this.log(`round ${round}.${attempt} failed (${why}); model unchanged, retrying`);
    this.state = this.pauseThenStart();
    this.announce('roundFailed', { round, attempt, updates, reason });
  }

  /** Waiting, with the next start after the configured pause (or `ms`). */
  private pauseThenStart(ms = this.cfg.roundPauseMs): RoundState {
    if (this.stopped) return { kind: 'waiting', pause: null };
    const pause = this.timers.setTimeout(() => {
      if (this.state.kind !== 'waiting' || this.state.pause !== pause) return;
      this.state = { kind: 'waiting', pause: null };
      this.maybeStart();
    }, ms);
    return { kind: 'waiting', pause };
  }

  /** An internal error (already counted): the attempt in progress ends with the model unchanged. */
  private abort(where: InternalErrorSite): void {
    const s = this.state;
    if (s.kind === 'training') s.accumulator.stop();
    if (s.kind === 'training' || s.kind === 'evaluating') {
      const updates = s.kind === 'training' ? s.accumulator.reported : s.reported;
      this.failRound('internal_error', `internal error in ${where}`, updates);
    } else if (s.kind === 'waiting' && !s.pause) this.state = this.pauseThenStart(); // e.g. a start that threw
  }

  /** Emits to listeners; one that throws is counted, and the round goes on. */
  private announce<K extends keyof CoordinatorEvents>(event: K, ...args: CoordinatorEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: CoordinatorEvents[K]) => boolean)(event, ...args);
    } catch (e) {
      this.guard.count('listener', e);
    }
  }

  private log(msg: string): void {
    this.deps.log?.(msg);
  }
}
