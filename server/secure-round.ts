import { SecAggAbort } from '../shared/secagg/errors.ts';
import { SecAggServerSession, type ServerSessionConfig } from '../shared/secagg/server-session.ts';
import type { Culprit, SecAggPhase, SurvivorSet, UnmaskRequest } from '../shared/secagg/types.ts';
import {
  packInbox,
  packRoster,
  packUnmask,
  unpackShares,
  type WireInbox,
  type WireRoster,
  type WireUnmask,
} from '../shared/secagg/wire.ts';
import type { RoundRef, RoundRelease } from '../shared/protocol/messages.ts';
import type { Clock, Timer } from './clock.ts';
import type { Metrics } from './metrics.ts';
import { Outbox } from './outbox.ts';
import { unmaskInProcess, type UnmaskRunner } from './unmask-thread.ts';
import type { UnmaskResult } from '../shared/secagg/unmask.ts';

/** How the round ended, with every client the session proved to have cheated either way. */
export type SecureOutcome = (
  { ok: true; sum: Uint32Array; survivors: number[] } | { ok: false; reason: string }
) & { culprits: Culprit[] };

/** The pure session's config, plus the timers and transport this wrapper adds around it. */
export interface SecureRoundOptions extends ServerSessionConfig {
  ref: RoundRef;
  /** Deadlines are set on this clock. */
  clock: Clock;
  /** Runs fn soon, after the current message is handled (queueMicrotask, or a guarded wrapper of it). */
  defer(fn: () => void): void;
  /** Absolute times (ms since epoch) / durations for each phase. */
  keysDeadlineMs: number;
  sharesDeadlineMs: number;
  maskedDeadlineAt: number;
  unmaskDeadlineMs: number;
  /** R3 (only with `consistency`): how long survivors have to sign U3. */
  consistencyDeadlineMs: number;
  metrics: Metrics;
  /** Sends to the client with this index if it is online; false if it is not. */
  send: {
    roster(index: number, m: RoundRef & WireRoster): boolean;
    inbox(index: number, m: RoundRef & WireInbox): boolean;
    survivors(index: number, m: RoundRef & SurvivorSet): boolean;
    unmask(index: number, m: RoundRef & WireUnmask): boolean;
    /** Over-selection: the cohort was fixed at R0 without this invitee. */
    release(index: number, m: RoundRelease): boolean;
  };
  online(index: number): boolean;
  log(msg: string): void;
  done(o: SecureOutcome): void;
  /**
   * Called once the masked inputs are in and before any unmask request goes out; requests wait until it
   * resolves (the privacy ledger's charge of the attempt is durable then), and the attempt aborts if it
   * rejects. Absent: requests go out at once.
   */
  beforeUnmask?: () => Promise<void>;
  /** Test-only (AEGISFL_TEST_HOLD_PHASE): a phase for which this returns true never closes. */
  hold?: (phase: SecAggPhase) => boolean;
  /**
   * Runs the unmasking off this thread (unmask-thread.ts) and the round finishes when it resolves; the
   * event loop keeps serving meanwhile. Absent: it runs here, synchronously, inside the close.
   */
  unmask?: UnmaskRunner;
  /**
   * Runs the next slice of a phase's first sends (setImmediate by default): packing thousands of rosters
   * or inboxes in the turn that closed the phase held the loop ~1 s at 10 000 clients.
   */
  schedule?: (fn: () => void) => void;
}

/**
 * Runs the timers and transport of one secure-aggregation round around the pure server session:
 * each phase closes when everyone expected has answered, when only offline clients are missing, or at
 * its deadline, and moves on with whoever answered.
 */
export class SecureRound {
  readonly session: SecAggServerSession;
  private timer: Timer | null = null;
  private phaseStarted: number;
  private finished = false;
  /** Whether the held phase was announced (test hook). */
  private holding = false;
  /**
   * The current phase's request to each member that has not answered it yet (round:start aside): re-sent
   * when the member reconnects within the phase, so it can rejoin the attempt. `queued`: its first send
   * still waits in `firstSends` (a resend sends it at once instead, and the queued one is skipped).
   */
  private pending = new Map<number, { send: () => boolean; queued: boolean }>();
  /** A phase's requests are packed and sent in slices of a few ms, not all in the turn that closed it. */
  private readonly firstSends: Outbox;
  /** The unmasking runs asynchronously (off this thread where it can): the round waits for it, not for clients. */
  private unmasking = false;
  /**
   * The attempt's privacy charge is being written (beforeUnmask): R4 has not begun, no request is out, so
   * nothing closes meanwhile (not even 'the rest are offline': they may be back before it is written).
   */
  private charging = false;
  deadlineAt: number;
  /** Finds an online member the phase still waits for without a scan per message (OnlineWitness). */
  private readonly witness: OnlineWitness;

