import { describe, expect, it } from 'vitest';
import { lgamma, logAdd, logBinom, logErfc } from './special.ts';

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

describe('lgamma', () => {
  it('matches factorials and known values', () => {
    let logFact = 0;
    for (let n = 1; n <= 170; n++) {
      expect(rel(lgamma(n + 1), (logFact += Math.log(n)))).toBeLessThan(1e-13);
    }
    expect(rel(lgamma(0.5), 0.5 * Math.log(Math.PI))).toBeLessThan(1e-14); // Gamma(1/2) = sqrt(pi)
    expect(rel(lgamma(1e-8), -Math.log(1e-8) - 0.5772156649e-8)).toBeLessThan(1e-9);
  });
  it('uses |Gamma| for negative non-integers and +Infinity at poles', () => {
    // Gamma(-0.5) = -2 sqrt(pi) ; Gamma(-1.5) = 4 sqrt(pi) / 3
    expect(rel(lgamma(-0.5), Math.log(2 * Math.sqrt(Math.PI)))).toBeLessThan(1e-13);
    expect(rel(lgamma(-1.5), Math.log((4 * Math.sqrt(Math.PI)) / 3))).toBeLessThan(1e-13);
    expect(lgamma(0)).toBe(Infinity);
    expect(lgamma(-3)).toBe(Infinity);
  });
  it('logBinom matches exact binomials and generalises to real n', () => {
    expect(Math.exp(logBinom(10, 3))).toBeCloseTo(120, 9);
    expect(Math.exp(logBinom(50, 25))).toBeCloseTo(126410606437752, -2);
    // |C(1.5, 3)| = |1.5 * 0.5 * -0.5 / 6| = 0.0625
    expect(Math.exp(logBinom(1.5, 3))).toBeCloseTo(0.0625, 12);
  });
});

describe('logErfc', () => {
  // Reference values: Python's math.erfc (C libm), e.g. python3 -c 'import math; print(math.erfc(1.999))'.
  it.each([
    [-3, 1.9999779095030014],
    [-1, 1.8427007929497148],
    [0, 1],
    [0.5, 0.4795001221869535],
    [1, 0.15729920705028513],
    [1.999, 0.004698443348629488],
    [2, 0.004677734981047266],
    [3, 2.209049699858544e-5],
    [5, 1.5374597944280349e-12],
    [10, 2.088487583762545e-45],
  ])('erfc(%d)', (x, v) => {
    expect(rel(logErfc(x), Math.log(v))).toBeLessThan(1e-10);
  });
  it('stays finite far in the tail, where erfc underflows', () => {
    // Asymptotic series: log erfc(x) ~ -x^2 - ln(x) - 0.5 ln(pi) - 1/(2x^2) + ...
    const x = 100;
    const asym = -x * x - Math.log(x) - 0.5 * Math.log(Math.PI) - 0.5 / (x * x) + 0.625 / x ** 4;
    expect(rel(logErfc(x), asym)).toBeLessThan(1e-12);
    expect(logErfc(1e6)).toBeLessThan(-1e12);
    expect(logErfc(Infinity)).toBe(-Infinity);
  });
});

describe('logAdd', () => {
  it('adds in log space without overflow', () => {
    expect(logAdd(Math.log(2), Math.log(3))).toBeCloseTo(Math.log(5), 14);
    expect(logAdd(1000, 1000)).toBeCloseTo(1000 + Math.log(2), 12);
    expect(logAdd(-Infinity, 4)).toBe(4);
  });
});
