import { createRng } from './rng.ts';
import { IMAGE_SIZE, PIXELS, type Dataset } from './dataset.ts';

/**
 * A deterministic 10-class 32x32x3 image dataset that a small CNN can learn but not memorise at a glance.
 * Class c = texture (c % 5: horizontal, vertical, diagonal, checker, rings) x palette (c < 5 warm, else cool).
 * Each example draws its own phase, frequency jitter, contrast, colour jitter and pixel noise, so the
 * classes overlap a little and accuracy climbs over rounds instead of jumping to 100%.
 */
const PALETTES: readonly (readonly [number, number, number])[][] = [
  [
    [0.95, 0.45, 0.2],
    [0.85, 0.2, 0.25],
  ], // warm: orange, red
  [
    [0.2, 0.5, 0.95],
    [0.2, 0.8, 0.6],
  ], // cool: blue, teal
];

function texture(kind: number, u: number, v: number, freq: number, phase: number): number {
  switch (kind) {
    case 0:
      return Math.sin(freq * v + phase);
    case 1:
      return Math.sin(freq * u + phase);
    case 2:
      return Math.sin(freq * 0.7071 * (u + v) + phase);
    case 3:
      return Math.sin(freq * u + phase) * Math.sin(freq * v + phase * 0.5);
    default: {
      const du = u - 16,
        dv = v - 16;
      return Math.sin(freq * Math.sqrt(du * du + dv * dv) + phase);
    }
  }
}

export interface SyntheticOptions {
  seed: number;
  count: number;
  /** Std of per-pixel Gaussian noise in [0,1] units. Default 0.18. */
  noise?: number;
  /** Label distribution (10 non-negative weights, for non-IID clients); uniform when absent. */
  classWeights?: readonly number[];
}

function labelSampler(
  rng: { next(): number; int(n: number): number },
  weights?: readonly number[],
): () => number {
  if (!weights) return () => rng.int(10);
  if (weights.length !== 10 || weights.some((w) => !(w >= 0)))
    throw new Error('classWeights must be 10 non-negative numbers');
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0)) throw new Error('classWeights must not all be zero');
  const cdf = weights.map(
    (
      (acc) => (w: number) =>
        (acc += w / total)
    )(0),
  );
  return () => {
    const u = rng.next();
    const i = cdf.findIndex((c) => u < c);
    return i < 0 ? 9 : i;
  };
}

export function syntheticDataset({ seed, count, noise = 0.18, classWeights }: SyntheticOptions): Dataset {
  if (!Number.isInteger(count) || count < 0)
    throw new Error(`synthetic count must be a non-negative integer, got ${count}`);
  const rng = createRng(seed);
  const nextLabel = labelSampler(rng, classWeights);
  const x = new Uint8Array(count * PIXELS);
  const y = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const label = nextLabel();
    y[i] = label;
    const kind = label % 5;
    const pal = PALETTES[label < 5 ? 0 : 1][rng.int(2)];
    const freq = 0.55 + 0.25 * rng.next();
    const phase = 2 * Math.PI * rng.next();
    const contrast = 0.25 + 0.2 * rng.next();
    const base = 0.35 + 0.2 * rng.next();
    const jitter = [rng.normal() * 0.08, rng.normal() * 0.08, rng.normal() * 0.08];
    const off = i * PIXELS;
    for (let v = 0; v < IMAGE_SIZE; v++) {
      for (let u = 0; u < IMAGE_SIZE; u++) {
        const t = texture(kind, u, v, freq, phase);
        const p = off + (v * IMAGE_SIZE + u) * 3;
        for (let ch = 0; ch < 3; ch++) {
          const val = base * (pal[ch] + jitter[ch]) + contrast * t * pal[ch] + noise * rng.normal();
          x[p + ch] = Math.max(0, Math.min(255, Math.round(val * 255)));
        }
      }
    }
  }
  return { x, y, n: count };
}
