import * as tf from '@tensorflow/tfjs';
import { weightShapes, type ModelSpec, type WeightShape } from './spec.ts';

/**
 * All trainable weights as one Float32Array, in getWeights() order. Reads are async: WebGPU's synchronous
 * readback goes through a canvas and fails inside workers, returning zeros after a lost device.
 */
export async function getFlatWeights(model: tf.LayersModel): Promise<Float32Array> {
  const ws = model.getWeights();
  const parts = await Promise.all(ws.map((w) => w.data() as Promise<Float32Array>));
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Loads a flat vector into the model (a preset's spec, or a task's weight shapes); throws on a wrong length. */
export function setFlatWeights(
  model: tf.LayersModel,
  spec: ModelSpec | readonly WeightShape[],
  flat: Float32Array,
): void {
  const shapes = Array.isArray(spec) ? (spec as readonly WeightShape[]) : weightShapes(spec as ModelSpec);
  const name = Array.isArray(spec) ? model.name : (spec as ModelSpec).name;
  const total = shapes.reduce((s, w) => s + w.size, 0);
  if (flat.length !== total)
    throw new Error(`weight vector has ${flat.length} values, model "${name}" needs ${total}`);
  let o = 0;
  const tensors = shapes.map((w) => {
    const t = tf.tensor(flat.subarray(o, o + w.size), w.shape as number[], 'float32');
    o += w.size;
    return t;
  });
  model.setWeights(tensors);
  tf.dispose(tensors);
}
