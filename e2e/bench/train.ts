import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import '../../client/backends-browser.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { CHANNELS, IMAGE_SIZE, NUM_CLASSES, toFloat } from '../../shared/data/dataset.ts';
import { buildModel } from '../../shared/model/build.ts';
import { getFlatWeights } from '../../shared/model/weights.ts';
import { modelByName } from '../../shared/model/spec.ts';
import { LocalTrainer } from '../../client/trainer.ts';
import type { BackendName, TrainConfig } from '../../shared/protocol/messages.ts';

/**
 * Examples/s of our client training path (LocalTrainer, as the worker runs it) vs a bare tfjs loop
 * (model.fit on the same tensors) on the same backend, model and data, interleaved so that machine noise
 * hits both alike. Results go to window.__bench for the Playwright driver (npm run bench:train).
 */
interface BenchResult {
  backend: string;
  model: string;
  examples: number;
  epochs: number;
  batchSize: number;
  ours: number[];
  bare: number[];
  /** Whether the page is cross-origin isolated (then tfjs loads its multi-threaded wasm build). */
  isolated: boolean;
  /** wasm: threads its kernels run on (1: the single-threaded build). */
  threads?: number;
  error?: string;
}

async function run(): Promise<BenchResult> {
  const p = new URLSearchParams(location.search);
  const backend = (p.get('backend') ?? 'webgl') as BackendName;
  const spec = modelByName(p.get('model') ?? 'small');
  const n = Number(p.get('examples') ?? 256);
  const reps = Number(p.get('reps') ?? 3);
  const cfg: TrainConfig = {
    epochs: Number(p.get('epochs') ?? 1),
    batchSize: 32,
    learningRate: 0.001,
    optimizer: 'adam',
  };
  const out: BenchResult = {
    backend,
    model: spec.name,
    examples: n,
    epochs: cfg.epochs,
    batchSize: cfg.batchSize,
    ours: [],
    bare: [],
    isolated: globalThis.crossOriginIsolated === true,
  };
  if (!(await tf.setBackend(backend))) return { ...out, error: `backend ${backend} unavailable` };
  await tf.ready();
  if (backend === 'wasm') out.threads = getThreadsCount();
  const data = syntheticDataset({ seed: 3, count: n });
  const init = buildModel(spec, 5);
  const w0 = await getFlatWeights(init);
  init.dispose();

  const trainer = new LocalTrainer(spec, data);
  const bareModel = buildModel(spec, 5);
  const x = tf.tensor4d(toFloat(data.x), [n, IMAGE_SIZE, IMAGE_SIZE, CHANNELS]);
  const y = tf.oneHot(tf.tensor1d(data.y, 'int32'), NUM_CLASSES).toFloat();

  const ours = async (): Promise<number> => {
    const t0 = performance.now();
    await trainer.train(w0, cfg);
    return (n * cfg.epochs) / ((performance.now() - t0) / 1000);
  };
  const bare = async (): Promise<number> => {
    bareModel.compile({ optimizer: tf.train.adam(cfg.learningRate), loss: 'categoricalCrossentropy' });
    const t0 = performance.now();
    await bareModel.fit(x, y, { batchSize: cfg.batchSize, epochs: cfg.epochs, shuffle: true, verbose: 0 });
    await bareModel.getWeights()[0].data();
    return (n * cfg.epochs) / ((performance.now() - t0) / 1000);
  };
  // Warm-up: shader compilation and kernel caches are not what we measure.
  await ours();
  await bare();
  for (let i = 0; i < reps; i++) {
    out.ours.push(await ours());
    out.bare.push(await bare());
  }
  return out;
}

const w = window as unknown as { __bench?: BenchResult };
run()
  .then((r) => (w.__bench = r))
  .catch(
    (e: Error) =>
      (w.__bench = {
        backend: '?',
        model: '?',
        examples: 0,
        epochs: 0,
        batchSize: 0,
        ours: [],
        bare: [],
        isolated: globalThis.crossOriginIsolated === true,
        error: e.message,
      }),
  )
  .finally(() => (document.getElementById('out')!.textContent = JSON.stringify(w.__bench, null, 2)));
