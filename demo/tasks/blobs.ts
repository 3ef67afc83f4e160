/**
 * The second task, beside CIFAR-10: an 8-feature tabular classifier of 4 classes (Gaussian blobs, see
 * shared/data/blobs.ts). `npx tsx demo/tasks/write-blobs.ts` writes its task file and the operator's
 * held-out set from here; demo/tasks/blobs.test.ts checks the committed files are what this gives.
 */
import * as tf from '@tensorflow/tfjs';
import { blobs } from '../../shared/data/blobs.ts';
import type { LayersTopology, Task } from '../../shared/model/task.ts';

export const BLOBS_DIMS = 8;
export const BLOBS_CLASSES = 4;
/** The operator's held-out set: a seed no visitor's page uses. */
export const BLOBS_EVAL = { seed: 9001, count: 300 } as const;

/** 8 -> 16 (relu) -> 4 (softmax): 212 parameters. */
export function blobsModel(): tf.Sequential {
  const m = tf.sequential({ name: 'blobs' });
  m.add(tf.layers.dense({ name: 'hidden', inputShape: [BLOBS_DIMS], units: 16, activation: 'relu' }));
  m.add(tf.layers.dense({ name: 'logits', units: BLOBS_CLASSES, activation: 'softmax' }));
  return m;
}

export function blobsTask(): Task {
  const m = blobsModel();
  const topology = m.toJSON(null, false) as unknown as LayersTopology;
  m.dispose();
  return {
    name: 'blobs',
    model: { topology },
    inputShape: [BLOBS_DIMS],
    numClasses: BLOBS_CLASSES,
    plan: { epochs: 5, batchSize: 16, learningRate: 0.02, optimizer: 'adam' },
  };
}

/** The --task-eval file's content: { x: rows of features, y: labels }. */
export function blobsEval(): { x: number[][]; y: number[] } {
  const list = blobs({ ...BLOBS_EVAL, dims: BLOBS_DIMS, classes: BLOBS_CLASSES });
  return { x: list.map((e) => Array.from(e.x)), y: list.map((e) => e.y) };
}
