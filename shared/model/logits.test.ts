import { beforeEach, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { buildModel } from './build.ts';
import { MODELS } from './spec.ts';
import { modelLogits, softmaxIsLast } from './logits.ts';

const maxDiff = (a: tf.Tensor, b: tf.Tensor): number =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

describe('modelLogits', () => {
  beforeEach(async () => {
    await tf.setBackend('cpu');
  });

  it('softmax of the logits is what model.apply outputs, for every preset', () => {
    for (const spec of Object.values(MODELS)) {
      const model = buildModel(spec, 3);
      const x = tf.randomUniform([4, 32, 32, 3], 0, 1, 'float32', 9);
      const z = modelLogits(model, x, true);
      expect(z.shape).toEqual([4, 10]);
      expect(maxDiff(tf.softmax(z), model.apply(x, { training: true }) as tf.Tensor)).toBeLessThan(1e-6);
      tf.dispose([x, z]);
      model.dispose();
    }
  });

  it('a topology ending in Activation(softmax), with and without a bias on its Dense', () => {
    for (const useBias of [true, false]) {
      const m = tf.sequential();
      m.add(tf.layers.dense({ inputShape: [6], units: 5, activation: 'relu' }));
      m.add(tf.layers.dense({ units: 3, useBias }));
      m.add(tf.layers.activation({ activation: 'softmax' }));
      const x = tf.randomNormal([7, 6], 0, 1, 'float32', 4);
      expect(maxDiff(tf.softmax(modelLogits(m, x, false)), m.predict(x) as tf.Tensor)).toBeLessThan(1e-6);
      const d = tf.sequential();
      d.add(tf.layers.dense({ inputShape: [6], units: 3, activation: 'softmax', useBias }));
      expect(maxDiff(tf.softmax(modelLogits(d, x, false)), d.predict(x) as tf.Tensor)).toBeLessThan(1e-6);
      m.dispose();
      d.dispose();
      x.dispose();
    }
  });

  it('refuses a model whose softmax is not its last layer', () => {
    const m = tf.sequential();
    m.add(tf.layers.dense({ inputShape: [6], units: 3, activation: 'softmax' }));
    m.add(tf.layers.dropout({ rate: 0.1 }));
    expect(softmaxIsLast(m)).toBe(false);
    expect(() => modelLogits(m, tf.zeros([1, 6]), true)).toThrow(/last layer must be a softmax/);
    m.dispose();
  });
});
