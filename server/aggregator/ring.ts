import { vectorLength, type EncodingPlan } from '../../shared/fl/encoding.ts';
import { addInto } from '../../shared/secagg/ring.ts';
import { checkedDecode, decodedExamples } from './bounds.ts';
import { PlainAccumulator, type PlainResult } from './plain.ts';
import type { MemberUpdate, RoundContext, RoundSettings } from './types.ts';

/** Ring-encoded updates (clipped, noised under DP) summed mod 2^32 without masks. */
export class RingAccumulator extends PlainAccumulator {
  readonly mode = 'ring';
  readonly ringLength: number;
  readonly description = 'ring-encoded, unmasked';
  private readonly sum: Uint32Array;

  constructor(
    s: RoundSettings,
    readonly encoding: EncodingPlan,
    ctx: RoundContext,
  ) {
    super(s, ctx);
    this.ringLength = vectorLength(s.numParams);
    this.sum = new Uint32Array(this.ringLength);
  }

  protected accept(u: MemberUpdate): void {
    if (!u.ring || u.ring.length !== this.ringLength)
      throw new TypeError(`a ring round takes ring vectors of ${this.ringLength} values`);
    addInto(this.sum, u.ring);
  }

  protected result(n: number): PlainResult {
    const d = checkedDecode(this.sum, n, this.encoding, this.ctx.metrics);
    if (!d.ok) return d;
    const agg = d.aggregate;
    return {
      ok: true,
      mean: agg.mean,
      indicatorSum: this.s.dp?.adaptive ? agg.indicatorSum : null,
      examples: decodedExamples(agg, this.encoding),
      trainLoss: agg.meanLoss,
    };
  }
}
