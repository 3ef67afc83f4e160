import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import '../../client/backends-browser.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { CHANNELS, IMAGE_SIZE, NUM_CLASSES, toFloat } from '../../shared/data/dataset.ts';
import { buildModel } from '../../shared/model/build.ts';
import { getFlatWeights } from '../../shared/model/weights.ts';
import { modelByName } from '../../shared/model/spec.ts';
import { LocalTrainer, type PairTimes } from '../../client/trainer.ts';
import type { BackendName, TrainConfig } from '../../shared/protocol/messages.ts';
import { spawnTrainer } from '../../client/spawn-trainer.ts';
import { examplesFromDataset } from '../../shared/data/examples.ts';
import { presetTask } from '../../shared/model/task.ts';

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
  /** With ?workers=1: the client's trainer in one Web Worker vs a pair splitting each batch (ex/s). */
  oneWorker?: number[];
  twoWorkers?: number[];
  /**
   * Two lone trainers in two workers, each training its own round at the same time (ex/s of both): what
   * two workers can get from this machine with no exchange at all, the ceiling for any split of one round.
   */
  twoApart?: number[];
  /** Threads the pair really trained on (1 if the second worker could not join). */
  pairThreads?: number;
  /** Steps the pair's last round trained split (0: it trained alone). */
  pairedSteps?: number;
  /** The pair's first worker, per paired step of its last round (ms): its half, its wait, combine + apply. */
  pairStepMs?: PairTimes;
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
    batchSize: Number(p.get('batch') ?? 32),
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
  trainer.dispose();
  bareModel.dispose();
  tf.dispose([x, y]);
  if (p.get('workers') === '1') await workerArms(out, backend, spec.name, data, cfg, w0, reps);
  return out;
}

/**
 * The client's trainer as a visitor's page runs it (spawnTrainer: Web Workers, the worker protocol), alone
 * and as a data-parallel pair, interleaved; the page's own tfjs is idle meanwhile.
 */
async function workerArms(
  out: BenchResult,
  backend: BackendName,
  preset: string,
  data: ReturnType<typeof syntheticDataset>,
  cfg: TrainConfig,
  w0: Float32Array,
  reps: number,
): Promise<void> {
  const init = {
    type: 'init' as const,
    task: presetTask(preset, cfg),
    data: { kind: 'inline' as const, examples: examplesFromDataset(data) },
    serverUrl: location.origin,
    backends: [backend],
  };
  const one = await spawnTrainer(1);
  const two = await spawnTrainer(2);
  const other = await spawnTrainer(1);
  await one.init(init);
  await two.init(init);
  await other.init(init);
  out.pairThreads = two.threads ?? 1;
  let round = 0;
  const rate = async (t: typeof one): Promise<number> => {
    const t0 = performance.now();
    const d = await t.train(++round, w0.slice().buffer, cfg, () => {});
    if (t === two) {
      out.pairedSteps = d.pairedSteps;
      const s = Math.max(1, d.pairedSteps);
      if (d.pairMs)
        out.pairStepMs = { grad: d.pairMs.grad / s, wait: d.pairMs.wait / s, apply: d.pairMs.apply / s };
    }
    return (data.n * cfg.epochs) / ((performance.now() - t0) / 1000);
  };
  const apart = async (): Promise<number> => {
    const t0 = performance.now();
    const r = ++round;
    await Promise.all([one, other].map((t) => t.train(r, w0.slice().buffer, cfg, () => {})));
    return (2 * data.n * cfg.epochs) / ((performance.now() - t0) / 1000);
  };
  await rate(one);
  await rate(two);
  await apart();
  out.oneWorker = [];
  out.twoWorkers = [];
  out.twoApart = [];
  for (let i = 0; i < reps; i++) {
    out.oneWorker.push(await rate(one));
    out.twoWorkers.push(await rate(two));
    out.twoApart.push(await apart());
  }
  one.terminate();
  two.terminate();
  other.terminate();
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
