import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { isRecord } from '../shared/base/record.ts';
import { isRejectReason, ProtocolError } from '../shared/base/errors.ts';
import type { DataSpec } from '../shared/data/dataset.ts';
import { createRng, type Rng } from '../shared/data/rng.ts';
import type { SecureRandom } from '../shared/dp/secure-random.ts';
import type { Culprit, CulpritKind } from '../shared/secagg/types.ts';
import { PROTOCOL_VERSION, type Ack, type RoundRef, type RoundSummary } from '../shared/protocol/messages.ts';
import type { DefenceStatus, ServerStatus } from '../shared/protocol/status.ts';
import { checkUpdate } from '../shared/protocol/validate.ts';
import {
  createAccumulator,
  minCohort,
  ringLengthFor,
  roundMode,
  type DegreeReport,
  type RoundOutcome,
  type SecAggClientMessage,
} from './aggregator/index.ts';
import { ClientRegistry, type ClientLink, type ClientRecord } from './clients.ts';
import { systemClock, type Clock } from './clock.ts';
import { Containment } from './contain.ts';
import { LogLimiter } from './limits.ts';
import { chooseCohort, type CohortRule, type CohortSkip } from './cohort.ts';
import type { ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import { GlobalModel } from './global-model.ts';
import type { AttemptFailure, InternalErrorSite, Metrics } from './metrics.ts';
import { roundSettings, roundStart } from './round-setup.ts';
import type { CoordinatorEvents, RoundState, Training } from './round-state.ts';
import { statusView } from './status.ts';

export type { ClientLink } from './clients.ts';
export type { CoordinatorEvents, RoundState } from './round-state.ts';

export interface CoordinatorDeps {
  config: ServerConfig;
  metrics: Metrics;
  evaluate: (weights: Float32Array) => Promise<EvalResult>;
  evalBackend: string;
  initialWeights: Float32Array;
  dataFor: (clientIndex: number) => DataSpec;
  log?: (msg: string) => void;
  /** Internal errors are logged here (default: log). */
  logError?: (msg: string) => void;
  clock?: Clock;
  /** CSPRNG of Poisson cohort draws (default: one keyed by the OS); tests inject a seeded one. */
  cohortRandom?: SecureRandom;
}

/** Least wait before drawing again after a draw outside the cohort bounds (no busy loop at --round-pause-ms 0). */
export const SKIP_RETRY_MS = 1000;
/** Culprit ids a log line names (the rest are counted). */
const CULPRITS_LOGGED = 5;

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
  private readonly inputLog: LogLimiter | null;
  /** The clock rounds get: its callbacks run contained. */
  private readonly timers: Clock;
  private readonly clients: ClientRegistry;
  private readonly model: GlobalModel;
  private readonly rng: Rng;
  private readonly runId = randomBytes(8).toString('hex');
  private readonly ringLength: number | undefined;
  private readonly minCohort: number;
  private readonly cohortRule: CohortRule;
  private state: RoundState = { kind: 'waiting', pause: null };
  private ref: RoundRef = { round: 1, attempt: 0 };
  private degree: DegreeReport | null = null;
  /**
   * Clients named as culprits in an attempt of the current round: they sit out its remaining attempts.
   * Naming is sound (shares are dealer-signed, so an honest client is never named), and keeping them out
   * stops one cheater from aborting every retry. It lasts only until the round completes: a session is
   * not a person (a cheater can return under a new session, so a longer ban buys little), and the set
   * stays bounded by one cohort instead of growing with the run.
   */
  private readonly culprits = new Set<string>();
  private aggregatesRejected = 0;
  private lastAggregateRejection: DefenceStatus['lastAggregateRejection'] = null;
  private stopped = false;

  constructor(private readonly deps: CoordinatorDeps) {
    super();
    this.cfg = deps.config;
    this.clock = deps.clock ?? systemClock;
    const logError = deps.logError ?? deps.log;
    // Lines about client input (and errors a message may trigger) are rate-limited: a socket cannot fill the log.
    const errorLog = logError ? new LogLimiter(logError, this.clock) : null;
    this.inputLog = deps.log ? new LogLimiter(deps.log, this.clock) : null;
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
    });
    this.rng = createRng(this.cfg.seed ^ 0x5eed);
    const mode = roundMode(this.cfg);
    this.ringLength = ringLengthFor(mode, this.model.numParams);
    this.minCohort = minCohort(mode);
    // Who takes part must match what the ledger charges: Poisson sampling at q exactly when it charges
    // q < 1 (--dp-population), from every eligible client and a CSPRNG; otherwise a fixed-size draw from
    // the seeded experiment RNG, charged at q = 1.
    const q = this.model.samplingRate;
    this.cohortRule =
      q < 1
        ? { kind: 'poisson', q, random: deps.cohortRandom }
        : { kind: 'fixed', size: this.cfg.clientsPerRound, rng: this.rng };
  }

  /** Evaluates the initial model (the baseline every round is compared with). */
  async init(): Promise<EvalResult> {
    const e = await this.model.init();
    this.deps.metrics.currentRound.set(this.ref.round);
    return e;
  }

  get globalWeights(): Float32Array {
    return this.model.weights;
  }

  /** Starts or resumes the link's session (see ClientRegistry.hello); returns the session id. */
  hello(link: ClientLink, raw: unknown): string {
    return this.guard.message(() => {
      const { record: c, credentials } = this.clients.hello(link, raw);
      const data = this.deps.dataFor(c.index);
      this.clients.send(c, 'welcome', {
        protocolVersion: PROTOCOL_VERSION,
        ...credentials,
        model: this.cfg.model,
        data,
      });
      return c.id;
    });
  }

  ready(clientId: string | null, raw: unknown): void {
    this.guard.message(() => {
      this.clients.ready(clientId, raw);
      this.maybeStart();
    });
  }

  /** Validates and accumulates one update. Throws ProtocolError with the reason on any problem. */
  update(clientId: string | null, raw: unknown): Ack {
    return this.guard.message(() => {
      const c = this.known(clientId, 'update');
      const u = checkUpdate(raw, {
        numParams: this.model.numParams,
        maxExamples: this.cfg.maxExamplesPerClient,
        ringLength: this.ringLength,
      });
      if (!u.ok) throw new ProtocolError(u.reason, u.message);
      const t = this.attempt(u.value, 'update');
      const member = this.memberOf(t, c);
      if (t.accumulator.hasReported(member))
        throw new ProtocolError('duplicate', `client already reported for round ${t.ref.round}`);
      t.accumulator.add(member, u.value);
      this.deps.metrics.updatesAccepted.inc();
      t.accumulator.settle();
      return { ok: true };
    });
  }

  /** secagg:keys / shares / signature / reveal: routed to the secure round after the common checks. */
  secagg(kind: SecAggClientMessage, clientId: string | null, raw: unknown): Ack {
    return this.guard.message(() => {
      const c = this.known(clientId, `secagg:${kind}`);
      if (!isRecord(raw)) throw new ProtocolError('malformed', `secagg:${kind} must be an object`);
      const t = this.attempt(
        { round: raw.round as number, attempt: raw.attempt as number },
        `secagg:${kind}`,
      );
      const channel = t.accumulator.secure;
      if (!channel) throw new ProtocolError('wrong_phase', 'this round does not use secure aggregation');
      channel.receive(kind, this.memberOf(t, c), raw);
      t.accumulator.settle();
      return { ok: true };
    });
  }

  /** A client declined a request (e.g. both shares of one peer): counted, and it is treated as a dropout. */
  secaggRefuse(clientId: string | null, raw: unknown): void {
    const reason = (raw as { reason?: unknown } | null)?.reason;
    // The label comes from the closed set, never from the client's string (one series per value).
    const r = isRejectReason(reason) ? reason : 'unknown';
    this.deps.metrics.secaggRefusals.inc({ reason: r });
    this.inputLog?.write(`client ${clientId ?? '?'} refused a secure-aggregation request: ${r}`);
  }

  /**
   * A member sits this attempt out: its page's floors refuse the plan. Counted by reason (a closed label
   * set; any other value is malformed), logged rate-limited, and treated as a dropout: the attempt no
   * longer waits for it, and it is sent nothing more for this attempt.
   */
  roundRefuse(clientId: string | null, raw: unknown): void {
    this.guard.message(() => {
      const c = this.known(clientId, 'round:refuse');
      if (!isRecord(raw)) throw new ProtocolError('malformed', 'round:refuse must be an object');
      if (!isRejectReason(raw.reason))
        throw new ProtocolError('malformed', 'round:refuse must give a reason from the closed set');
      const reason = raw.reason;
      const t = this.attempt({ round: raw.round as number, attempt: raw.attempt as number }, 'round:refuse');
      const member = this.memberOf(t, c);
      if (t.accumulator.hasReported(member))
        throw new ProtocolError('duplicate', `client already reported for round ${t.ref.round}`);
      if (t.refused.has(member)) return; // counted once per attempt
      t.refused.add(member);
      this.deps.metrics.clientRefusals.inc({ reason });
      this.inputLog?.write(
        `round ${t.ref.round}.${t.ref.attempt}: client ${c.id} refused the round plan (${reason})`,
      );
      t.accumulator.settle();
    });
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

  status(): ServerStatus {
    return statusView({
      state: this.state,
      ref: this.ref,
      targetRounds: this.cfg.rounds,
      secaggEnabled: this.cfg.secagg,
      degree: this.degree,
      maliciousServer: this.cfg.secagg && this.cfg.secaggMaliciousServer,
      clients: this.clients.counts(),
      model: { name: this.cfg.model.name, numParams: this.model.numParams },
      evalBackend: this.deps.evalBackend,
      initial: this.model.initial,
      history: this.model.history,
      privacy: this.model.privacyStatus(),
      defences: {
        aggregatesRejected: this.aggregatesRejected,
        lastAggregateRejection: this.lastAggregateRejection,
        modelsRejected: this.model.modelsRejected,
        maxLossIncrease: this.cfg.maxLossIncrease,
      },
    });
  }

  private known(clientId: string | null, what: string): ClientRecord {
    const c = this.clients.get(clientId);
    if (!c) throw new ProtocolError('unknown_client', `${what} from a client that never said hello`);
    return c;
  }

  /** The attempt in progress, if the message names it; else why not. */
  private attempt(ref: RoundRef, what: string): Training {
    const { round, attempt } = ref;
    const cur = this.ref;
    if (!Number.isInteger(round) || !Number.isInteger(attempt))
      throw new ProtocolError('malformed', `${what} must name its round and attempt`);
    if (round > cur.round || (round === cur.round && attempt > cur.attempt))
      throw new ProtocolError(
        'wrong_round',
        `${what} for round ${round}.${attempt}, server is at ${cur.round}.${cur.attempt}`,
      );
    if (round < cur.round || attempt < cur.attempt || this.state.kind !== 'training')
      throw new ProtocolError('late', `round ${round}.${attempt} is closed`);
    return this.state;
  }

  /** The client's 1-based place in the attempt's cohort. */
  private memberOf(t: Training, c: ClientRecord): number {
    const member = t.members.get(c.id);
    if (member === undefined)
      throw new ProtocolError('not_selected', `client was not selected for round ${t.ref.round}`);
    return member;
  }

  private maybeStart(): void {
    const s = this.state;
    if (s.kind !== 'waiting' || s.pause || this.stopped || !this.model.initial) return;
    if (this.clients.readyCount < Math.max(this.cfg.minClients, this.minCohort)) return;
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
    const eligible = this.culprits.size ? ready.filter((c) => !this.culprits.has(c.id)) : ready;
    // Fewer than --min-updates could never complete (and DP noise is sized for that many).
    const bounds = { min: Math.max(this.minCohort, cfg.minUpdates), max: Infinity };
    const draw = chooseCohort(eligible, this.cohortRule, bounds);
    if (!draw.ok) return this.skipDraw(draw.drawn, draw.reason, eligible.length, bounds.min);
    const cohort = draw.chosen;
    const ref = (this.ref = { round: this.ref.round, attempt: this.ref.attempt + 1 });
    const startedAt = this.clock.now();
    const dp = this.model.roundDp();
    const tag = `aegisfl/${this.runId}/${ref.round}.${ref.attempt}`;
    // A member that refused the plan counts as offline for the rest of the attempt.
    const refused = new Set<number>();
    const accumulator = createAccumulator(roundSettings(cfg, this.model.numParams, cohort.length, dp, tag), {
      ref,
      clock: this.timers,
      metrics: this.deps.metrics,
      online: (i) => Boolean(cohort[i - 1]?.link) && !refused.has(i),
      send: (i, event, ...args) =>
        cohort[i - 1] && !refused.has(i) ? this.clients.send(cohort[i - 1], event, ...args) : false,
      defer: (fn) => this.guard.defer(fn),
      log: (m) => this.log(`round ${ref.round}.${ref.attempt}: ${m}`),
      close: (o) => this.onClose(ref, o),
    });
    const members = new Map(cohort.map((c, i) => [c.id, i + 1]));
    this.state = { kind: 'training', ref, startedAt, cohort, members, refused, accumulator };
    if (accumulator.secure) this.degree = accumulator.secure.degree;
    const weights = this.model.weightsBytes;
    cohort.forEach((c, i) =>
      this.clients.send(c, 'round:start', roundStart(cfg, ref, weights, accumulator, i + 1)),
    );
    const dpNote =
      dp && cfg.dp ? `, DP z = ${cfg.dp.noiseMultiplier}, C = ${dp.clipNorm.toPrecision(3)}` : '';
    const sat = ready.length - eligible.length;
    const satOut = sat ? `, ${sat} named culprit${sat === 1 ? '' : 's'} sitting out` : '';
    this.log(
      `round ${ref.round}.${ref.attempt}: selected ${cohort.length} of ${ready.length} ready clients by ${this.ruleText()}${satOut} (${accumulator.description}${dpNote})`,
    );
    this.announce('roundStart', { ...ref, selected: cohort.length });
  }

  private ruleText(): string {
    const r = this.cohortRule;
    return r.kind === 'poisson' ? `Poisson sampling (q = ${r.q})` : `a fixed-size draw of ${r.size}`;
  }

  /**
   * A draw outside the bounds starts no attempt: it is counted, logged, and drawn afresh after a pause.
   * It is never trimmed or topped up, which would change each client's inclusion probability. (Redrawing
   * does condition released cohorts on their size: the ledger's q holds while such skips are rare, i.e.
   * while q times the eligible clients is well above the minimum; the log shows how often they happen.)
   */
  private skipDraw(drawn: number, reason: CohortSkip, eligible: number, min: number): void {
    this.deps.metrics.cohortSkips.inc({ reason });
    const wait = Math.max(this.cfg.roundPauseMs, SKIP_RETRY_MS);
    const why = reason === 'too_few' ? `fewer than the ${min} a round needs` : 'more than the cohort limit';
    this.log(
      `round ${this.ref.round}: ${this.ruleText()} drew ${drawn} of ${eligible} eligible clients, ${why}; no attempt, drawing again in ${wait} ms`,
    );
    this.state = this.pauseThenStart(wait);
    this.announce('cohortSkipped', { round: this.ref.round, drawn, eligible, reason });
  }

  /** Culprits the attempt named: they sit out the rest of the round (see `culprits`); logged, rate-limited. */
  private noteCulprits(t: Training, culprits: readonly Culprit[]): void {
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
    this.inputLog?.write(
      `round ${t.ref.round}.${t.ref.attempt}: ${ids.size} client${ids.size === 1 ? '' : 's'} proven to have cheated (${evidence}): ${list}${more}; excluded until round ${t.ref.round} completes`,
    );
  }

  /** The accumulator of attempt `ref` closed: release the aggregate, or fail the attempt. */
  private onClose(ref: RoundRef, o: RoundOutcome): void {
    const t = this.state;
    if (t.kind !== 'training' || t.ref !== ref) return;
    this.deps.metrics.stragglersDropped.inc(o.dropped);
    if (o.culprits?.length) this.noteCulprits(t, o.culprits);
    if (!o.ok) {
      if (o.reason === 'aggregate_rejected') {
        // Counted by check in the accumulator (aegis_aggregates_rejected_total); kept here for status.
        this.aggregatesRejected++;
        this.lastAggregateRejection = { ...ref, check: o.check, message: o.why };
      }
      return this.failRound(o.reason, o.why, o.updates);
    }
    const reported = t.accumulator.reported;
    this.state = { kind: 'evaluating', ref, startedAt: t.startedAt, selected: t.cohort.length, reported };
    this.model
      .release({ ref, startedAt: t.startedAt, outcome: o })
      .then((summary) => this.guard.run('finish', () => this.roundEnded(summary)))
      .catch((err) => this.guard.fault('finish', err)); // nothing released: the attempt fails, model unchanged
  }

  private roundEnded(summary: RoundSummary): void {
    const cfg = this.cfg;
    this.ref = { round: summary.round + 1, attempt: 0 };
    this.culprits.clear(); // the round is complete: its culprits may take part again (see `culprits`)
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
