import { describe, expect, it } from 'vitest';
import { WeightedMean } from './fedavg.ts';

describe('FedAvg', () => {
  it('weights deltas by example count (hand-computed)', () => {
    const m = new WeightedMean(2);
    m.add(new Float32Array([1, 2]), 1);
    m.add(new Float32Array([4, -1]), 3);
    // (1*1 + 3*4)/4 = 3.25 ; (1*2 + 3*-1)/4 = -0.25
    expect([...m.mean()]).toEqual([3.25, -0.25]);
    expect(m.clients).toBe(2);
    expect(m.totalWeight).toBe(4);
  });

  it('equal weights give the plain mean', () => {
    const m = new WeightedMean(3);
    m.add(new Float32Array([1, 2, 3]), 10);
    m.add(new Float32Array([3, 2, 1]), 10);
    expect([...m.mean()]).toEqual([2, 2, 2]);
  });

  it('refuses wrong lengths, bad weights and empty means', () => {
    const m = new WeightedMean(2);
    expect(() => m.add(new Float32Array(3), 1)).toThrow(/3 values, expected 2/);
    expect(() => m.add(new Float32Array(2), 0)).toThrow(/positive/);
    expect(() => m.add(new Float32Array(2), NaN)).toThrow(/positive/);
    expect(() => m.mean()).toThrow(/no updates/);
  });
});
