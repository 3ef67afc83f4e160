import { describe, expect, it } from 'vitest';
import { checkDataset, head, subset, toFloat } from './dataset.ts';
import { syntheticDataset } from './synthetic.ts';

describe('dataset helpers', () => {
  it('checkDataset catches inconsistent sizes and labels', () => {
    expect(() => checkDataset({ x: new Uint8Array(3072), y: new Uint8Array(2), n: 2 })).toThrow(
      /expected 6144/,
    );
    expect(() => checkDataset({ x: new Uint8Array(3072), y: new Uint8Array([10]), n: 1 })).toThrow(
      /out of range/,
    );
    const ok = syntheticDataset({ seed: 1, count: 2 });
    expect(checkDataset(ok)).toBe(ok);
  });

  it('subset copies the chosen examples', () => {
    const d = syntheticDataset({ seed: 1, count: 5 });
    const s = subset(d, [4, 0]);
    expect([...s.y]).toEqual([d.y[4], d.y[0]]);
    expect(s.x.subarray(0, 3072)).toEqual(d.x.subarray(4 * 3072, 5 * 3072));
  });

  it('head copies the first n examples, or all when there are fewer', () => {
    const d = syntheticDataset({ seed: 1, count: 5 });
    const h = head(d, 2);
    expect(h.n).toBe(2);
    expect([...h.y]).toEqual([d.y[0], d.y[1]]);
    expect(h.x).toEqual(d.x.subarray(0, 2 * 3072));
    expect(head(d, 9).n).toBe(5);
  });

  it('toFloat maps bytes to [0,1]', () => {
    expect(toFloat(new Uint8Array([0, 51, 255]))).toEqual(new Float32Array([0, 0.2, 1]));
  });
});
