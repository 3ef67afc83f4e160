import * as tf from '@tensorflow/tfjs';
import { isSoftmaxLayer } from './task.ts';

/**
 * Whether a model's last layer carries its softmax (isSoftmaxLayer, the rule checkTask applies to plans
 * with logitAdjust), so modelLogits can stop just before it.
 */
export function softmaxIsLast(model: tf.LayersModel): boolean {
  const last = model.layers.at(-1);
  return last !== undefined && isSoftmaxLayer(last.getClassName(), last.getConfig().activation);
}

/**
 * The logits z of a model whose output is softmax(z): every layer applied as model.apply does, the last
 * one without its softmax. Losses on z stay exact where the probabilities would underflow.
 */
export function modelLogits(model: tf.LayersModel, x: tf.Tensor, training: boolean): tf.Tensor2D {
  if (!softmaxIsLast(model))
    throw new Error(`model ${model.name}: its last layer must be a softmax Dense or Activation`);
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  let h = x;
  for (const l of layers.slice(0, -1)) h = l.apply(h, { training }) as tf.Tensor;
  const last = layers.at(-1)!;
  if (last.getClassName() === 'Activation') return h as tf.Tensor2D;
  if (h.rank !== 2)
    throw new Error(`model ${model.name}: its softmax Dense takes rank ${h.rank} inputs, not 2`);
  const [kernel, bias] = last.trainableWeights.map((w) => w.read());
  const z = tf.matMul(h as tf.Tensor2D, kernel as tf.Tensor2D);
  return (bias ? tf.add(z, bias) : z) as tf.Tensor2D;
}
