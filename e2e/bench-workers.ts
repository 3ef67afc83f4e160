/**
 * npm run bench:workers [-- --clients 20 --per-round 10 --examples-per-client 500 --rounds 4 --model small
 *   --workers N --cifar-dir ../shared/data/cifar10 --out bench-results]
 * The simulator's round rate with clients trained one at a time on this thread (--workers 0) against the
 * same rounds trained in parallel worker threads (server/simulation/pool.ts), in one run: the same seed,
 * data, cohorts and settings, so the two must end on the same weights bit for bit (checked; a mismatch
 * fails the run). The first round carries the threads' start-up (tfjs, wasm compile), so the steady rate
 * is taken over rounds 2..R. Evaluation is left to the end of each run and timed on its own: the server's
 * evaluation of the whole test set (10 000 CIFAR-10 images), median of three.
 * Writes workers.json to --out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import '../client/wasm-backend.ts';
import { head, type Dataset } from '../shared/data/dataset.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { SERVER_OPTIMIZER_DEFAULTS } from '../shared/fl/server-opt.ts';
import { buildModel } from '../shared/model/build.ts';
import { modelByName } from '../shared/model/spec.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import { locateCifar10, readCifar10Dir } from '../server/datasets.ts';
import { Evaluator } from '../server/evaluator.ts';
import { defaultWorkers } from '../server/simulation/pool.ts';
import { clientPool, runSimulation, type RoundRecord } from '../server/simulation/run.ts';

const { values: v } = parseArgs({
  options: {
    clients: { type: 'string', default: '20' },
    'per-round': { type: 'string', default: '10' },
    'examples-per-client': { type: 'string', default: '500' },
    rounds: { type: 'string', default: '4' },
    'local-epochs': { type: 'string', default: '1' },
    'batch-size': { type: 'string', default: '32' },
    model: { type: 'string', default: 'small' },
    workers: { type: 'string' },
    'cifar-dir': { type: 'string', default: '../shared/data/cifar10' },
    'eval-reps': { type: 'string', default: '3' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'bench-results' },
  },
});
const int = (k: keyof typeof v, min: number): number => {
  const n = Number(v[k]);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${k} must be a whole number >= ${min}, got ${v[k]}`);
  return n;
};
const clients = int('clients', 1);
const perRound = int('per-round', 1);
const perClient = int('examples-per-client', 1);
const rounds = int('rounds', 2);
const evalReps = int('eval-reps', 1);
const seed = int('seed', 0);
const workers = v.workers === undefined ? defaultWorkers() : int('workers', 1);
const spec = modelByName(v.model!);

await tf.setBackend('wasm');
const cifar = locateCifar10(v['cifar-dir']!);
let data: { train: Dataset; test: Dataset };
let dataName: string;
if (cifar) {
  data = await readCifar10Dir(cifar);
  dataName = `CIFAR-10 (${cifar})`;
} else {
  data = {
    train: syntheticDataset({ seed: 1, count: 10_000 }),
    test: syntheticDataset({ seed: 2, count: 2_000 }),
  };
  dataName = 'synthetic (no CIFAR-10 at --cifar-dir)';
}
const train = clientPool(data.train, clients, perClient, seed);
const local = {
  epochs: int('local-epochs', 1),
  batchSize: int('batch-size', 1),
  learningRate: 0.05,
  optimizer: 'sgd' as const,
};
console.log(
  `bench:workers: ${spec.name}, ${dataName}; ${clients} clients x ${perClient}, ${perRound} a round, ${rounds} rounds, ` +
    `${local.epochs} local epoch(s), batch ${local.batchSize}; ${workers} worker thread(s) vs one at a time`,
);

interface Arm {
  workers: number;
  seconds: number[];
  /** Rounds per minute over rounds 2..R (the steady rate) and over the whole runSimulation call. */
  steadyPerMin: number;
  allPerMin: number;
  weights: Float32Array;
}

