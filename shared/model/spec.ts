import { CHANNELS, IMAGE_SIZE, NUM_CLASSES } from '../data/dataset.ts';

/**
 * A CIFAR-10 CNN described as data, so server, client and validators agree on shapes without tfjs:
 * [conv3x3(same) -> relu -> maxpool2] per entry of `conv`, then dense(relu), then dense(10, softmax).
 */
export interface ModelSpec {
  readonly name: string;
  readonly conv: readonly number[];
  readonly dense: number;
}

export const MODELS: Readonly<Record<string, ModelSpec>> = {
  /** ~49k parameters, no convolutions (3072 -> 16 -> 10): fast enough on a CPU for DP simulations with 1000 clients. */
  mlp: { name: 'mlp', conv: [], dense: 16 },
  /** ~35k parameters: tests, e2e and CPU-only demos. */
  tiny: { name: 'tiny', conv: [8, 16], dense: 32 },
  /** ~137k parameters: the default browser model. */
  small: { name: 'small', conv: [16, 32], dense: 64 },
  /** ~357k parameters: for visitors with real GPUs, and the long CPU run (bench:accuracy --long). */
  medium: { name: 'medium', conv: [32, 64, 128], dense: 128 },
};

export function modelByName(name: string): ModelSpec {
  const m = MODELS[name];
  if (!m) throw new Error(`unknown model "${name}"; choose one of ${Object.keys(MODELS).join(', ')}`);
  return m;
}

export interface WeightShape {
  readonly name: string;
  readonly shape: readonly number[];
  readonly size: number;
}

/** Weight tensors in the order tfjs' model.getWeights() returns them. */
export function weightShapes(spec: ModelSpec): WeightShape[] {
  const out: WeightShape[] = [];
  const add = (name: string, shape: number[]): void => {
    out.push({ name, shape, size: shape.reduce((a, b) => a * b, 1) });
  };
  let side = IMAGE_SIZE;
  let ch = CHANNELS;
  spec.conv.forEach((filters, i) => {
    add(`conv${i}/kernel`, [3, 3, ch, filters]);
    add(`conv${i}/bias`, [filters]);
    ch = filters;
    side = Math.floor(side / 2);
  });
  const flat = side * side * ch;
  add('dense0/kernel', [flat, spec.dense]);
  add('dense0/bias', [spec.dense]);
  add('logits/kernel', [spec.dense, NUM_CLASSES]);
  add('logits/bias', [NUM_CLASSES]);
  return out;
}

export function numParams(spec: ModelSpec): number {
  return weightShapes(spec).reduce((s, w) => s + w.size, 0);
}

export function isModelSpec(v: unknown): v is ModelSpec {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    typeof m.name === 'string' &&
    Array.isArray(m.conv) &&
    m.conv.length <= 5 &&
    m.conv.every((f) => Number.isInteger(f) && f >= 1 && f <= 512) &&
    Number.isInteger(m.dense) &&
    (m.dense as number) >= 1 &&
    (m.dense as number) <= 4096
  );
}
