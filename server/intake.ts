import { isRecord } from '../shared/base/record.ts';
import { isRejectReason, ProtocolError } from '../shared/base/errors.ts';
import type { DataSpec } from '../shared/data/dataset.ts';
import { PROTOCOL_VERSION, type Ack, type RoundRef } from '../shared/protocol/messages.ts';
import { checkUpdate } from '../shared/protocol/validate.ts';
import { ringLengthFor, roundMode, type SecAggClientMessage } from './aggregator/index.ts';
import type { ClientLink, ClientRecord, ClientRegistry } from './clients.ts';
import { serverTask, type ServerConfig } from './config.ts';
import type { Containment } from './contain.ts';
import type { LogLimiter } from './limits.ts';
import type { Metrics } from './metrics.ts';
import { messageDigest } from './resend.ts';
import type { RoundState, Training } from './round-state.ts';

/** A gateway's claim on one masked update: the update's round and attempt, and the SHA-256 of its vector. */
export interface UpdateClaim {
  round: number;
  attempt: number;
  digest: Buffer;
}

/** A gateway's sum (mod 2^32) of the masked inputs of `members` (1-based cohort indices). */
export interface PartialSum {
  round: number;
  attempt: number;
  members: number[];
  sum: Uint32Array;
}

export interface IntakeDeps {
  config: ServerConfig;
  metrics: Metrics;
  numParams: number;
  dataFor: (clientIndex: number) => DataSpec;
  clients: ClientRegistry;
  guard: Containment;
  /** Rate-limited log of lines about client input. */
  inputLog: LogLimiter | null;
  /** Where the rounds stand now (the coordinator's state). */
  round: () => { ref: RoundRef; state: RoundState };
  /** A client became ready: the coordinator may start an attempt. */
  onReady: () => void;
}

/**
 * Client messages, checked before they reach the round: each must come from a known client, name the
 * attempt in progress, and (where it takes part) come from a member of that attempt's cohort. Every
 * handler runs contained; a ProtocolError is the client's answer, anything else aborts the attempt.
 */
export class Intake {
  private readonly ringLength: number | undefined;
  /** Per attempt: members whose masked update a gateway claimed and has not summed yet -> that gateway. */
  private readonly claims = new WeakMap<Training, Map<number, string>>();

  constructor(private readonly d: IntakeDeps) {
    this.ringLength = ringLengthFor(roundMode(d.config), d.numParams);
  }

  /** Starts or resumes the link's session (see ClientRegistry.hello); returns the session id. */
  hello(link: ClientLink, raw: unknown): string {
    return this.d.guard.message(() => {
      const { record: c, credentials } = this.d.clients.hello(link, raw);
      const data = this.d.dataFor(c.index);
      this.d.clients.send(c, 'welcome', {
        protocolVersion: PROTOCOL_VERSION,
        ...credentials,
        task: serverTask(this.d.config).task,
        data,
      });
      return c.id;
    });
  }

  ready(clientId: string | null, raw: unknown): void {
    this.d.guard.message(() => {
      this.d.clients.ready(clientId, raw);
      this.d.guard.round(() => this.d.onReady());
    });
  }

  /** Validates and accumulates one update. Throws ProtocolError with the reason on any problem. */
  update(clientId: string | null, raw: unknown): Ack {
    return this.d.guard.message(() => {
      const c = this.known(clientId, 'update');
      const u = checkUpdate(raw, {
        numParams: this.d.numParams,
        maxExamples: this.d.config.maxExamplesPerClient,
        ringLength: this.ringLength,
      });
      if (!u.ok) throw new ProtocolError(u.reason, u.message);
      const t = this.attempt(u.value, 'update');
      const member = this.memberOf(t, c);
      const key = `update/${member}`;
      const digest = messageDigest(u.value.ring ?? u.value);
      // accepted without reported: a gateway's claim, its vector still in that gateway's partial sum.
      if (t.accumulator.hasReported(member) || t.accepted.has(key))
        return this.resent(t, key, digest, `client already reported for round ${t.ref.round}`);
      this.d.guard.round(() => {
        t.accumulator.add(member, u.value);
        t.accepted.set(key, digest);
        this.d.metrics.updatesAccepted.inc();
        t.accumulator.settle();
      });
      return { ok: true };
    });
  }

