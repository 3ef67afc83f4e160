import { describe, expect, it } from 'vitest';
import { chooseDegree, harary, logBinomialTail, thresholdFor } from './graph.ts';

function connected(nb: number[][], alive: Set<number>): boolean {
  const start = [...alive][0];
  const seen = new Set([start]);
  const stack = [start];
  while (stack.length)
    for (const v of nb[stack.pop()!]) if (alive.has(v) && !seen.has(v)) (seen.add(v), stack.push(v));
  return seen.size === alive.size;
}

describe('neighbour graph', () => {
  it('Harary graph: every client has exactly k distinct neighbours, symmetric, no self loops', () => {
    for (const [n, k] of [
      [10, 4],
      [50, 8],
      [101, 34],
    ]) {
      const nb = harary(n, k);
      nb.forEach((l, i) => {
        expect(new Set(l).size).toBe(k);
        expect(l).not.toContain(i);
        for (const v of l) expect(nb[v]).toContain(i);
      });
      expect(connected(nb, new Set(nb.keys()))).toBe(true);
    }
  });

  it('k >= n - 1 gives the complete graph; odd or tiny k is refused', () => {
    expect(harary(4, 3)).toEqual([
      [1, 2, 3],
      [0, 2, 3],
      [0, 1, 3],
      [0, 1, 2],
    ]);
    expect(() => harary(10, 3)).toThrow(/even/);
  });

  it('is a fresh random permutation each time', () => {
    expect(harary(40, 4)).not.toEqual(harary(40, 4));
  });

  it('binomial tail matches a direct sum', () => {
    const direct = (k: number, p: number, m: number) => {
      let s = 0;
      for (let i = m; i <= k; i++) {
        let c = 1;
        for (let j = 0; j < i; j++) c = (c * (k - j)) / (j + 1);
        s += c * p ** i * (1 - p) ** (k - i);
      }
      return s;
    };
    for (const [k, p, m] of [
      [10, 0.1, 3],
      [30, 0.05, 16],
      [6, 0.5, 0],
    ]) {
      expect(Math.exp(logBinomialTail(k, p, m))).toBeCloseTo(direct(k, p, m), 12);
    }
  });

  it('degree grows like log n; small cohorts use the complete graph', () => {
    expect(chooseDegree(10)).toEqual({ k: 9, t: 5, complete: true });
    const ks = [100, 1000, 10_000, 100_000].map((n) => chooseDegree(n).k);
    expect(ks).toEqual([...ks].sort((a, b) => a - b));
    expect(ks[3]).toBeLessThan(60);
    expect(ks[3] - ks[0]).toBeLessThan(20); // 1000x more clients, a handful more neighbours
    for (const n of [100, 1000]) {
      const { k, t } = chooseDegree(n);
      expect(k % 2).toBe(0);
      expect(t).toBe(thresholdFor(k, 0.5));
      expect(t).toBeGreaterThan(k / 2);
    }
  });

  it('with the chosen k, survivors stay connected under 10% random dropout (n = 300, 200 trials)', () => {
    const n = 300;
    const { k } = chooseDegree(n);
    for (let trial = 0; trial < 200; trial++) {
      const nb = harary(n, k);
      const alive = new Set([...nb.keys()].filter(() => Math.random() > 0.1));
      expect(connected(nb, alive)).toBe(true);
    }
  });
});
