import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  chooseDegree,
  colludersOf,
  DEFAULT_NEIGHBOURHOOD,
  degreeBounds,
  describeDegree,
  harary,
  log2SplitBound,
  logBinomialTail,
  logHypergeometricTail,
  maliciousThreshold,
  SECAGG_PLUS_MIN_COHORT,
  thresholdFor,
  type NeighbourhoodParams,
} from './graph.ts';

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

  it('degree grows like log n; SecAgg+ cohorts keep t a majority of k', () => {
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

/** Exact binomial coefficient. */
function choose(n: number, k: number): bigint {
  if (k < 0 || k > n) return 0n;
  let r = 1n;
  for (let i = 0; i < k; i++) r = (r * BigInt(n - i)) / BigInt(i + 1);
  return r;
}

/** log2 of a positive bigint, to double precision. */
function log2Big(x: bigint): number {
  const bits = x.toString(2).length;
  const shift = Math.max(0, bits - 60);
  return shift + Math.log2(Number(x >> BigInt(shift)));
}

/** log2 P[X >= m], X hypergeometric, as an exact ratio of integers. */
function exactLog2HyperTail(population: number, marked: number, draws: number, m: number): number {
  let num = 0n;
  for (let x = Math.max(m, 0); x <= draws; x++)
    num += choose(marked, x) * choose(population - marked, draws - x);
  return num === 0n ? -Infinity : log2Big(num) - log2Big(choose(population, draws));
}

const popcount = (v: number): number => {
  let c = 0;
  for (; v; v &= v - 1) c++;
  return c;
};

describe('thresholds that say what they protect', () => {
  it('refuses cohorts of fewer than 3 clients (two clients would each learn the other from the sum)', () => {
    expect(() => chooseDegree(2)).toThrow(/at least 3 clients/);
    expect(() => chooseDegree(0)).toThrow(RangeError);
    expect(() => chooseDegree(3.5)).toThrow(RangeError);
  });

  it('small cohorts: complete graph, t = floor(n/2) + 1, and the colluders tolerated are stated', () => {
    for (let n = 3; n < 50; n++) {
      const d = chooseDegree(n);
      expect(d).toMatchObject({ k: n - 1, t: Math.floor(n / 2) + 1, complete: true, bounds: null });
      expect(d.t).toBeGreaterThanOrEqual(2);
      expect(d.toleratedColluders).toBe(d.t - 1);
      // Split requests: honest holders (k - c of them) can supply t of one kind and t of the other iff c >= 2t - k.
      expect(d.toleratedColludersSplit).toBe(n % 2 === 0 ? 2 : 1);
    }
    expect(describeDegree(10, chooseDegree(10))).toBe(
      'complete graph of 10 clients, threshold 6: tolerates 5 colluding clients (2 if the server splits its unmask requests)',
    );
    expect(describeDegree(3, chooseDegree(3))).toContain('tolerates 1 colluding client (1 if');
    // A larger configured fraction raises t; a smaller one never lowers it below the majority.
    expect(chooseDegree(10, { ...DEFAULT_NEIGHBOURHOOD, thresholdFraction: 0.8 }).t).toBe(8);
    expect(chooseDegree(10, { ...DEFAULT_NEIGHBOURHOOD, thresholdFraction: 0.1 }).t).toBe(6);
  });

  it('SecAgg+ cohorts report bounds that meet 2^-40 security and 2^-20 correctness, and k is the smallest that does', () => {
    for (const n of [50, 100, 1000, 100_000]) {
      const d = chooseDegree(n);
      expect(d.complete).toBe(false);
      const b = d.bounds!;
      expect(b).toEqual(degreeBounds(n, d.k, d.t, DEFAULT_NEIGHBOURHOOD));
      expect(b.securityBits).toBeGreaterThan(40);
      expect(b.correctnessBits).toBeGreaterThan(20);
      // Independently: capture = n * P[Bin(k, 0.05) >= t], starve = n * P[Bin(k, 0.1) > k - t].
      expect(b.capture).toBeCloseTo(Math.log2(n) + logBinomialTail(d.k, 0.05, d.t) / Math.LN2, 9);
      expect(b.starve).toBeCloseTo(Math.log2(n) + logBinomialTail(d.k, 0.1, d.k - d.t + 1) / Math.LN2, 9);
      // Dropped and colluding clients both leave the honest graph: removal probability 1 - 0.9 * 0.95.
      expect(b.disconnect).toBeCloseTo(2 * Math.log2(n) - 1 + d.k * Math.log2(1 - 0.9 * 0.95), 9);
      const smaller = degreeBounds(n, d.k - 2, thresholdFor(d.k - 2, 0.5), DEFAULT_NEIGHBOURHOOD);
      expect(smaller.securityBits > 40 && smaller.correctnessBits > 20).toBe(false);
      expect(describeDegree(n, d)).toMatch(/exposed with probability below 2\^-4\d/);
    }
  });

  it('refuses a (k, t) that fails the bounds instead of falling back to the complete graph', () => {
    const p: NeighbourhoodParams = { ...DEFAULT_NEIGHBOURHOOD, corrupt: 0.3 };
    expect(() => chooseDegree(60, p)).toThrow(/no neighbourhood for 60 clients.*capture/);
    expect(() => chooseDegree(60, { ...DEFAULT_NEIGHBOURHOOD, dropout: 0.45 })).toThrow(/live holders/);
    expect(() => chooseDegree(100, { ...DEFAULT_NEIGHBOURHOOD, thresholdFraction: 0.4 })).toThrow(
      /t <= k\/2/,
    );
    expect(() => chooseDegree(100, { ...DEFAULT_NEIGHBOURHOOD, dropout: 1 })).toThrow(/dropout/);
    // Where the complete graph does meet the bounds, it is used and says so.
    const tight: NeighbourhoodParams = { ...DEFAULT_NEIGHBOURHOOD, dropout: 0.16 };
    const d = chooseDegree(50, tight);
    expect(d.complete).toBe(true);
    expect(d.bounds!.securityBits).toBeGreaterThan(40);
  });

  it('hypergeometric tail equals an exact count of subsets', () => {
    for (const [N, K, draws] of [
      [12, 3, 6],
      [13, 5, 4],
      [9, 0, 4],
      [10, 10, 3],
    ]) {
      for (let m = 0; m <= draws + 1; m++) {
        let hits = 0;
        let all = 0;
        for (let s = 0; s < 1 << N; s++) {
          if (popcount(s) !== draws) continue;
          all++;
          if (popcount(s & ((1 << K) - 1)) >= m) hits++; // items 0..K-1 are the marked ones
        }
        const got = Math.exp(logHypergeometricTail(N, K, draws, m));
        expect(got).toBeCloseTo(hits / all, 12);
      }
    }
    expect(() => logHypergeometricTail(5, 6, 2, 1)).toThrow(RangeError);
  });

  it('split bound: per client and over the cohort, against exact rational arithmetic', () => {
    for (const [n, k, t, c] of [
      [100, 42, 24, 5],
      [1000, 82, 54, 50],
      [60, 34, 18, 3],
    ]) {
      const b = log2SplitBound(n, k, t, c);
      expect(b.needed).toBe(2 * t - k);
      expect(b.log2PerClient).toBeCloseTo(exactLog2HyperTail(n - 1, c, k, 2 * t - k), 8);
      expect(b.log2Bound).toBeCloseTo(b.log2PerClient + Math.log2(n - c), 12);
    }
    // The complete graph leaves nothing to chance: every colluder is a neighbour.
    expect(log2SplitBound(10, 9, 6, 3).log2PerClient).toBeCloseTo(0, 12);
    expect(log2SplitBound(10, 9, 6, 2).log2PerClient).toBe(-Infinity);
  });

  it('maliciousThreshold picks the smallest t whose split bound is below 2^-sigma, and reports it', () => {
    for (const [n, k, corrupt] of [
      [100, 42, 0.05],
      [1000, 82, 0.05],
      [10_000, 100, 0.02],
      [10, 9, 0.05],
    ]) {
      const r = maliciousThreshold(n, k, corrupt);
      const c = colludersOf(n, corrupt);
      expect(r.colluders).toBe(c);
      expect(r.log2Bound).toBeLessThan(-40);
      const exact = exactLog2HyperTail(n - 1, c, k, 2 * r.t - k) + Math.log2(n - c);
      if (Number.isFinite(exact)) expect(r.log2Bound).toBeCloseTo(exact, 8);
      else expect(r.log2Bound).toBe(-Infinity);
      if (r.t - 1 > k / 2) {
        expect(exactLog2HyperTail(n - 1, c, k, 2 * (r.t - 1) - k) + Math.log2(n - c)).toBeGreaterThanOrEqual(
          -40,
        );
      }
    }
    expect(colludersOf(100, 0.07)).toBe(7); // 0.07 * 100 is 7.000000000000001 in floating point
    expect(colludersOf(50, 0.05)).toBe(3); // 2.5 colluders round up
    expect(() => maliciousThreshold(100, 10, 0.45)).toThrow(/no threshold/);
  });

  it('malicious-server mode raises t until the split bound holds, and reports it', () => {
    const p: NeighbourhoodParams = { ...DEFAULT_NEIGHBOURHOOD, maliciousServer: true };
    for (const n of [100, 1000]) {
      const d = chooseDegree(n, p);
      expect(d.bounds!.split).toBeLessThan(-40);
      expect(d.bounds!.securityBits).toBeGreaterThan(40);
      expect(d.t).toBeGreaterThanOrEqual(maliciousThreshold(n, d.k, p.corrupt).t);
      expect(d.bounds!.correctnessBits).toBeGreaterThan(20);
      // The honest-but-curious choice would not survive split requests.
      const hbc = chooseDegree(n);
      expect(hbc.bounds!.split).toBeGreaterThan(-40);
    }
    // Small cohorts: the colluders are all neighbours, so t must exceed (k + colluders) / 2.
    const d = chooseDegree(20, { ...p, corrupt: 0.2 }); // 4 colluders, k = 19: 2t - 19 >= 5
    expect(d.t).toBe(12);
    expect(d.toleratedColludersSplit).toBe(4);
  });

  it('the disconnect bound is an upper bound on the exact probability (all removal sets of a small circle)', () => {
    const n = 12;
    const k = 4;
    // A fixed circle: with a uniformly random permutation the probability is the same.
    const nb = Array.from({ length: n }, (_, i) =>
      [-2, -1, 1, 2].map((d) => (i + d + n) % n).sort((a, b) => a - b),
    );
    for (const removed of [0.1, 0.2, 0.3]) {
      let exact = 0;
      for (let s = 0; s < 1 << n; s++) {
        const alive = new Set([...Array(n).keys()].filter((i) => !(s & (1 << i))));
        if (alive.size >= 2 && !connected(nb, alive))
          exact += removed ** (n - alive.size) * (1 - removed) ** alive.size;
      }
      expect(exact).toBeGreaterThan(0);
      const dropout = removed; // corrupt = 0: only dropouts leave the graph
      const b = degreeBounds(n, k, 3, { ...DEFAULT_NEIGHBOURHOOD, dropout, corrupt: 0 });
      expect(Math.log2(exact)).toBeLessThanOrEqual(b.disconnect);
    }
  });
});

describe('the README states the degrees the code chooses', () => {
  // The README and the docs it links to, read as one text: each figure must match the code wherever it stands.
  const readme = ['../../README.md', '../../docs/design.md', '../../docs/threat-model.md']
    .map((f) => readFileSync(new URL(f, import.meta.url), 'utf8'))
    .join(' ')
    .replace(/\s+/g, ' ');
  const num = (s: string): number => Number(s.replace(/ /g, ''));

  it('k and t per cohort size, the small-cohort rule and the malicious-server figures', () => {
    const plain = readme.match(
      /k = (\d+) for (\d[\d ]*) clients, (\d+) for (\d[\d ]*), (\d+) for (\d[\d ]*) \(t = ⌊k\/2⌋ \+ 1\)/,
    );
    expect(plain).not.toBeNull();
    for (let i = 1; i < 7; i += 2) {
      const d = chooseDegree(num(plain![i + 1]));
      expect(d.k).toBe(Number(plain![i]));
      expect(d.t).toBe(Math.floor(d.k / 2) + 1);
    }
    const small = readme.match(
      /Cohorts below (\d+) \(the demo, the tests\) use the complete graph with t = ⌊n\/2⌋ \+ 1/,
    );
    expect(Number(small![1])).toBe(SECAGG_PLUS_MIN_COHORT);
    for (const n of [3, 4, 5, 10, 49]) {
      const d = chooseDegree(n);
      expect(d).toMatchObject({
        complete: true,
        t: Math.floor(n / 2) + 1,
        toleratedColluders: Math.floor(n / 2),
      });
      expect(d.toleratedColludersSplit).toBe(n % 2 === 1 ? 1 : 2);
    }
    const mal = readme.match(
      /k = (\d+), t = (\d+) for (\d[\d ]*) clients; k = (\d+), t = (\d+) for (\d[\d ]*)\./,
    );
    expect(mal).not.toBeNull();
    for (const i of [1, 4]) {
      const d = chooseDegree(num(mal![i + 2]), { ...DEFAULT_NEIGHBOURHOOD, maliciousServer: true });
      expect([d.k, d.t]).toEqual([Number(mal![i]), Number(mal![i + 1])]);
    }
  });
});

describe('harary on a fixed byte stream', () => {
  /** A deterministic stream: each call returns the next `len` bytes (a xorshift's low bytes). */
  const stream = (seed: number): ((len: number) => Uint8Array) => {
    let x = seed;
    return (len) =>
      Uint8Array.from({ length: len }, () => {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        return x & 0xff;
      });
  };
  /** The construction as first written: one 4-byte draw per swap, each edge pushed from both ends. */
  function reference(n: number, k: number, rand: (len: number) => Uint8Array): number[][] {
    const int = (m: number): number => {
      const limit = Math.floor(0x100000000 / m) * m;
      for (;;) {
        const b = rand(4);
        const v = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
        if (v < limit) return v % m;
      }
    };
    const circle = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = int(i + 1);
      [circle[i], circle[j]] = [circle[j], circle[i]];
    }
    const out: number[][] = Array.from({ length: n }, () => []);
    for (let pos = 0; pos < n; pos++)
      for (let d = 1; d <= k / 2; d++) {
        out[circle[pos]].push(circle[(pos + d) % n]);
        out[circle[(pos + d) % n]].push(circle[pos]);
      }
    for (const l of out) l.sort((x, y) => x - y);
    return out;
  }

  it('gives the graph of the per-draw construction: same permutation from the same bytes, same lists', () => {
    for (const [n, k, seed] of [
      [10, 4, 1],
      [51, 8, 2],
      [1000, 40, 3], // more draws than one 4 KiB block
      [5, 2, 4],
    ])
      expect(harary(n, k, stream(seed))).toEqual(reference(n, k, stream(seed)));
  });
});