async function arm(threads: number): Promise<Arm> {
  const t0 = performance.now();
  const r = await runSimulation(
    {
      model: spec,
      train,
      test: head(data.test, 500), // a small set: evaluation is timed apart, below
      clients,
      perRound,
      rounds,
      partition: { kind: 'iid' },
      local,
      server: { ...SERVER_OPTIMIZER_DEFAULTS, name: 'fedavg', lr: 1 },
      dp: null,
      seed,
      evalEvery: rounds,
      workers: threads,
    },
    (rec: RoundRecord, progress) => {
      if (!progress)
        process.stdout.write(`  workers ${threads}: round ${rec.round} ${rec.seconds.toFixed(2)} s\n`);
    },
  );
  // The whole call: the threads' start-up, the partition and the initial evaluation of 500 images too.
  const all = (performance.now() - t0) / 1000;
  const seconds = r.rounds.map((x) => x.seconds);
  const steady = seconds.slice(1).reduce((a, b) => a + b, 0);
  return {
    workers: threads,
    seconds,
    steadyPerMin: (60 * (rounds - 1)) / steady,
    allPerMin: (60 * rounds) / all,
    weights: r.weights,
  };
}

const seq = await arm(0);
const par = await arm(workers);
const bytes = (w: Float32Array): Uint8Array => new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
const identical =
  seq.weights.length === par.weights.length && Buffer.compare(bytes(seq.weights), bytes(par.weights)) === 0;
// How far training moved the weights (equal untouched initial models would compare identical too).
const init = buildModel(spec, seed);
const w0 = await getFlatWeights(init);
init.dispose();
let moved = 0;
for (let i = 0; i < w0.length; i++) moved = Math.max(moved, Math.abs(seq.weights[i] - w0[i]));

// The server's evaluation of the whole test set, as it runs it (sliced on this thread).
const evaluator = new Evaluator(spec, data.test);
const evalMs: number[] = [];
await evaluator.evaluate(w0); // warm-up: kernels and buffers
for (let i = 0; i < evalReps; i++) evalMs.push((await evaluator.evaluate(w0)).ms);
evaluator.dispose();
const evalMedian = [...evalMs].sort((a, b) => a - b)[Math.floor(evalMs.length / 2)];

const ratio = par.steadyPerMin / seq.steadyPerMin;
console.log(`\nthreads  rounds/min (rounds 2..${rounds})  rounds/min (whole run)  seconds per round`);
for (const a of [seq, par])
  console.log(
    `${String(a.workers).padStart(7)}  ${a.steadyPerMin.toFixed(2).padStart(24)}  ${a.allPerMin.toFixed(2).padStart(22)}  ${a.seconds.map((s) => s.toFixed(2)).join(' ')}`,
  );
console.log(
  `speed-up ${workers} threads vs one at a time: ${ratio.toFixed(2)}x steady, ${(par.allPerMin / seq.allPerMin).toFixed(2)}x over the whole runs (thread start-up included); ` +
    `same weights bit for bit: ${identical ? 'yes' : 'NO'}`,
);
console.log(
  `evaluation of ${data.test.n} test images (sliced, this thread): median ${evalMedian.toFixed(0)} ms of ${evalMs.map((m) => m.toFixed(0)).join(', ')}`,
);
mkdirSync(v.out!, { recursive: true });
const file = join(v.out!, 'workers.json');
writeFileSync(
  file,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      model: spec.name,
      data: dataName,
      clients,
      perRound,
      examplesPerClient: perClient,
      rounds,
      local,
      workers,
      sequential: { seconds: seq.seconds, steadyPerMin: seq.steadyPerMin, allPerMin: seq.allPerMin },
      parallel: { seconds: par.seconds, steadyPerMin: par.steadyPerMin, allPerMin: par.allPerMin },
      speedup: ratio,
      identical,
      moved,
      evaluation: { examples: data.test.n, ms: evalMs, medianMs: evalMedian },
    },
    null,
    2,
  ),
);
console.log(`wrote ${file}`);
if (!identical) {
  console.error('bench:workers: the threaded run ended on different weights than the sequential one');
  process.exit(1);
}
