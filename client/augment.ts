import * as tf from '@tensorflow/tfjs';
import { cropBoxes, type CropWindow } from '../shared/data/augment.ts';

/**
 * Random crop + mirror of a batch on the backend: zero-pad, then one cropAndResize whose boxes (see
 * shared/data/augment.ts) are exact pixel shifts, mirrored where x1 > x2. One kernel per batch, so it costs
 * little next to a training step on any backend.
 */
export function augmentBatch(x: tf.Tensor4D, windows: readonly CropWindow[], pad: number): tf.Tensor4D {
  const [n, h, w] = x.shape;
  if (h !== w) throw new Error(`augmentBatch expects square images, got ${h}x${w}`);
  if (windows.length !== n) throw new Error(`augmentBatch: ${windows.length} windows for ${n} images`);
  return tf.tidy(() => {
    const padded = tf.pad(x, [
      [0, 0],
      [pad, pad],
      [pad, pad],
      [0, 0],
    ]);
    const boxes = tf.tensor2d(cropBoxes(windows, h, pad), [n, 4]);
    return tf.image.cropAndResize(
      padded,
      boxes,
      tf.range(0, n, 1, 'int32') as tf.Tensor1D,
      [h, w],
      'bilinear',
    );
  });
}