  /**
   * A gateway's claim on one member's masked update (scale-out, secure rounds): the gateway checked the
   * message and keeps the vector; here it gets the same checks as a whole update (client, attempt,
   * member, phase, re-send) without the vector. Accepted, the member is the gateway's to sum: its input
   * counts once the gateway's partial sum arrives (partialSum), and not at all if the gateway dies first.
   */
  claimUpdate(clientId: string | null, raw: UpdateClaim, gateway: string): { ack: Ack; member?: number } {
    return this.d.guard.message(() => {
      const c = this.known(clientId, 'update');
      const t = this.attempt(raw, 'update');
      const channel = t.accumulator.secure;
      if (!channel) throw new ProtocolError('wrong_phase', 'this round does not use secure aggregation');
      const member = this.memberOf(t, c);
      const key = `update/${member}`;
      if (t.accepted.has(key))
        return { ack: this.resent(t, key, raw.digest, `client already reported for round ${t.ref.round}`) };
      channel.checkMasked(member);
      t.accepted.set(key, raw.digest);
      this.claimsOf(t).set(member, gateway);
      return { ack: { ok: true }, member };
    });
  }

  /**
   * A gateway's partial sum of the masked inputs it claimed: every member must be that gateway's
   * unsummed claim, or nothing is added (a sum cannot be taken apart). Late sums (another attempt) are
   * refused. Throws ProtocolError with the reason.
   */
  partialSum(gateway: string, p: PartialSum): void {
    this.d.guard.message(() => {
      const t = this.attempt(p, 'partial sum');
      const channel = t.accumulator.secure;
      if (!channel) throw new ProtocolError('wrong_phase', 'this round does not use secure aggregation');
      const claims = this.claimsOf(t);
      try {
        for (const m of p.members)
          if (claims.get(m) !== gateway)
            throw new ProtocolError('not_selected', `member ${m} is not an unsummed claim of this gateway`);
        this.d.guard.round(() => {
          channel.addMaskedSum(p.members, p.sum);
          for (const m of p.members) claims.delete(m);
          this.d.metrics.updatesAccepted.inc(p.members.length);
          t.accumulator.settle();
        });
      } catch (e) {
        // The gateway let these vectors go with the sum: its claims among them can never be summed now.
        // Void, so that the phase does not wait for them and a re-send is taken anew.
        if (e instanceof ProtocolError && this.voidClaims(t, gateway, p.members))
          this.d.guard.round(() => t.accumulator.settle());
        throw e;
      }
    });
  }

  /**
   * A gateway let go of claimed vectors before the coordinator's answer came (its wait for the answer ran
   * out): those claims can never be summed, so they are void and the phase need not wait for them.
   */
  releaseClaims(gateway: string, ref: RoundRef, members: readonly number[]): number {
    const { state } = this.d.round();
    if (state.kind !== 'training' || state.ref.round !== ref.round || state.ref.attempt !== ref.attempt)
      return 0;
    const n = this.voidClaims(state, gateway, members);
    if (n) this.d.guard.run('disconnect', () => state.accumulator.settle());
    return n;
  }

  /**
   * A gateway is gone: its unsummed claims are void (those members count as dropouts unless they send
   * again, through another gateway, while the phase is open).
   */
  gatewayLost(gateway: string): number {
    const { state } = this.d.round();
    if (state.kind !== 'training') return 0;
    const n = this.voidClaims(state, gateway, [...this.claimsOf(state).keys()]);
    // Their members no longer count as online through the claim (see claimPending): the phase may close.
    if (n) this.d.guard.run('disconnect', () => state.accumulator.settle());
    return n;
  }

  /**
   * Whether member i of attempt `ref` has a claim accepted that its gateway has not summed yet: the
   * attempt waits for that sum as for an online member, even if the client has since gone (its input
   * is on its way).
   */
  claimPending(ref: RoundRef, member: number): boolean {
    const { state } = this.d.round();
    if (state.kind !== 'training' || state.ref.round !== ref.round || state.ref.attempt !== ref.attempt)
      return false;
    return this.claims.get(state)?.has(member) ?? false;
  }

  /** Voids `gateway`'s unsummed claims among `members` (a re-send is then taken anew); how many. */
  private voidClaims(t: Training, gateway: string, members: readonly number[]): number {
    const claims = this.claimsOf(t);
    let n = 0;
    for (const m of members)
      if (claims.get(m) === gateway) {
        claims.delete(m);
        t.accepted.delete(`update/${m}`);
        n++;
      }
    return n;
  }

  private claimsOf(t: Training): Map<number, string> {
    let m = this.claims.get(t);
    if (!m) this.claims.set(t, (m = new Map()));
    return m;
  }