  constructor(private readonly o: SecureRoundOptions) {
    this.session = new SecAggServerSession(o);
    this.witness = new OnlineWitness(this.session, o.online);
    this.firstSends = new Outbox({
      ...(o.schedule ? { schedule: o.schedule } : {}),
      onError: (e) =>
        this.o.defer(() => {
          throw e;
        }),
    });
    this.phaseStarted = o.clock.now();
    this.deadlineAt = this.phaseStarted + o.keysDeadlineMs;
    this.arm();
  }

  /**
   * Member `index` reconnected: re-sends the current phase's request if it still owes an answer. Returns
   * whether it did (false before the first request, i.e. in the keys phase, and after it answered).
   */
  resend(index: number): boolean {
    if (this.finished || this.unmasking || !this.session.isWaitingFor(index)) return false;
    const r = this.pending.get(index);
    if (!r) return false;
    r.queued = false; // sent now: its queued first send is skipped
    return r.send();
  }

  private held(): boolean {
    const phase = this.session.phase;
    if (!this.o.hold?.(phase)) return false;
    if (!this.holding) this.o.log(`test hold: phase ${phase} held open`);
    this.holding = true;
    return true;
  }

  private now(): number {
    return this.o.clock.now();
  }

  get phase(): SecAggPhase {
    return this.session.phase;
  }

  private arm(): void {
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = this.o.clock.setTimeout(
      () => this.close('deadline'),
      Math.max(0, this.deadlineAt - this.now()),
    );
  }

