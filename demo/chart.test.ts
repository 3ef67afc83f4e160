import { describe, expect, it } from 'vitest';
import { niceTicks } from './chart.ts';

describe('niceTicks', () => {
  it('steps by 1, 2 or 5 times a power of ten and covers the range', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 2.33)).toEqual([0, 0.5, 1, 1.5, 2]);
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(1.2, 1.9)).toEqual([1.2, 1.4, 1.6, 1.8]); // raw step 0.14 -> 0.2
  });
  it('degenerate ranges give one tick', () => {
    expect(niceTicks(3, 3)).toEqual([3]);
  });
});
