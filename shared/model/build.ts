import * as tf from '@tensorflow/tfjs';
import { CHANNELS, IMAGE_SIZE, NUM_CLASSES } from '../data/dataset.ts';
import type { ModelSpec } from './spec.ts';

/** Builds the tfjs model for a spec. `seed` makes the initial weights reproducible. */
export function buildModel(spec: ModelSpec, seed = 1): tf.Sequential {
  const model = tf.sequential({ name: `aegis_${spec.name}` });
  let s = seed;
  const init = () => tf.initializers.glorotUniform({ seed: s++ });
  spec.conv.forEach((filters, i) => {
    model.add(
      tf.layers.conv2d({
        name: `conv${i}`,
        ...(i === 0 ? { inputShape: [IMAGE_SIZE, IMAGE_SIZE, CHANNELS] } : {}),
        filters,
        kernelSize: 3,
        padding: 'same',
        activation: 'relu',
        kernelInitializer: init(),
      }),
    );
    model.add(tf.layers.maxPooling2d({ name: `pool${i}`, poolSize: 2, strides: 2 }));
  });
  model.add(
    tf.layers.flatten({
      name: 'flatten',
      ...(spec.conv.length === 0 ? { inputShape: [IMAGE_SIZE, IMAGE_SIZE, CHANNELS] } : {}),
    }),
  );
  model.add(
    tf.layers.dense({ name: 'dense0', units: spec.dense, activation: 'relu', kernelInitializer: init() }),
  );
  model.add(
    tf.layers.dense({ name: 'logits', units: NUM_CLASSES, activation: 'softmax', kernelInitializer: init() }),
  );
  return model;
}
