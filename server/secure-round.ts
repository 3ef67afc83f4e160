import { SecAggAbort } from '../shared/secagg/errors.ts';
import { SecAggServerSession, type ServerSessionConfig } from '../shared/secagg/server-session.ts';
import type { SecAggPhase, UnmaskRequest } from '../shared/secagg/types.ts';
import {
  packInbox,
  packRoster,
  unpackReveal,
  unpackShares,
  type WireInbox,
  type WireRoster,
} from '../shared/secagg/wire.ts';
import type { RoundRef } from '../shared/protocol/messages.ts';
import type { Metrics } from './metrics.ts';

export type SecureOutcome =
  { ok: true; sum: Uint32Array; survivors: number[] } | { ok: false; reason: string };

/** The pure session's config, plus the timers and transport this wrapper adds around it. */
export interface SecureRoundOptions extends ServerSessionConfig {
  ref: RoundRef;
  /** Absolute times (ms since epoch) / durations for each phase. */
  keysDeadlineMs: number;
  sharesDeadlineMs: number;
  maskedDeadlineAt: number;
  unmaskDeadlineMs: number;
  metrics: Metrics;
  /** Sends to the client with this index if it is online; false if it is not. */
  send: {
    roster(index: number, m: RoundRef & WireRoster): boolean;
    inbox(index: number, m: RoundRef & WireInbox): boolean;
    unmask(index: number, m: RoundRef & UnmaskRequest): boolean;
  };
  online(index: number): boolean;
  log(msg: string): void;
  done(o: SecureOutcome): void;
}

/**
 * Runs the timers and transport of one secure-aggregation round around the pure server session:
 * each phase closes when everyone expected has answered, when only offline clients are missing, or at
 * its deadline, and moves on with whoever answered.
 */
export class SecureRound {
  readonly session: SecAggServerSession;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private phaseStarted = Date.now();
  private finished = false;
  deadlineAt: number;

  constructor(private readonly o: SecureRoundOptions) {
    this.session = new SecAggServerSession(o);
    this.deadlineAt = Date.now() + o.keysDeadlineMs;
    this.arm();
  }

  get phase(): SecAggPhase {
    return this.session.phase;
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.close('deadline'), Math.max(0, this.deadlineAt - Date.now()));
  }

  stop(): void {
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Runs one receive (a ProtocolError goes back to the transport), then closes the phase if it can. */
  private guard(fn: () => void): void {
    fn();
    this.maybeCloseEarly();
  }

  keys(index: number, raw: unknown): void {
    this.guard(() => this.session.receiveKeys(index, raw));
  }

  shares(index: number, raw: unknown): void {
    this.guard(() => this.session.receiveShares(index, unpackShares(raw, this.o.n)));
  }

  masked(index: number, ring: Uint32Array): void {
    this.guard(() => this.session.receiveMasked(index, ring));
  }

  reveal(index: number, raw: unknown): void {
    this.guard(() => this.session.receiveReveal(index, unpackReveal(raw, this.o.n)));
  }

  /** A client went offline (or came back): the phase may be able to close now. */
  maybeCloseEarly(): void {
    if (this.finished) return;
    const waiting = this.session.waitingFor();
    if (waiting.length === 0) this.close('all answered');
    else if (waiting.every((i) => !this.o.online(i))) this.close('the rest are offline');
  }

  private close(why: string): void {
    if (this.finished) return;
    const s = this.session;
    const phase = s.phase;
    const missing = s.waitingFor().length;
    const m = this.o.metrics;
    m.secaggPhaseDuration.observe({ phase }, (Date.now() - this.phaseStarted) / 1000);
    if (missing) m.secaggDropouts.inc({ phase }, missing);
    this.phaseStarted = Date.now();
    const ref = this.o.ref;
    try {
      switch (phase) {
        case 'keys': {
          for (const [i, roster] of s.closeKeys()) this.o.send.roster(i, { ...ref, ...packRoster(roster) });
          this.deadlineAt = Date.now() + this.o.sharesDeadlineMs;
          break;
        }
        case 'shares': {
          for (const [i, inbox] of s.closeShares()) this.o.send.inbox(i, { ...ref, ...packInbox(inbox) });
          this.deadlineAt = Math.max(this.o.maskedDeadlineAt, Date.now());
          break;
        }
        case 'masked': {
          for (const [i, req] of s.closeMasked()) this.o.send.unmask(i, { ...ref, ...req });
          this.deadlineAt = Date.now() + this.o.unmaskDeadlineMs;
          break;
        }
        case 'unmask': {
          const t0 = Date.now();
          const sum = s.closeUnmask();
          m.secaggUnmaskSeconds.observe((Date.now() - t0) / 1000);
          this.o.log(
            `secure aggregation: phase unmask closed (${why}), sum of ${s.survivors.length} inputs recovered`,
          );
          this.finish({ ok: true, sum, survivors: [...s.survivors] });
          return;
        }
        default:
          return;
      }
    } catch (e) {
      if (!(e instanceof SecAggAbort)) throw e;
      this.o.log(`secure aggregation aborted in phase ${phase}: ${e.message}`);
      this.finish({ ok: false, reason: e.message });
      return;
    }
    this.o.log(`secure aggregation: phase ${phase} closed (${why}), ${missing} missing`);
    this.arm();
    // Clients that are already offline cannot answer the next phase either.
    queueMicrotask(() => this.maybeCloseEarly());
  }

  private finish(o: SecureOutcome): void {
    this.stop();
    this.o.metrics.secaggRounds.inc({ outcome: o.ok ? 'ok' : 'aborted' });
    this.o.done(o);
  }
}
