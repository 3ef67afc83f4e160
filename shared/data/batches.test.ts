import { describe, expect, it } from 'vitest';
import { batchStream } from './batches.ts';
import { createRng, permutation } from './rng.ts';

const concat = (xs: Uint32Array[]): number[] => xs.flatMap((x) => [...x]);

describe('batchStream', () => {
  it('epochs: each epoch is one fresh permutation cut into batches, the last one shorter', () => {
    const s = batchStream(10, createRng(7));
    const ref = createRng(7);
    for (let epoch = 0; epoch < 3; epoch++) {
      const want = permutation(10, ref);
      const got = [s.next(4, true), s.next(4, true), s.next(4, true)];
      expect(got.map((b) => b.length)).toEqual([4, 4, 2]);
      expect(concat(got)).toEqual([...want]);
    }
  });

  it('steps: batches run across permutations, and the stream is the permutations end to end', () => {
    const s = batchStream(10, createRng(7));
    const ref = createRng(7);
    const want = [...permutation(10, ref), ...permutation(10, ref), ...permutation(10, ref)];
    const got = Array.from({ length: 7 }, () => s.next(4, false));
    expect(got.every((b) => b.length === 4)).toBe(true);
    expect(concat(got)).toEqual(want.slice(0, 28));
    // Each full permutation holds every index once.
    expect([...want.slice(10, 20)].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
  });

  it('steps that tile the data draw the same batches as epochs', () => {
    const a = batchStream(12, createRng(3));
    const b = batchStream(12, createRng(3));
    for (let i = 0; i < 9; i++) expect([...a.next(4, false)]).toEqual([...b.next(4, true)]);
  });

  it('a batch larger than the data spans several permutations', () => {
    const s = batchStream(3, createRng(1));
    const ref = createRng(1);
    const want = [...permutation(3, ref), ...permutation(3, ref), ...permutation(3, ref)];
    expect([...s.next(7, false)]).toEqual(want.slice(0, 7));
    expect([...s.next(2, true)]).toEqual(want.slice(7, 9)); // the rest of the third permutation
  });

  it('refuses empty data and empty batches', () => {
    expect(() => batchStream(0, createRng(1))).toThrow(/0 examples/);
    expect(() => batchStream(3, createRng(1)).next(0, true)).toThrow(/batch of 0/);
  });
});