  stop(): void {
    this.finished = true;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  // Each receive throws ProtocolError for a bad message (it goes back to the transport); the caller then
  // calls maybeCloseEarly, since the phase may be complete.
  keys(index: number, raw: unknown): void {
    this.session.receiveKeys(index, raw);
  }

  shares(index: number, raw: unknown): void {
    this.session.receiveShares(index, unpackShares(raw, this.o.n));
  }

  masked(index: number, ring: Uint32Array): void {
    this.session.receiveMasked(index, ring);
  }

  /** Throws what masked() would for member `index`, counting nothing (a gateway's claim). */
  checkMasked(index: number): void {
    this.session.checkMasked(index);
  }

  /** Several members' masked inputs, summed by a gateway. */
  maskedSum(indices: readonly number[], sum: Uint32Array): void {
    this.session.receiveMaskedSum(indices, sum);
  }

  signature(index: number, raw: unknown): void {
    this.session.receiveSignature(index, raw);
  }

  reveal(index: number, raw: unknown): void {
    this.session.receiveRevealWire(index, raw);
  }

  /** A message arrived or a client went offline: the phase may be able to close now. */
  maybeCloseEarly(): void {
    if (this.finished || this.unmasking || this.charging || this.held()) return;
    if (this.session.waitingCount === 0) this.close('all answered');
    else if (!this.witness.any()) this.close('the rest are offline');
  }

  private close(why: string): void {
    if (this.finished || this.unmasking || this.charging || this.held()) return;
    const s = this.session;
    const phase = s.phase;
    let missing = s.waitingCount;
    const cohort = this.o.cohort;
    // Over-selection: of the invitees without keys at R0's close, only the cohort's shortfall are dropouts;
    // the rest are released (told, counted apart).
    if (phase === 'keys' && cohort)
      missing = Math.max(0, Math.min(missing, cohort.size - (this.o.n - missing)));
    const m = this.o.metrics;
    m.secaggPhaseDuration.observe({ phase }, (this.now() - this.phaseStarted) / 1000);
    if (missing) m.secaggDropouts.inc({ phase }, missing);
    this.phaseStarted = this.now();
    const ref = this.o.ref;
    try {
      switch (phase) {
        case 'keys': {
          this.forget();
          // Each roster is built as its (sliced) send goes out, not all in this turn.
          const rosters = s.closeKeysLazily();
          this.release(missing);
          for (const i of rosters.recipients)
            this.request(i, () => this.o.send.roster(i, { ...ref, ...packRoster(rosters.roster(i)) }));
          this.deadlineAt = this.now() + this.o.sharesDeadlineMs;
          break;
        }
        case 'shares': {
          this.forget();
          // Each inbox is cut from the boxes as its (sliced) send goes out, not all in this turn.
          const inboxes = s.closeSharesLazily();
          for (const i of inboxes.recipients)
            this.request(i, () => this.o.send.inbox(i, { ...ref, ...packInbox(inboxes.inbox(i)) }));
          this.deadlineAt = Math.max(this.o.maskedDeadlineAt, this.now());
          break;
        }
        case 'masked': {
          this.forget();
          if (this.o.consistency) {
            for (const [i, set] of s.closeMaskedToConsistency())
              this.request(i, () => this.o.send.survivors(i, { ...ref, ...set }));
            this.deadlineAt = this.now() + this.o.consistencyDeadlineMs;
            break;
          }
          return this.unmaskAfterCharge(phase, why, missing, s.closeMasked());
        }
        case 'consistency': {
          this.forget();
          return this.unmaskAfterCharge(phase, why, missing, s.closeConsistency());
        }
        case 'unmask': {
          this.forget();
          // Off this thread where a runner is given (the server's worker); otherwise here, still
          // asynchronously (the masks are stripped through WebCrypto).
          this.unmaskOffThread(this.o.unmask ?? unmaskInProcess, why);
          return;
        }
        default:
          return;
      }
    } catch (e) {
      if (!(e instanceof SecAggAbort)) throw e;
      this.o.log(`secure aggregation aborted in phase ${phase}: ${e.message}`);
      this.finish({ ok: false, reason: e.message, culprits: s.culpritEvidence });
      return;
    }
    this.next(phase, why, missing);
  }

  /** The phase closed and the next one's requests are queued (sent within a few turns): its deadline runs from now. */
  private next(phase: SecAggPhase, why: string, missing: number): void {
    this.o.log(`secure aggregation: phase ${phase} closed (${why}), ${missing} missing`);
    this.arm();
    // Clients that are already offline cannot answer the next phase either.
    this.o.defer(() => this.maybeCloseEarly());
  }

  /** The previous phase's requests are no longer re-sent (nor sent, if still queued). */
  private forget(): void {
    this.pending.clear();
  }

  /** Queues a request's first send (sliced) and keeps it for a resend. */
  private request(index: number, send: () => boolean): void {
    const r = { send, queued: true };
    this.pending.set(index, r);
    this.firstSends.push(() => {
      // Skipped when already re-sent, or when the phase closed (or the round ended) first: a request
      // for a closed phase would only draw a late answer (an unmask request, a refused reveal).
      if (!r.queued || this.pending.get(index) !== r) return;
      r.queued = false;
      if (this.finished || this.unmasking || !this.session.isWaitingFor(index)) return;
      send();
    });
  }

  /**
   * The unmask requests go out only once beforeUnmask resolved (the attempt's privacy charge is durable):
   * until then no client reveals a share, so nothing can be unmasked. Its deadline timer is off meanwhile;
   * a failed write aborts the attempt.
   */
  private unmaskAfterCharge(
    phase: SecAggPhase,
    why: string,
    missing: number,
    requests: Map<number, UnmaskRequest>,
  ): void {
    const ref = this.o.ref;
    const send = (): void => {
      this.charging = false;
      if (this.finished) return; // stopped (or given up) while the charge was written
      for (const [i, req] of requests)
        this.request(i, () => this.o.send.unmask(i, { ...ref, ...packUnmask(req) }));
      this.deadlineAt = this.now() + this.o.unmaskDeadlineMs;
      this.next(phase, why, missing);
    };
    if (!this.o.beforeUnmask) return send();
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    this.charging = true;
    this.o.beforeUnmask().then(send, (e: unknown) => {
      this.charging = false;
      if (this.finished) return;
      const reason = `privacy ledger not written, nothing unmasked: ${(e as Error).message}`;
      this.o.log(`secure aggregation aborted before phase unmask: ${reason}`);
      this.finish({ ok: false, reason, culprits: this.session.culpritEvidence });
    });
  }

  /**
   * R4 closed: the job goes to the runner, nothing here waits for it. The phase's timer is off (the
   * session takes no more reveals); stop() meanwhile makes the result be dropped. The result is applied
   * through `defer`, so a fault there is contained like any other (the attempt is retried).
   */
  private unmaskOffThread(runner: UnmaskRunner, why: string): void {
    const s = this.session;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    this.unmasking = true;
    const t0 = performance.now();
    const apply = (r: UnmaskResult): void => {
      if (this.finished) return;
      this.o.metrics.secaggUnmaskSeconds.observe((performance.now() - t0) / 1000);
      let sum: Uint32Array;
      try {
        sum = s.finishUnmask(r);
      } catch (e) {
        if (!(e instanceof SecAggAbort)) throw e;
        this.o.log(`secure aggregation aborted in phase unmask: ${e.message}`);
        this.finish({ ok: false, reason: e.message, culprits: s.culpritEvidence });
        return;
      }
      this.unmasked(sum, why);
    };
    runner(s.prepareUnmask()).then(
      (r) => this.o.defer(() => apply(r)),
      (e: unknown) =>
        this.o.defer(() => {
          if (!this.finished) throw e;
        }),
    );
  }

  private unmasked(sum: Uint32Array, why: string): void {
    const s = this.session;
    this.o.log(
      `secure aggregation: phase unmask closed (${why}), sum of ${s.survivors.length} inputs recovered`,
    );
    this.finish({ ok: true, sum, survivors: [...s.survivors], culprits: s.culpritEvidence });
  }

  /** Over-selection: tells every invitee left out of the cohort; `dropouts` of them are counted as such. */
  private release(dropouts: number): void {
    const released = this.o.cohort ? this.session.released : [];
    for (const i of released) this.o.send.release(i, { ...this.o.ref, step: 'keys' });
    const n = released.length - dropouts;
    if (n > 0) this.o.metrics.clientsReleased.inc({ step: 'keys' }, n);
    if (released.length)
      this.o.log(`secure aggregation: cohort fixed at R0, ${released.length} invitees released`);
  }

  private finish(o: SecureOutcome): void {
    this.stop();
    this.forget();
    this.o.metrics.secaggRounds.inc({ outcome: o.ok ? 'ok' : 'aborted' });
    // Named whichever way the attempt ended (an abort keeps its culprits too); kinds are a closed set.
    // The coordinator logs them (rate-limited, a bounded list) and keeps them out of the round's retries.
    for (const c of o.culprits) this.o.metrics.secaggCulprits.inc({ kind: c.kind });
    this.o.done(o);
  }
}

/** What the witness reads of the session. */
export type WaitingView = Pick<SecAggServerSession, 'phase' | 'waitingFor' | 'isWaitingFor'>;

/**
 * Whether any member the session's phase still waits for is online. It is asked after every message, and
 * a scan of thousands of members each time made a phase O(n^2). It keeps one online waiting member (the
 * witness) and, when that one answers or leaves, looks for another: first by a cursor that walks the
 * phase's members once (ascending, taken when the phase opens), then, once the cursor is through, among
 * the members it passed as offline (they may be back), dropping those that answered meanwhile. Every
 * waiting member is always ahead of the cursor, among those passed, or the witness. So a phase costs
 * O(n) in all, plus O(m) when a witness is lost while m waiting members are offline; two members taking
 * turns to disconnect cost O(1) each time, not a walk over everyone.
 */
export class OnlineWitness {
  private phase: SecAggPhase | null = null;
  private order: number[] = [];
  private at = 0;
  private passed: number[] = [];
  /** An online member the phase waits for, or 0. */
  private found = 0;

  constructor(
    private readonly session: WaitingView,
    private readonly online: (index: number) => boolean,
  ) {}

  any(): boolean {
    const s = this.session;
    if (s.phase !== this.phase) {
      this.phase = s.phase;
      this.order = s.waitingFor();
      this.at = 0;
      this.passed = [];
      this.found = 0;
    }
    if (this.found) {
      if (s.isWaitingFor(this.found)) {
        if (this.online(this.found)) return true;
        this.passed.push(this.found); // it left without answering: it may come back
      }
      this.found = 0;
    }
    while (this.at < this.order.length) {
      const u = this.order[this.at++];
      if (!s.isWaitingFor(u)) continue;
      if (this.online(u)) return !!(this.found = u);
      this.passed.push(u);
    }
    let keep = 0;
    for (const u of this.passed) {
      if (!s.isWaitingFor(u)) continue;
      if (!this.found && this.online(u))
        this.found = u; // the witness is kept apart, so never listed twice
      else this.passed[keep++] = u;
    }
    this.passed.length = keep;
    return this.found !== 0;
  }
}
