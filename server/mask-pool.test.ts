import { afterAll, describe, expect, it } from 'vitest';
import { addMasks, type MaskTerm } from '../shared/secagg/prg.ts';
import { MaskPool, MIN_SPLIT_WORDS } from './mask-pool.ts';

const seed = (k: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (i * 13 + k) & 0xff);
const terms: MaskTerm[] = [
  { seed: seed(1), domain: 'self', sign: -1 },
  { seed: seed(2), domain: 'pair', sign: 1 },
  { seed: seed(3), domain: 'pair', sign: -1 },
];
const pool = new MaskPool(3);
afterAll(() => pool.close());

describe('MaskPool (mask stripping split by word range over threads)', () => {
  it('gives the words one thread gives, for lengths that do not split evenly', async () => {
    await pool.strip(new Uint32Array(1000), terms);
    expect(pool.helpersStarted).toBe(0); // small vectors stay on the calling thread
    for (const n of [MIN_SPLIT_WORDS + 5, 3 * MIN_SPLIT_WORDS + 2]) {
      const init = Uint32Array.from({ length: n }, (_, i) => Math.imul(i, 2654435761) >>> 0);
      const one = init.slice();
      await addMasks(one, terms);
      const split = init.slice();
      await pool.strip(split, terms);
      expect(Buffer.from(split.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    }
    expect(pool.helpersStarted).toBe(2);
  });

  it('rejects when a term is bad, and leaves the sum unchanged when a helper dies midway', async () => {
    const v = new Uint32Array(2 * MIN_SPLIT_WORDS);
    const bad = [...terms, { seed: new Uint8Array(5), domain: 'pair', sign: 1 } as MaskTerm];
    await expect(pool.strip(v, bad)).rejects.toThrow(/32 bytes/);
    expect(() => new MaskPool(0)).toThrow(/thread count/);
    // A helper killed while its range is masked: the caller's own range finished, yet nothing is written.
    const dying = new MaskPool(2);
    await dying.warm();
    const sum = Uint32Array.from({ length: 8 * MIN_SPLIT_WORDS }, (_, i) => i);
    const before = sum.slice();
    const many = Array.from({ length: 40 }, (_, k) => ({ ...terms[k % 3], seed: seed(10 + k) }));
    const strip = dying.strip(sum, many);
    await dying.close();
    await expect(strip).rejects.toThrow(/exited|closed|terminated/);
    expect(Buffer.from(sum.buffer).equals(Buffer.from(before.buffer))).toBe(true);
  });
});
