import type { BoundsFailure, EncodingPlan } from '../../shared/fl/encoding.ts';
import type { Timer } from '../clock.ts';
import {
  cohortTarget,
  type Accumulator,
  type MemberUpdate,
  type RoundContext,
  type RoundMode,
  type RoundSettings,
} from './types.ts';

/** What a plain round's inputs add up to: the mean and what is known beside it, or a failed bounds check. */
export type PlainResult =
  | {
      ok: true;
      mean: Float32Array;
      /** Noisy sum of clip indicators (null when unused). */
      indicatorSum: number | null;
      examples: number | null;
      trainLoss: number | null;
    }
  | { ok: false; check: BoundsFailure; message: string };

/**
 * The closing rules of a round whose updates are summed in the clear (float or ring): close when every
 * member reported, early when the members still missing are all offline (and enough reported), else at
 * the round deadline; fewer than minUpdates inputs fail the attempt. Over-selected (target < n): the
 * update is the first step, so the first `target` updates form the cohort and close the attempt at once;
 * every member that did not report by the close is released (told), and only the cohort's shortfall
 * counts as stragglers.
 */
export abstract class PlainAccumulator implements Accumulator {
  abstract readonly mode: RoundMode;
  abstract readonly encoding: EncodingPlan | null;
  abstract readonly ringLength: number | undefined;
  abstract readonly description: string;
  readonly secure = null;
  readonly deadlineAt: number;
  private readonly members = new Set<number>();
  /** Cohort size (see RoundSettings.target). */
  private readonly target: number;
  private timer: Timer | null;
  private closed = false;

  constructor(
    protected readonly s: RoundSettings,
    protected readonly ctx: RoundContext,
  ) {
    this.target = cohortTarget(s);
    this.deadlineAt = ctx.clock.now() + s.roundDeadlineMs;
    this.timer = ctx.clock.setTimeout(() => this.close('deadline'), s.roundDeadlineMs);
  }

  /** Adds one input to the running sum. */
  protected abstract accept(u: MemberUpdate): void;

  /** The aggregate of the n inputs, or which bound their sum broke (then nothing is decoded). */
  protected abstract result(n: number): PlainResult;

  get reported(): number {
    return this.members.size;
  }

  hasReported(member: number): boolean {
    return this.members.has(member);
  }

  add(member: number, u: MemberUpdate): void {
    if (this.closed) throw new Error('round attempt is closed');
    if (!(Number.isInteger(member) && member >= 1 && member <= this.s.n))
      throw new RangeError(`member must be in 1..${this.s.n}, got ${member}`);
    if (this.members.has(member)) throw new Error(`member ${member} already reported`);
    if (this.members.size >= this.target) throw new Error(`the cohort of ${this.target} is full`);
    this.accept(u);
    this.members.add(member);
  }

  settle(): void {
    if (this.closed) return;
    if (this.members.size === this.s.n) return this.close('all reported');
    if (this.members.size >= this.target) return this.close(`cohort of ${this.target} full`);
    if (this.members.size < this.s.minUpdates) return;
    for (let m = 1; m <= this.s.n; m++) if (!this.members.has(m) && this.ctx.online(m)) return;
    this.close('remaining clients offline');
  }

  stop(): void {
    this.closed = true;
    if (this.timer) this.ctx.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Over-selection: every member without an update in is told; `stragglers` of them are counted as such. */
  private release(stragglers: number): void {
    if (this.target === this.s.n) return;
    let told = 0;
    for (let m = 1; m <= this.s.n; m++) {
      if (this.members.has(m)) continue;
      this.ctx.send(m, 'round:release', { ...this.ctx.ref, step: 'update' });
      told++;
    }
    if (told > stragglers) this.ctx.metrics.clientsReleased.inc({ step: 'update' }, told - stragglers);
  }

  private close(why: string): void {
    if (this.closed) return;
    this.stop();
    const n = this.members.size;
    const stragglers = Math.max(0, this.target - n);
    this.release(stragglers);
    if (n < this.s.minUpdates) {
      this.ctx.close({
        ok: false,
        reason: 'too_few_updates',
        why: `${why}: ${n} of ${this.s.minUpdates} required updates`,
        updates: n,
        dropped: stragglers,
      });
      return;
    }
    const r = this.result(n);
    if (!r.ok) {
      this.ctx.close({
        ok: false,
        reason: 'aggregate_rejected',
        check: r.check,
        why: `${why}: aggregate rejected (${r.message})`,
        updates: n,
        dropped: stragglers,
      });
      return;
    }
    this.ctx.close({
      ok: true,
      why,
      mean: r.mean,
      clients: n,
      examples: r.examples,
      trainLoss: r.trainLoss,
      stragglers,
      dropped: stragglers,
      indicatorSum: r.indicatorSum,
    });
  }
}
