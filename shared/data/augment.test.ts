import { describe, expect, it } from 'vitest';
import { AUGMENT_PAD, cropBoxes, cropImage, randomWindows } from './augment.ts';
import { createRng } from './rng.ts';

describe('augmentation windows', () => {
  it('offsets cover 0..2*pad uniformly and half the images are mirrored', () => {
    const ws = randomWindows(9000, AUGMENT_PAD, createRng(3));
    const counts = new Array(2 * AUGMENT_PAD + 1).fill(0);
    for (const w of ws) {
      counts[w.dy]++;
      expect(w.dx).toBeGreaterThanOrEqual(0);
      expect(w.dx).toBeLessThanOrEqual(2 * AUGMENT_PAD);
    }
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150); // ~4.7 sd of Binomial(9000, 1/9)
    const flips = ws.filter((w) => w.flip).length;
    expect(Math.abs(flips - 4500)).toBeLessThan(250);
  });

  it('boxes put the centred, unmirrored window exactly on the original pixels', () => {
    // Padded side 40, span 39: the centred window runs from pixel 4 to pixel 35.
    const b = cropBoxes(
      [
        { dy: 4, dx: 4, flip: false },
        { dy: 0, dx: 8, flip: true },
      ],
      32,
      4,
    );
    expect(Array.from(b)).toEqual(
      Array.from(new Float32Array([4 / 39, 4 / 39, 35 / 39, 35 / 39, 0, 39 / 39, 31 / 39, 8 / 39])),
    );
  });

  it('reference crop: centred = identity, mirrored twice = identity, a shift moves pixels and zero-fills', () => {
    const size = 4;
    const img = Float32Array.from({ length: size * size }, (_, i) => i + 1); // one channel
    expect(cropImage(img, size, 1, 2, { dy: 2, dx: 2, flip: false })).toEqual(img);
    const once = cropImage(img, size, 1, 2, { dy: 2, dx: 2, flip: true });
    expect(Array.from(once.subarray(0, 4))).toEqual([4, 3, 2, 1]);
    expect(cropImage(once, size, 1, 2, { dy: 2, dx: 2, flip: true })).toEqual(img);
    // Window one pixel down and right: output (0,0) is source (1,1); the last row and column are padding.
    const shifted = cropImage(img, size, 1, 2, { dy: 3, dx: 3, flip: false });
    expect(Array.from(shifted)).toEqual([6, 7, 8, 0, 10, 11, 12, 0, 14, 15, 16, 0, 0, 0, 0, 0]);
  });
});
