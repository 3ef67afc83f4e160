import * as tf from '@tensorflow/tfjs';
import { PIXELS, type Dataset } from '../shared/data/dataset.ts';
import { examplesFromDataset, type Examples } from '../shared/data/examples.ts';
import { classResults, type ClassResults } from '../shared/eval/per-class.ts';
import type { ModelSpec } from '../shared/model/spec.ts';
import { asRuntime, type ModelRuntime } from '../shared/model/task-build.ts';
import { setFlatWeights } from '../shared/model/weights.ts';
import { silenceTfjsNodeBanner } from '../shared/model/tfjs-banner.ts';

// Node: our start-up says which backend evaluates; tfjs' cpu banner would repeat per process.
silenceTfjsNodeBanner();

export type EvalBackend = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';

/**
 * Picks the fastest tfjs backend installed in Node: the native bindings are optional dependencies (their
 * install downloads libtensorflow, impossible offline), so each is tried by dynamic import and the WASM
 * backend, which ships inside its npm package, is the fallback. Names are variables so bundlers and tsc
 * do not insist on the optional packages.
 */
export async function initEvalBackend(
  order: readonly EvalBackend[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'],
): Promise<{ backend: EvalBackend; tried: string[] }> {
  const tried: string[] = [];
  for (const b of order) {
    try {
      if (b === 'tfjs-node-gpu' || b === 'tfjs-node') {
        const pkg = `@tensorflow/${b}`;
        await import(/* @vite-ignore */ pkg);
        if (!(await tf.setBackend('tensorflow'))) throw new Error('backend "tensorflow" did not initialise');
      } else {
        if (b === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
        if (!(await tf.setBackend(b))) throw new Error(`backend "${b}" did not initialise`);
      }
      await tf.ready();
      return { backend: b, tried };
    } catch (e) {
      tried.push(`${b}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`no evaluation backend available: ${tried.join('; ')}`);
}

/**
 * The note after the backend's name at start-up. The native bindings are optional, so their absence is
 * information, not an error; any other failure (a binding that is installed but broken) is shown as it is.
 */
export function evalBackendNote(tried: readonly string[]): string {
  const absent = (t: string): boolean => /^tfjs-node(-gpu)?: Cannot find (package|module)/.test(t);
  const notInstalled = tried.filter(absent).map((t) => `@tensorflow/${t.slice(0, t.indexOf(':'))}`);
  const failed = tried.filter((t) => !absent(t));
  const parts = [];
  if (notInstalled.length) parts.push(`optional ${notInstalled.join(', ')} not installed`);
  if (failed.length) parts.push(`unavailable: ${failed.join('; ')}`);
  return parts.join('; ');
}

/** Longest a slice of evaluation should hold the event loop (aegis_event_loop_delay_seconds). */
const SLICE_MS = 50;
const MIN_SLICE_BATCH = 16;

export interface EvalResult {
  accuracy: number;
  loss: number;
  examples: number;
  ms: number;
  /** Per-class accuracy and the confusion matrix (absent from evaluators that do not compute them). */
  classes?: ClassResults;
  /** Predicted classes of the first SAMPLE_COUNT test examples (the page's prediction strip). */
  samplePreds?: number[];
  /** Their true classes. */
  sampleLabels?: number[];
}

/** Test examples whose images and predictions the demo shows. */
export const SAMPLE_COUNT = 8;

/**
 * The first SAMPLE_COUNT test images (HWC bytes) and their labels: fixed for the run. A task's Examples
 * (--task-eval) are not images: none.
 */
export function testSamples(
  test: Dataset | Examples,
  count = SAMPLE_COUNT,
): { images: Uint8Array; labels: number[] } {
  if (test.x instanceof Float32Array) return { images: new Uint8Array(0), labels: [] };
  const n = Math.min(count, test.n);
  return { images: test.x.slice(0, n * PIXELS), labels: Array.from(test.y.subarray(0, n)) };
}

/**
 * Evaluates global weights on a fixed held-out set; the test tensors are built once. The model is a CIFAR
 * preset (built here) or a task's built runtime (owned from now on); the set CIFAR-style images or Examples.
 */
export class Evaluator {
  private readonly runtime: ModelRuntime;
  private readonly model: tf.LayersModel;
  /**
   * The test inputs stay in JS memory; each slice is uploaded as its own tensor. Slicing one big tensor of
   * the whole set cost time in proportion to the set on wasm per slice (10,000 CIFAR images: 54 s in the
   * small slices the event loop needs, against 2.5 s from host memory).
   */
  private readonly x: Float32Array;
  private readonly inputShape: number[];
  private readonly perExample: number;
  private readonly labels: Int32Array;
  /** The batch size the slicing settled on (starts small: the first evaluation has no measure yet). */
  private sliceBatch = MIN_SLICE_BATCH * 2;

  constructor(
    spec: ModelSpec | ModelRuntime,
    test: Dataset | Examples,
    private readonly batchSize = 256,
  ) {
    if (test.n < 1) throw new Error('test set is empty');
    const ex = test.x instanceof Float32Array ? (test as Examples) : examplesFromDataset(test as Dataset);
    this.runtime = asRuntime(spec);
    this.model = this.runtime.model;
    this.inputShape = [...this.runtime.inputShape];
    this.perExample = this.inputShape.reduce((a, b) => a * b, 1);
    this.x = ex.x;
    this.labels = ex.y;
  }

  /**
   * Runs in slices on the main thread: one batch at a time, the event loop served between batches, and the
   * batch halved while one takes longer than SLICE_MS (doubled again, up to batchSize, while it is quick), so
   * no slice holds the loop much beyond SLICE_MS whatever the model and backend.
   */
  async evaluate(weights: Float32Array): Promise<EvalResult> {
    const t0 = performance.now();
    const K = this.runtime.numClasses;
    setFlatWeights(this.model, this.runtime.shapes, weights);
    const n = this.labels.length;
    const preds = new Int32Array(n);
    let correct = 0;
    let lossSum = 0;
    let batch = Math.min(this.batchSize, this.sliceBatch);
    for (let s = 0; s < n;) {
      const e = Math.min(n, s + batch);
      const b0 = performance.now();
      // One forward pass per slice: predict()'s default batch of 32 would cut it up again and concat.
      const probs = tf.tidy(
        () =>
          this.model.predict(
            tf.tensor(this.x.subarray(s * this.perExample, e * this.perExample), [e - s, ...this.inputShape]),
            { batchSize: e - s },
          ) as tf.Tensor2D,
      );
      const p = (await probs.data()) as Float32Array;
      probs.dispose();
      for (let i = 0; i < e - s; i++) {
        const row = p.subarray(i * K, (i + 1) * K);
        let arg = 0;
        for (let k = 1; k < K; k++) if (row[k] > row[arg]) arg = k;
        const label = this.labels[s + i];
        preds[s + i] = arg;
        if (arg === label) correct++;
        lossSum += -Math.log(Math.max(row[label], 1e-7));
      }
      const took = performance.now() - b0;
      if (took > SLICE_MS && batch > MIN_SLICE_BATCH) batch = Math.max(MIN_SLICE_BATCH, batch >> 1);
      else if (took < SLICE_MS / 2 && e - s === batch) batch = Math.min(this.batchSize, batch * 2);
      s = e;
      // data() resolves as a microtask on the cpu and wasm backends: without this, nothing else would run.
      if (s < n) await new Promise<void>((r) => setImmediate(r));
    }
    this.sliceBatch = batch; // the next evaluation starts at the size this one settled on
    return {
      accuracy: correct / n,
      loss: lossSum / n,
      examples: n,
      ms: performance.now() - t0,
      classes: classResults(this.labels, preds, K),
      samplePreds: Array.from(preds.subarray(0, Math.min(n, SAMPLE_COUNT))),
      sampleLabels: Array.from(this.labels.subarray(0, Math.min(n, SAMPLE_COUNT))),
    };
  }

  dispose(): void {
    this.model.dispose();
  }
}
