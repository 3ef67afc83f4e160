import { vectorLength, type EncodingPlan } from '../../shared/fl/encoding.ts';
import type { SecAggRoundInfo } from '../../shared/protocol/messages.ts';
import {
  chooseDegree,
  colludersOf,
  describeDegree,
  harary,
  log2SplitBound,
  type SplitBound,
} from '../../shared/secagg/graph.ts';
import type { SecAggActivePhase } from '../../shared/secagg/types.ts';
import { SecureRound, type SecureOutcome } from '../secure-round.ts';
import { checkedDecode, decodedExamples } from './bounds.ts';
import {
  cohortTarget,
  type Accumulator,
  type MemberUpdate,
  type RoundContext,
  type RoundSettings,
  type DegreeReport,
  type SecAggChannel,
  type SecAggClientMessage,
  type SecAggSettings,
} from './types.ts';

/**
 * Masked ring vectors under secure aggregation (SecAgg+ over a Harary graph): the server sums what it
 * cannot read and learns only the sum of the survivors, after the unmask phase. The phases, their
 * deadlines and early closes are SecureRound's.
 */
export class SecureAccumulator implements Accumulator, SecAggChannel {
  readonly mode = 'secure';
  readonly ringLength: number;
  readonly k: number;
  readonly t: number;
  readonly degree: DegreeReport;
  /** Cohort size: the first `target` of the n invited to advertise keys take part (over-selection). */
  private readonly target: number;
  private readonly round: SecureRound;
  /** Members whose masked input arrived (their example counts are inside the vectors, never in the clear). */
  private readonly inputs = new Set<number>();

  constructor(
    private readonly s: RoundSettings & { secagg: SecAggSettings },
    readonly encoding: EncodingPlan,
    private readonly ctx: RoundContext,
  ) {
    // k and t are sized for the cohort, never for the invited count (over-selection fixes it at R0).
    const n = (this.target = cohortTarget(s));
    const sa = s.secagg;
    const maliciousServer = sa.maliciousServer === true;
    const degree = chooseDegree(n, {
      dropout: sa.dropout,
      corrupt: sa.corrupt,
      sigma: SECURITY_BITS,
      eta: 20,
      thresholdFraction: sa.thresholdFraction,
      maliciousServer,
    });
    this.k = degree.k;
    this.t = degree.t;
    // Malicious-server mode: the split bound counts colluders among a client's k neighbours as a uniform
    // draw, which holds only if the server cannot choose the circle. It does choose it today (harary()
    // shuffles with the server's randomness), so for SecAgg+ cohorts (n >= 50) the bound is only as good
    // as the server's honesty about that shuffle; below 50 the graph is complete and there is no order
    // to steer. A verifiable order (e.g. from the clients' committed randomness) is still to come.
    const split: SplitBound | null = maliciousServer
      ? log2SplitBound(n, degree.k, degree.t, colludersOf(n, sa.corrupt))
      : null;
    const splitNote = split
      ? `; malicious-server mode: split unmask requests (${split.colluders} assumed colluders, ${split.needed} needed among a client's neighbours) expose a client with probability ${probability(split.log2Bound)}`
      : '';
    this.degree = {
      n,
      degree,
      maliciousServer,
      split,
      description: describeDegree(n, degree) + splitNote,
    };
    this.ringLength = vectorLength(s.numParams);
    const overSelected = n < s.n;
    this.round = new SecureRound({
      ref: ctx.ref,
      tag: sa.tag,
      n: s.n,
      // Over-selected: the graph is laid over whoever made the cohort, when R0 closes.
      neighbours: overSelected ? [] : harary(n, degree.k).map((l) => l.map((v) => v + 1)),
      cohort: overSelected ? { size: n, graph: (m) => harary(m, degree.k) } : null,
      t: degree.t,
      vectorLength: this.ringLength,
      minSurvivors: s.minUpdates,
      consistency: sa.consistency,
      clock: ctx.clock,
      defer: ctx.defer,
      keysDeadlineMs: sa.keysDeadlineMs,
      sharesDeadlineMs: sa.sharesDeadlineMs,
      maskedDeadlineAt: ctx.clock.now() + s.roundDeadlineMs,
      unmaskDeadlineMs: sa.unmaskDeadlineMs,
      // R3 is one round trip like R4 (sign a set vs reveal shares): the same deadline.
      consistencyDeadlineMs: sa.unmaskDeadlineMs,
      metrics: ctx.metrics,
      send: {
        roster: (i, m) => ctx.send(i, 'secagg:roster', m),
        inbox: (i, m) => ctx.send(i, 'secagg:inbox', m),
        survivors: (i, m) => ctx.send(i, 'secagg:survivors', m),
        unmask: (i, m) => ctx.send(i, 'secagg:unmask', m),
        release: (i, m) => ctx.send(i, 'round:release', m),
      },
      online: (i) => ctx.online(i),
      log: (m) => ctx.log(m),
      done: (o) => this.done(o),
      beforeUnmask: ctx.beforeUnmask,
      hold: ctx.hold,
      unmask: ctx.unmask,
    });
  }

