import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import './wasm-backend.ts';
import { AUGMENT_PAD, cropImage, randomWindows } from '../shared/data/augment.ts';
import { createRng } from '../shared/data/rng.ts';
import { augmentBatch } from './augment.ts';

describe('augmentBatch', () => {
  it.each(['cpu', 'wasm'])('on %s equals the reference crop + mirror of every image', async (backend) => {
    await tf.setBackend(backend);
    const n = 12;
    const rng = createRng(4);
    const data = Float32Array.from({ length: n * 32 * 32 * 3 }, () => rng.next());
    const windows = randomWindows(n, AUGMENT_PAD, rng);
    const x = tf.tensor4d(data, [n, 32, 32, 3]);
    const before = tf.memory().numTensors;
    const y = augmentBatch(x, windows, AUGMENT_PAD);
    expect(tf.memory().numTensors).toBe(before + 1);
    const got = (await y.data()) as Float32Array;
    let err = 0;
    const px = 32 * 32 * 3;
    for (let i = 0; i < n; i++) {
      const ref = cropImage(data.subarray(i * px, (i + 1) * px), 32, 3, AUGMENT_PAD, windows[i]);
      for (let j = 0; j < px; j++) err = Math.max(err, Math.abs(got[i * px + j] - ref[j]));
    }
    expect(err).toBeLessThan(1e-5); // bilinear weights at exact pixel centres: a pure copy
    expect(windows.some((w) => w.flip) && windows.some((w) => w.dy !== AUGMENT_PAD)).toBe(true);
    tf.dispose([x, y]);
  });

  it('rejects a window count that does not match the batch', () => {
    const x = tf.zeros([2, 32, 32, 3]) as tf.Tensor4D;
    expect(() => augmentBatch(x, randomWindows(1, 4, createRng(1)), 4)).toThrow(/1 windows for 2 images/);
    x.dispose();
  });
});