  /** secagg:keys / shares / signature / reveal: routed to the secure round after the common checks. */
  secagg(kind: SecAggClientMessage, clientId: string | null, raw: unknown): Ack {
    return this.d.guard.message(() => {
      const c = this.known(clientId, `secagg:${kind}`);
      if (!isRecord(raw)) throw new ProtocolError('malformed', `secagg:${kind} must be an object`);
      const t = this.attempt(
        { round: raw.round as number, attempt: raw.attempt as number },
        `secagg:${kind}`,
      );
      const channel = t.accumulator.secure;
      if (!channel) throw new ProtocolError('wrong_phase', 'this round does not use secure aggregation');
      const member = this.memberOf(t, c);
      const key = `secagg:${kind}/${member}`;
      const digest = messageDigest(raw);
      if (t.accepted.has(key)) return this.resent(t, key, digest, `client already sent secagg:${kind}`);
      this.d.guard.round(() => {
        try {
          channel.receive(kind, member, raw);
        } catch (e) {
          // A refusal can end a phase too: a member dropped from the attempt for it (a bad key, a
          // signature not over U3, a malformed share) is no longer waited for.
          if (e instanceof ProtocolError) t.accumulator.settle();
          throw e;
        }
        t.accepted.set(key, digest);
        t.accumulator.settle();
      });
      return { ok: true };
    });
  }

  /**
   * A client declined a request (e.g. both shares of one peer): counted by reason (a closed label set)
   * and logged rate-limited. Nothing else: a refusing member simply does not answer, and the phase's
   * deadline and early-close rules handle it like any other missing answer.
   */
  secaggRefuse(clientId: string | null, raw: unknown): void {
    const reason = (raw as { reason?: unknown } | null)?.reason;
    // The label comes from the closed set, never from the client's string (one series per value).
    const r = isRejectReason(reason) ? reason : 'unknown';
    this.d.metrics.secaggRefusals.inc({ reason: r });
    this.d.inputLog?.write(`client ${clientId ?? '?'} refused a secure-aggregation request: ${r}`);
  }

  /**
   * A member sits this attempt out: its page's floors refuse the plan. Counted by reason (a closed label
   * set; any other value is malformed), logged rate-limited, and treated as a dropout: the attempt no
   * longer waits for it, and it is sent nothing more for this attempt.
   */
  roundRefuse(clientId: string | null, raw: unknown): void {
    this.d.guard.message(() => {
      const c = this.known(clientId, 'round:refuse');
      if (!isRecord(raw)) throw new ProtocolError('malformed', 'round:refuse must be an object');
      if (!isRejectReason(raw.reason))
        throw new ProtocolError('malformed', 'round:refuse must give a reason from the closed set');
      const reason = raw.reason;
      const t = this.attempt({ round: raw.round as number, attempt: raw.attempt as number }, 'round:refuse');
      const member = this.memberOf(t, c);
      // A claimed update counts as reported: its input is on its way in a gateway's partial sum.
      if (t.accumulator.hasReported(member) || t.accepted.has(`update/${member}`))
        throw new ProtocolError('duplicate', `client already reported for round ${t.ref.round}`);
      if (t.refused.has(member)) return; // counted once per attempt
      t.refused.add(member);
      this.d.metrics.clientRefusals.inc({ reason });
      this.d.inputLog?.write(
        `round ${t.ref.round}.${t.ref.attempt}: client ${c.id} refused the round plan (${reason})`,
      );
      this.d.guard.round(() => t.accumulator.settle());
    });
  }

  /**
   * A second message of a kind the member already had accepted this attempt: the same message again (a
   * re-send after a reconnect, its ack lost) is acknowledged as a duplicate and changes nothing; a
   * different one is refused (an answer cannot be changed).
   */
  private resent(t: Training, key: string, digest: Buffer, why: string): Ack {
    if (t.accepted.get(key)?.equals(digest)) return { ok: true, duplicate: true };
    throw new ProtocolError('duplicate', why);
  }

  private known(clientId: string | null, what: string): ClientRecord {
    const c = this.d.clients.get(clientId);
    if (!c) throw new ProtocolError('unknown_client', `${what} from a client that never said hello`);
    return c;
  }

  /** The attempt in progress, if the message names it; else why not. */
  private attempt(ref: RoundRef, what: string): Training {
    const { round, attempt } = ref;
    const { ref: cur, state } = this.d.round();
    if (!Number.isInteger(round) || !Number.isInteger(attempt))
      throw new ProtocolError('malformed', `${what} must name its round and attempt`);
    if (round > cur.round || (round === cur.round && attempt > cur.attempt))
      throw new ProtocolError(
        'wrong_round',
        `${what} for round ${round}.${attempt}, server is at ${cur.round}.${cur.attempt}`,
      );
    if (round < cur.round || attempt < cur.attempt || state.kind !== 'training')
      throw new ProtocolError('late', `round ${round}.${attempt} is closed`);
    return state;
  }

  /** The client's 1-based place in the attempt's cohort. */
  private memberOf(t: Training, c: ClientRecord): number {
    const member = t.members.get(c.id);
    if (member === undefined)
      throw new ProtocolError('not_selected', `client was not selected for round ${t.ref.round}`);
    return member;
  }
}
