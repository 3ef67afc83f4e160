import { WeightedMean } from '../../shared/fl/fedavg.ts';
import { PlainAccumulator, type PlainResult } from './plain.ts';
import type { MemberUpdate, RoundContext, RoundSettings } from './types.ts';

/** Plain FedAvg: float32 deltas, weighted by examples, summed in float64. */
export class FloatAccumulator extends PlainAccumulator {
  readonly mode = 'float';
  readonly encoding = null;
  readonly ringLength = undefined;
  readonly description = 'plain float32';
  private readonly sum: WeightedMean;
  private examples = 0;
  private lossSum = 0;

  constructor(s: RoundSettings, ctx: RoundContext) {
    super(s, ctx);
    this.sum = new WeightedMean(s.numParams);
  }

  protected accept(u: MemberUpdate): void {
    if (!u.delta) throw new TypeError('a float round takes float32 deltas');
    this.sum.add(u.delta, u.numExamples);
    this.examples += u.numExamples;
    this.lossSum += u.loss;
  }

  protected result(n: number): PlainResult {
    const mean = this.sum.mean();
    return { ok: true, mean, indicatorSum: null, examples: this.examples, trainLoss: this.lossSum / n };
  }
}
