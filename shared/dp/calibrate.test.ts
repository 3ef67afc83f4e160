import { describe, expect, it } from 'vitest';
import { epsilonFor, noiseForEpsilon } from './calibrate.ts';

describe('noise calibration', () => {
  it('finds the smallest z (3 digits) that meets the target, and no smaller one does', () => {
    for (const [eps, q, T] of [
      [8, 0.01, 100],
      [3, 0.1, 50],
      [1, 1, 10],
    ] as const) {
      const z = noiseForEpsilon(eps, 1e-5, q, T);
      expect(epsilonFor(q, z, T, 1e-5)).toBeLessThanOrEqual(eps);
      expect(epsilonFor(q, z * 0.99, T, 1e-5)).toBeGreaterThan(eps * 0.98);
    }
  });
  it('epsilon grows with rounds and shrinks with noise', () => {
    expect(epsilonFor(0.1, 1, 20, 1e-5)).toBeGreaterThan(epsilonFor(0.1, 1, 10, 1e-5));
    expect(epsilonFor(0.1, 2, 10, 1e-5)).toBeLessThan(epsilonFor(0.1, 1, 10, 1e-5));
    expect(epsilonFor(0.1, 1, 0, 1e-5)).toBe(0);
  });
});
