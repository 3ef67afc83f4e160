import { permutation, type Rng } from './rng.ts';

/**
 * Batch order for local training: example indices drawn in turn from a stream of seeded permutations of
 * 0..n-1. `next(size, true)` stops at a permutation's end (an epoch's last, shorter batch), so epochs are
 * whole passes; `next(size, false)` runs on into the next permutation (fixed local steps). Epochs and steps
 * thus read one stream: where the batch size divides n, a round of whole epochs and the same number of
 * steps draw the same batches.
 */
export interface BatchStream {
  next(size: number, epochEnd: boolean): Uint32Array;
}

export function batchStream(n: number, rng: Rng): BatchStream {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`batch stream over ${n} examples`);
  let perm: Uint32Array = new Uint32Array(0);
  let at = 0;
  return {
    next(size, epochEnd) {
      if (!(Number.isInteger(size) && size >= 1)) throw new Error(`batch of ${size} examples`);
      if (at === perm.length) [perm, at] = [permutation(n, rng), 0];
      // Within one permutation: a view, no copy (the common case: batches tile an epoch).
      if (epochEnd || at + size <= perm.length) {
        const out = perm.subarray(at, Math.min(perm.length, at + size));
        at += out.length;
        return out;
      }
      const out = new Uint32Array(size);
      for (let k = 0; k < size; k++) {
        if (at === perm.length) [perm, at] = [permutation(n, rng), 0];
        out[k] = perm[at++];
      }
      return out;
    },
  };
}
