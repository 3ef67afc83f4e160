import type { Rng } from './rng.ts';

/** The standard CIFAR-10 recipe: zero-pad 4 pixels per side, take a random 32x32 window, mirror half the images. */
export const AUGMENT_PAD = 4;

export interface CropWindow {
  /** Top-left corner of the window inside the padded image, each in [0, 2 * pad]. */
  readonly dy: number;
  readonly dx: number;
  readonly flip: boolean;
}

/** One random crop window (and mirror coin) per image. */
export function randomWindows(n: number, pad: number, rng: Rng): CropWindow[] {
  return Array.from({ length: n }, () => ({
    dy: rng.int(2 * pad + 1),
    dx: rng.int(2 * pad + 1),
    flip: rng.next() < 0.5,
  }));
}

/**
 * The windows as normalized [y1, x1, y2, x2] boxes for tf.image.cropAndResize over images of side
 * `size + 2 * pad`, cropped back to `size`: corners sit on pixel centres, so bilinear sampling lands exactly
 * on source pixels (a pure shift, no blur), and a mirrored window has x1 > x2, which cropAndResize reads
 * right to left.
 */
export function cropBoxes(windows: readonly CropWindow[], size: number, pad: number): Float32Array {
  const span = size + 2 * pad - 1;
  const out = new Float32Array(windows.length * 4);
  windows.forEach((w, i) => {
    const left = w.dx / span;
    const right = (w.dx + size - 1) / span;
    out.set([w.dy / span, w.flip ? right : left, (w.dy + size - 1) / span, w.flip ? left : right], i * 4);
  });
  return out;
}

/**
 * Reference: the same augmentation on one HWC image in plain loops (what the tfjs path must reproduce).
 */
export function cropImage(
  img: Float32Array,
  size: number,
  channels: number,
  pad: number,
  w: CropWindow,
): Float32Array {
  const out = new Float32Array(size * size * channels);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const sy = y + w.dy - pad;
      const sx = (w.flip ? size - 1 - x : x) + w.dx - pad;
      if (sy < 0 || sy >= size || sx < 0 || sx >= size) continue; // zero padding
      for (let c = 0; c < channels; c++)
        out[(y * size + x) * channels + c] = img[(sy * size + sx) * channels + c];
    }
  }
  return out;
}
