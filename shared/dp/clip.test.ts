import { describe, expect, it } from 'vitest';
import { clipL2InPlace, l2Norm } from './clip.ts';

describe('L2 clipping', () => {
  it('scales an update above the bound onto the sphere of radius C and reports the original norm', () => {
    const v = Float32Array.of(3, 4);
    const r = clipL2InPlace(v, 1);
    expect(r.norm).toBe(5);
    expect(r.factor).toBeCloseTo(0.2, 12);
    expect(l2Norm(v)).toBeCloseTo(1, 6);
    expect(Array.from(v)).toEqual([Math.fround(0.6), Math.fround(0.8)]);
  });
  it('leaves an update inside the bound untouched', () => {
    const v = Float64Array.of(0.1, -0.2);
    expect(clipL2InPlace(v, 1).factor).toBe(1);
    expect(Array.from(v)).toEqual([0.1, -0.2]);
  });
  it('property: after clipping, norm <= C (random vectors, random C)', () => {
    for (let i = 0; i < 200; i++) {
      const v = Float64Array.from(
        { length: 50 },
        () => (Math.random() - 0.5) * 10 ** (Math.random() * 4 - 2),
      );
      const c = 10 ** (Math.random() * 2 - 1);
      clipL2InPlace(v, c);
      expect(l2Norm(v)).toBeLessThanOrEqual(c * (1 + 1e-12));
    }
  });
  it('refuses a bad bound and a non-finite update', () => {
    expect(() => clipL2InPlace(new Float64Array(2), 0)).toThrow(/positive/);
    expect(() => clipL2InPlace(Float64Array.of(NaN), 1)).toThrow(/non-finite/);
  });
});
