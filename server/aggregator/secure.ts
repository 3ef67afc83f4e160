import { vectorLength, type EncodingPlan } from '../../shared/fl/encoding.ts';
import type { SecAggRoundInfo } from '../../shared/protocol/messages.ts';
import { chooseDegree, harary } from '../../shared/secagg/graph.ts';
import type { SecAggActivePhase } from '../../shared/secagg/types.ts';
import { SecureRound, type SecureOutcome } from '../secure-round.ts';
import { checkedDecode, decodedExamples } from './bounds.ts';
import type {
  Accumulator,
  MemberUpdate,
  RoundContext,
  RoundSettings,
  SecAggChannel,
  SecAggClientMessage,
  SecAggSettings,
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
  private readonly round: SecureRound;
  /** Members whose masked input arrived (their example counts are inside the vectors, never in the clear). */
  private readonly inputs = new Set<number>();

  constructor(
    private readonly s: RoundSettings & { secagg: SecAggSettings },
    readonly encoding: EncodingPlan,
    private readonly ctx: RoundContext,
  ) {
    const n = s.n;
    const sa = s.secagg;
    const degree = chooseDegree(n, {
      dropout: sa.dropout,
      corrupt: sa.corrupt,
      sigma: 40,
      eta: 20,
      thresholdFraction: sa.thresholdFraction,
    });
    this.k = degree.k;
    this.t = degree.t;
    this.ringLength = vectorLength(s.numParams);
    this.round = new SecureRound({
      ref: ctx.ref,
      tag: sa.tag,
      n,
      neighbours: harary(n, degree.k).map((l) => l.map((v) => v + 1)),
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
      },
      online: (i) => ctx.online(i),
      log: (m) => ctx.log(m),
      done: (o) => this.done(o),
    });
  }

  get secure(): SecAggChannel {
    return this;
  }

  get description(): string {
    const r3 = this.s.secagg.consistency ? ', consistency round' : '';
    return `secure aggregation, k = ${this.k}, t = ${this.t}${r3}`;
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
    if (this.s.secagg.consistency) info.consistency = true; // absent otherwise: round:start as before
    return info;
  }

  receive(kind: SecAggClientMessage, member: number, raw: unknown): void {
    if (kind === 'keys') this.round.keys(member, raw);
    else if (kind === 'shares') this.round.shares(member, raw);
    else if (kind === 'signature') this.round.signature(member, raw);
    else this.round.reveal(member, raw);
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
    const dropped = Math.max(0, this.s.n - this.inputs.size);
    if (!o.ok) {
      this.ctx.close({
        ok: false,
        reason: 'secagg_aborted',
        why: o.reason,
        updates: this.inputs.size,
        dropped,
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
      stragglers: this.s.n - survivors,
      dropped,
      indicatorSum: this.s.dp?.adaptive ? agg.indicatorSum : null,
    });
  }
}
