import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { buildModel } from '../shared/model/build.ts';
import { MODELS } from '../shared/model/spec.ts';
import type { CheckedTask } from '../shared/model/task.ts';
import { writeFileAtomic } from './store.ts';

/**
 * The global model as TensorFlow.js Layers files: model.json (the Keras topology and a weights manifest)
 * and one float32 weights file, so `tf.loadLayersModel(url)` (browser, Node) or `tf.loadLayersModel('file://…')`
 * (tfjs-node) loads it as is. The same two files are served under /api/model/ and written by --save-model.
 */
export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

export interface LayersModelJson {
  format: 'layers-model';
  generatedBy: string;
  convertedBy: string;
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: 'float32' }[] }[];
  userDefinedMetadata: { task: string; hash: string; round: number };
}

const presets = new Map<string, object>();

/**
 * The Keras topology of a task's model (what model.save writes as modelTopology): a task that names its
 * topology carries it; a preset's is built once.
 */
export function modelTopology(c: CheckedTask): object {
  const m = c.task.model;
  if (!('preset' in m)) return m.topology as object;
  let t = presets.get(m.preset);
  if (!t) {
    const built = buildModel(MODELS[m.preset]);
    t = built.toJSON(null, false) as object;
    built.dispose();
    presets.set(m.preset, t);
  }
  return t;
}

/** model.json for the weights of `round` (the number of completed rounds they come from). */
export function layersModelJson(c: CheckedTask, round: number): LayersModelJson {
  return {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: 'aegisfl',
    modelTopology: modelTopology(c),
    // Names are the layers' weight names (conv0/kernel, …), which tfjs matches when it loads.
    weightsManifest: [
      {
        paths: [WEIGHTS_BIN],
        weights: c.shapes.map((w) => ({ name: w.name, shape: [...w.shape], dtype: 'float32' })),
      },
    ],
    userDefinedMetadata: { task: c.task.name, hash: c.hash, round },
  };
}

/** Checks a model.json against a weights file's size: what an export or a loader relies on. */
export function checkModelFiles(json: LayersModelJson, weightBytes: number): void {
  if (json?.format !== 'layers-model' || !Array.isArray(json.weightsManifest))
    throw new Error('not a TensorFlow.js layers-model model.json');
  let values = 0;
  for (const g of json.weightsManifest)
    for (const w of g.weights) {
      if (w.dtype !== 'float32') throw new Error(`weight ${w.name} is ${w.dtype}, expected float32`);
      values += w.shape.reduce((a, b) => a * b, 1);
    }
  if (values * 4 !== weightBytes)
    throw new Error(`the manifest lists ${values} float32 values but the weights are ${weightBytes} bytes`);
}

/**
 * Writes model.json and weights.bin into dir, each atomically; the weights first, so a model.json on disk
 * never names weights older than itself.
 */
export async function saveModelFiles(
  dir: string,
  c: CheckedTask,
  weights: Float32Array,
  round: number,
): Promise<void> {
  if (weights.length !== c.numParams)
    throw new Error(`weights have ${weights.length} values, task ${c.task.name} needs ${c.numParams}`);
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(
    join(dir, WEIGHTS_BIN),
    new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength),
  );
  await writeFileAtomic(
    join(dir, MODEL_JSON),
    new TextEncoder().encode(JSON.stringify(layersModelJson(c, round))),
  );
}

/** What --save-model watches: the coordinator's round ends and its current model. */
export interface SavedModelSource {
  on(event: 'roundEnd', fn: (summary: { round: number }) => void): unknown;
  readonly globalWeights: Float32Array;
  readonly task: CheckedTask;
  readonly roundsCompleted: number;
}

/**
 * --save-model: after each completed round the global model is written to dir (one write at a time, in
 * round order). A failed write is logged and training goes on. Returns a promise of the writes so far.
 */
export function saveModelEachRound(
  src: SavedModelSource,
  dir: string,
  log: (m: string) => void,
): () => Promise<void> {
  let last: Promise<void> = Promise.resolve();
  src.on('roundEnd', (s) => {
    const weights = src.globalWeights; // replaced, never mutated, when a round is released
    const round = src.roundsCompleted;
    last = last
      .then(() => saveModelFiles(dir, src.task, weights, round))
      .then(
        () => log(`round ${s.round}: model saved to ${join(dir, MODEL_JSON)}`),
        (e: Error) => log(`--save-model ${dir}: ${e.message}`),
      );
  });
  return () => last;
}