  get secure(): SecAggChannel {
    return this;
  }

  get description(): string {
    const r3 = this.s.secagg.consistency ? ', consistency round' : '';
    return `secure aggregation, k = ${this.k}${r3}: ${this.degree.description}`;
  }

  get deadlineAt(): number {
    return this.round.deadlineAt;
  }

  get phase(): SecAggActivePhase {
    return this.round.phase as SecAggActivePhase;
  }

  get reported(): number {
    return this.inputs.size;
  }

  hasReported(member: number): boolean {
    return this.inputs.has(member);
  }

  info(member: number): SecAggRoundInfo {
    const info: SecAggRoundInfo = {
      tag: this.s.secagg.tag,
      index: member,
      n: this.s.n,
      t: this.t,
      k: this.k,
    };
    if (this.target < this.s.n) info.cohort = this.target; // absent otherwise: round:start as before
    if (this.s.secagg.consistency) info.consistency = true; // absent otherwise: round:start as before
    return info;
  }

  receive(kind: SecAggClientMessage, member: number, raw: unknown): void {
    if (kind === 'keys') this.round.keys(member, raw);
    else if (kind === 'shares') this.round.shares(member, raw);
    else if (kind === 'signature') this.round.signature(member, raw);
    else this.round.reveal(member, raw);
  }

  resend(member: number): boolean {
    return this.round.resend(member);
  }

  checkMasked(member: number): void {
    this.round.checkMasked(member);
  }

  addMaskedSum(members: readonly number[], sum: Uint32Array): void {
    this.round.maskedSum(members, sum);
    for (const m of members) this.inputs.add(m);
  }

  add(member: number, u: MemberUpdate): void {
    if (!u.ring) throw new TypeError('a secure round takes masked ring vectors');
    this.round.masked(member, u.ring);
    this.inputs.add(member);
  }

  settle(): void {
    this.round.maybeCloseEarly();
  }

  stop(): void {
    this.round.stop();
  }

  private done(o: SecureOutcome): void {
    // Released invitees are not dropouts: only the cohort's missing inputs count.
    const dropped = Math.max(0, this.target - this.inputs.size);
    // Named culprits ride along with the outcome (omitted when there are none).
    const culprits = o.culprits.length ? { culprits: o.culprits } : {};
    if (!o.ok) {
      this.ctx.close({
        ok: false,
        reason: 'secagg_aborted',
        why: o.reason,
        updates: this.inputs.size,
        dropped,
        ...culprits,
      });
      return;
    }
    const survivors = o.survivors.length;
    const d = checkedDecode(o.sum, survivors, this.encoding, this.ctx.metrics);
    if (!d.ok) {
      this.ctx.close({
        ok: false,
        reason: 'aggregate_rejected',
        check: d.check,
        why: `secure aggregation complete, aggregate rejected (${d.message})`,
        updates: survivors,
        dropped,
        ...culprits,
      });
      return;
    }
    const agg = d.aggregate;
    this.ctx.close({
      ok: true,
      why: 'secure aggregation complete',
      mean: agg.mean,
      clients: survivors,
      examples: decodedExamples(agg, this.encoding),
      trainLoss: agg.meanLoss,
      stragglers: Math.max(0, this.target - survivors),
      dropped,
      indicatorSum: this.s.dp?.adaptive ? agg.indicatorSum : null,
      ...culprits,
    });
  }
}

/** Security parameter sigma: every security bound of (k, t) is below 2^-SECURITY_BITS. */
const SECURITY_BITS = 40;

/** 2^log2 for a log line: "0" when impossible, else "below 2^-x". */
function probability(log2: number): string {
  return Number.isFinite(log2) ? `below 2^${Math.ceil(log2)}` : '0';
}
