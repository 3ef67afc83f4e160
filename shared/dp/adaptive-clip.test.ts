import { describe, expect, it } from 'vitest';
import { nextClipNorm, valueNoiseMultiplier } from './adaptive-clip.ts';

const cfg = { targetQuantile: 0.5, learningRate: 0.2, indicatorStd: 0.5 };

describe('adaptive clipping', () => {
  it('splits the noise: 1/z^2 = 1/z_value^2 + 1/(2 sigma_b)^2', () => {
    const z = 0.8;
    const zv = valueNoiseMultiplier(z, 0.5);
    expect(1 / zv ** 2 + 1 / 1 ** 2).toBeCloseTo(1 / z ** 2, 12);
    expect(zv).toBeGreaterThan(z);
    expect(() => valueNoiseMultiplier(1, 0.5)).toThrow(/z < 2 sigma_b/);
  });

  it('geometric step: all clipped -> C grows by exp(eta/2); none clipped -> shrinks by exp(-eta/2); on target -> unchanged', () => {
    expect(nextClipNorm(1, -5, 10, cfg).clip).toBeCloseTo(Math.exp(0.1), 12);
    expect(nextClipNorm(1, 5, 10, cfg).clip).toBeCloseTo(Math.exp(-0.1), 12);
    expect(nextClipNorm(1, 0, 10, cfg).clip).toBeCloseTo(1, 12);
    expect(nextClipNorm(1, 50, 10, cfg).fraction).toBe(1); // noise can push the count out of range: clamped
  });

  it('converges to the target quantile of a fixed norm distribution', () => {
    const norms = Array.from({ length: 100 }, (_, i) => (i + 1) / 100); // median 0.5
    let c = 0.05;
    for (let r = 0; r < 400; r++) {
      const sum = norms.reduce((s, x) => s + (x <= c ? 0.5 : -0.5), 0);
      c = nextClipNorm(c, sum, norms.length, cfg).clip;
    }
    expect(c).toBeGreaterThan(0.45);
    expect(c).toBeLessThan(0.56);
  });
});
