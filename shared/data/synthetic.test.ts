import { describe, expect, it } from 'vitest';
import { NUM_CLASSES, PIXELS } from './dataset.ts';
import { syntheticDataset } from './synthetic.ts';

/** Mean feature per class, then nearest-centroid accuracy on fresh data: proves classes are separable but noisy. */
function nearestCentroidAccuracy(trainSeed: number, testSeed: number): number {
  const feat = (x: Uint8Array, i: number): number[] => {
    // Cheap texture features: mean colour + mean absolute horizontal and vertical gradients.
    let r = 0,
      g = 0,
      b = 0,
      dh = 0,
      dv = 0;
    const o = i * PIXELS;
    for (let v = 0; v < 32; v++) {
      for (let u = 0; u < 32; u++) {
        const p = o + (v * 32 + u) * 3;
        r += x[p];
        g += x[p + 1];
        b += x[p + 2];
        if (u < 31) dh += Math.abs(x[p] - x[p + 3]);
        if (v < 31) dv += Math.abs(x[p] - x[p + 96]);
      }
    }
    return [r, g, b, dh, dv].map((f) => f / 1024);
  };
  const train = syntheticDataset({ seed: trainSeed, count: 2000 });
  const cent = Array.from({ length: NUM_CLASSES }, () => [0, 0, 0, 0, 0]);
  const cnt = new Array(NUM_CLASSES).fill(0);
  for (let i = 0; i < train.n; i++) {
    const f = feat(train.x, i);
    f.forEach((v, k) => (cent[train.y[i]][k] += v));
    cnt[train.y[i]]++;
  }
  cent.forEach((c, k) => c.forEach((_, j) => (c[j] /= cnt[k])));
  const test = syntheticDataset({ seed: testSeed, count: 1000 });
  let ok = 0;
  for (let i = 0; i < test.n; i++) {
    const f = feat(test.x, i);
    let best = 0,
      bestD = Infinity;
    cent.forEach((c, k) => {
      const d = c.reduce((s, v, j) => s + (v - f[j]) ** 2, 0);
      if (d < bestD) ((bestD = d), (best = k));
    });
    if (best === test.y[i]) ok++;
  }
  return ok / test.n;
}

describe('syntheticDataset', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = syntheticDataset({ seed: 9, count: 8 });
    expect(syntheticDataset({ seed: 9, count: 8 })).toEqual(a);
    expect(syntheticDataset({ seed: 10, count: 8 }).x).not.toEqual(a.x);
  });

  it('has the CIFAR-10 shape and roughly balanced labels', () => {
    const d = syntheticDataset({ seed: 1, count: 5000 });
    expect(d.x.length).toBe(5000 * PIXELS);
    const counts = new Array(10).fill(0);
    d.y.forEach((l) => counts[l]++);
    for (const c of counts) expect(c).toBeGreaterThan(400);
  });

  it('is learnable from generic features but far from trivial', () => {
    const acc = nearestCentroidAccuracy(1, 2);
    expect(acc).toBeGreaterThan(0.3); // signal: 3x chance from 5 crude features
    expect(acc).toBeLessThan(0.95); // noise: not solved by colour alone
  });

  it('rejects a bad count', () => {
    expect(() => syntheticDataset({ seed: 1, count: -1 })).toThrow(/non-negative integer/);
  });
});
