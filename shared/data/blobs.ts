import { createRng } from './rng.ts';
import type { Example } from './examples.ts';

/**
 * Gaussian blobs: the second task's data (a small tabular classifier). Every class has a fixed centre in
 * `dims` dimensions (drawn once from CENTRE_SEED, so every visitor and the operator's held-out set share
 * them); an example is its class's centre plus N(0, spread^2) noise in every dimension. With the defaults
 * the classes overlap a little: an untrained model is near 1/classes, a trained one well above.
 */
export interface BlobsOptions {
  seed: number;
  count: number;
  dims?: number;
  classes?: number;
  spread?: number;
}

const CENTRE_SEED = 0xb10b5;

export function blobCentres(dims: number, classes: number): number[][] {
  const rng = createRng(CENTRE_SEED + dims * 1000 + classes);
  return Array.from({ length: classes }, () => Array.from({ length: dims }, () => 1.5 * rng.normal()));
}

/** `count` examples, labels uniform over the classes, rounded to 4 decimals (the fixtures stay short). */
export function blobs({ seed, count, dims = 8, classes = 4, spread = 1 }: BlobsOptions): Example[] {
  const centres = blobCentres(dims, classes);
  const rng = createRng(seed);
  return Array.from({ length: count }, () => {
    const y = rng.int(classes);
    return { x: centres[y].map((c) => Math.round((c + spread * rng.normal()) * 1e4) / 1e4), y };
  });
}
