import { describe, expect, it } from 'vitest';
import { createRng } from '../data/rng.ts';
import { apportion, labelCounts, partition, sampleDirichlet, sampleGamma } from './partition.ts';

const labels = Uint8Array.from({ length: 5000 }, (_, i) => i % 10);
const everyExampleOnce = (parts: number[][]) => {
  const all = parts.flat().sort((a, b) => a - b);
  expect(all).toEqual(Array.from({ length: labels.length }, (_, i) => i));
};

describe('partitioning', () => {
  it('apportion sums exactly and follows the weights', () => {
    expect(apportion(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(apportion(100, [3, 1])).toEqual([75, 25]);
    expect(apportion(7, [0.5, 0.25, 0.25]).reduce((a, b) => a + b)).toBe(7);
  });

  it('gamma and Dirichlet samplers have the right means', () => {
    const rng = createRng(3);
    for (const shape of [0.3, 1, 4.5]) {
      let s = 0;
      for (let i = 0; i < 20000; i++) s += sampleGamma(shape, rng);
      expect(s / 20000).toBeCloseTo(shape, 1);
    }
    const p = sampleDirichlet(0.5, 10, rng);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  it('iid: equal sizes, every class near 10% for every client', () => {
    const parts = partition(labels, 10, { kind: 'iid' }, createRng(1));
    everyExampleOnce(parts);
    for (const p of parts) {
      expect(p.length).toBe(500);
      for (const c of labelCounts(labels, p)) expect(c).toBeGreaterThan(25);
    }
  });

  it('iid unbalanced: log-normal sizes (max / min > 2 at sigma 1)', () => {
    const parts = partition(labels, 20, { kind: 'iid', unbalancedSigma: 1 }, createRng(2));
    everyExampleOnce(parts);
    const sizes = parts.map((p) => p.length);
    expect(Math.max(...sizes) / Math.min(...sizes)).toBeGreaterThan(2);
  });

  it('dirichlet: small alpha concentrates each client on few classes; large alpha is near IID', () => {
    const skew = (alpha: number) => {
      const parts = partition(labels, 20, { kind: 'dirichlet', alpha }, createRng(4));
      everyExampleOnce(parts);
      // Mean over clients of the share of their most common class.
      const shares = parts
        .filter((p) => p.length > 0)
        .map((p) => Math.max(...labelCounts(labels, p)) / p.length);
      return shares.reduce((a, b) => a + b, 0) / shares.length;
    };
    expect(skew(0.1)).toBeGreaterThan(0.5);
    expect(skew(100)).toBeLessThan(0.2);
  });

  it('shards: with 2 shards per client, every client holds at most 2 (usually 2) classes', () => {
    const parts = partition(labels, 50, { kind: 'shards', shardsPerClient: 2 }, createRng(5));
    everyExampleOnce(parts);
    for (const p of parts) {
      expect(p.length).toBe(100);
      expect(labelCounts(labels, p).filter((c) => c > 0).length).toBeLessThanOrEqual(2);
    }
  });

  it('is reproducible from the seed', () => {
    const a = partition(labels, 7, { kind: 'dirichlet', alpha: 0.5 }, createRng(9));
    const b = partition(labels, 7, { kind: 'dirichlet', alpha: 0.5 }, createRng(9));
    expect(a).toEqual(b);
  });
});
