/**
 * FedAvg as a streaming, example-weighted mean of client deltas: the aggregator keeps one
 * Float64Array running sum, never a copy per client.
 */
export class WeightedMean {
  private readonly sum: Float64Array;
  private weight = 0;
  private count = 0;

  constructor(readonly length: number) {
    this.sum = new Float64Array(length);
  }

  add(vec: Float32Array, weight: number): void {
    if (vec.length !== this.length)
      throw new Error(`vector has ${vec.length} values, expected ${this.length}`);
    if (!(weight > 0) || !Number.isFinite(weight))
      throw new Error(`weight must be a positive finite number, got ${weight}`);
    const s = this.sum;
    for (let i = 0; i < s.length; i++) s[i] += weight * vec[i];
    this.weight += weight;
    this.count++;
  }

  get clients(): number {
    return this.count;
  }

  get totalWeight(): number {
    return this.weight;
  }

  /** The weighted mean; throws when nothing was added. */
  mean(): Float32Array {
    if (this.count === 0) throw new Error('no updates to average');
    const out = new Float32Array(this.length);
    for (let i = 0; i < out.length; i++) out[i] = this.sum[i] / this.weight;
    return out;
  }
}
