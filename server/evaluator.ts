import * as tf from '@tensorflow/tfjs';
import { CHANNELS, IMAGE_SIZE, NUM_CLASSES, PIXELS, toFloat, type Dataset } from '../shared/data/dataset.ts';
import { classResults, type ClassResults } from '../shared/eval/per-class.ts';
import { buildModel } from '../shared/model/build.ts';
import type { ModelSpec } from '../shared/model/spec.ts';
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

/** The first SAMPLE_COUNT test images (HWC bytes) and their labels: fixed for the run. */
export function testSamples(test: Dataset, count = SAMPLE_COUNT): { images: Uint8Array; labels: number[] } {
  const n = Math.min(count, test.n);
  return { images: test.x.slice(0, n * PIXELS), labels: Array.from(test.y.subarray(0, n)) };
}

/** Evaluates global weights on a fixed held-out set; the test tensors are built once. */
export class Evaluator {
  private readonly model: tf.Sequential;
  private readonly x: tf.Tensor4D;
  private readonly labels: Uint8Array;

  constructor(
    readonly spec: ModelSpec,
    test: Dataset,
    // Large chunks: on wasm, 10,000 CIFAR images take 2.5 s in chunks of 1000 and 5.6 s in chunks of 256.
    private readonly batchSize = 1000,
  ) {
    if (test.n < 1) throw new Error('test set is empty');
    this.model = buildModel(spec);
    this.x = tf.tensor4d(toFloat(test.x), [test.n, IMAGE_SIZE, IMAGE_SIZE, CHANNELS]);
    this.labels = test.y;
  }

  async evaluate(weights: Float32Array): Promise<EvalResult> {
    const t0 = performance.now();
    setFlatWeights(this.model, this.spec, weights);
    const n = this.labels.length;
    const preds = new Int32Array(n);
    let correct = 0;
    let lossSum = 0;
    for (let s = 0; s < n; s += this.batchSize) {
      const e = Math.min(n, s + this.batchSize);
      // One forward pass per chunk: predict()'s default batch of 32 would slice the chunk again and concat.
      const probs = tf.tidy(
        () =>
          this.model.predict(this.x.slice([s, 0, 0, 0], [e - s, -1, -1, -1]), {
            batchSize: e - s,
          }) as tf.Tensor2D,
      );
      const p = (await probs.data()) as Float32Array;
      probs.dispose();
      for (let i = 0; i < e - s; i++) {
        const row = p.subarray(i * NUM_CLASSES, (i + 1) * NUM_CLASSES);
        let arg = 0;
        for (let k = 1; k < NUM_CLASSES; k++) if (row[k] > row[arg]) arg = k;
        const label = this.labels[s + i];
        preds[s + i] = arg;
        if (arg === label) correct++;
        lossSum += -Math.log(Math.max(row[label], 1e-7));
      }
    }
    return {
      accuracy: correct / n,
      loss: lossSum / n,
      examples: n,
      ms: performance.now() - t0,
      classes: classResults(Int32Array.from(this.labels), preds, NUM_CLASSES),
      samplePreds: Array.from(preds.subarray(0, Math.min(n, SAMPLE_COUNT))),
      sampleLabels: Array.from(this.labels.subarray(0, Math.min(n, SAMPLE_COUNT))),
    };
  }

  dispose(): void {
    this.model.dispose();
    this.x.dispose();
  }
}
