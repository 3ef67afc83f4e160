import { PIXELS, type Dataset } from './dataset.ts';

/**
 * CIFAR-10 binary format: each record is 1 label byte then 3072 pixel bytes, channel-major
 * (1024 red, 1024 green, 1024 blue, each row-major 32x32). We convert to HWC to match the model input.
 */
export const CIFAR_RECORD_BYTES = 1 + PIXELS; // 3073
export const CIFAR_TRAIN_FILES = [
  'data_batch_1.bin',
  'data_batch_2.bin',
  'data_batch_3.bin',
  'data_batch_4.bin',
  'data_batch_5.bin',
] as const;
export const CIFAR_TEST_FILE = 'test_batch.bin';
/** The class of each label, as batches.meta.txt names them. */
export const CIFAR10_CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
] as const;

export function parseCifar10(buf: Uint8Array, limit = Infinity): Dataset {
  if (buf.length % CIFAR_RECORD_BYTES !== 0) {
    throw new Error(
      `CIFAR-10 binary has ${buf.length} bytes, not a multiple of the ${CIFAR_RECORD_BYTES}-byte record`,
    );
  }
  const n = Math.min(buf.length / CIFAR_RECORD_BYTES, limit);
  const x = new Uint8Array(n * PIXELS);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = i * CIFAR_RECORD_BYTES;
    const label = buf[r];
    if (label > 9) throw new Error(`CIFAR-10 record ${i} has label ${label}, expected 0..9`);
    y[i] = label;
    const o = i * PIXELS;
    for (let p = 0; p < 1024; p++) {
      x[o + p * 3] = buf[r + 1 + p];
      x[o + p * 3 + 1] = buf[r + 1 + 1024 + p];
      x[o + p * 3 + 2] = buf[r + 1 + 2048 + p];
    }
  }
  return { x, y, n };
}

/** Inverse of parseCifar10: HWC dataset -> CIFAR-10 binary records (used to serve shards and make test files). */
export function encodeCifar10(d: Dataset): Uint8Array {
  const out = new Uint8Array(d.n * CIFAR_RECORD_BYTES);
  for (let i = 0; i < d.n; i++) {
    const r = i * CIFAR_RECORD_BYTES;
    out[r] = d.y[i];
    const o = i * PIXELS;
    for (let p = 0; p < 1024; p++) {
      out[r + 1 + p] = d.x[o + p * 3];
      out[r + 1 + 1024 + p] = d.x[o + p * 3 + 1];
      out[r + 1 + 2048 + p] = d.x[o + p * 3 + 2];
    }
  }
  return out;
}

export function concatDatasets(parts: readonly Dataset[]): Dataset {
  const n = parts.reduce((s, d) => s + d.n, 0);
  const x = new Uint8Array(n * PIXELS);
  const y = new Uint8Array(n);
  let k = 0;
  for (const d of parts) {
    x.set(d.x, k * PIXELS);
    y.set(d.y, k);
    k += d.n;
  }
  return { x, y, n };
}
