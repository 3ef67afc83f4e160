/** Images are 32x32x3, stored HWC as bytes (0..255), like the decoded CIFAR-10 records. */
export const IMAGE_SIZE = 32;
export const CHANNELS = 3;
export const PIXELS = IMAGE_SIZE * IMAGE_SIZE * CHANNELS; // 3072
export const NUM_CLASSES = 10;

export interface Dataset {
  /** n * 3072 bytes, HWC order. */
  readonly x: Uint8Array;
  /** n labels in 0..9. */
  readonly y: Uint8Array;
  readonly n: number;
}

/** Where a client's local examples come from. Implementations live at the edges (fetch, fs, generator). */
export interface DataProvider {
  /** Human-readable origin, e.g. "synthetic(seed=7, n=128)". */
  readonly description: string;
  load(): Promise<Dataset>;
}

/** What the server tells a client about its data; the client turns it into a DataProvider. */
export type DataSpec =
  | { kind: 'synthetic'; seed: number; count: number; classWeights?: number[] }
  | { kind: 'cifar10-shard'; url: string; count: number }
  /** The task's data is the visitor's own, supplied by the host page (join({ data })); the server has none. */
  | { kind: 'page' };

export function checkDataset(d: Dataset): Dataset {
  if (!Number.isInteger(d.n) || d.n < 0)
    throw new Error(`dataset size must be a non-negative integer, got ${d.n}`);
  if (d.x.length !== d.n * PIXELS)
    throw new Error(`dataset x has ${d.x.length} bytes, expected ${d.n * PIXELS}`);
  if (d.y.length !== d.n) throw new Error(`dataset y has ${d.y.length} labels, expected ${d.n}`);
  for (let i = 0; i < d.n; i++) {
    if (d.y[i] >= NUM_CLASSES) throw new Error(`label ${d.y[i]} at index ${i} is out of range 0..9`);
  }
  return d;
}

/** Take the examples at the given indices (copy). */
export function subset(d: Dataset, idx: ArrayLike<number>): Dataset {
  const n = idx.length;
  const x = new Uint8Array(n * PIXELS);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const j = idx[i];
    x.set(d.x.subarray(j * PIXELS, (j + 1) * PIXELS), i * PIXELS);
    y[i] = d.y[j];
  }
  return { x, y, n };
}

/** The first n examples (all of them when there are fewer), as a copy. */
export function head(d: Dataset, n: number): Dataset {
  return subset(
    d,
    Array.from({ length: Math.min(n, d.n) }, (_, i) => i),
  );
}

/** Scale bytes to floats in [0, 1]; the model's input convention. */
export function toFloat(x: Uint8Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] / 255;
  return out;
}
