/**
 * npm run bench:dp [-- --noise 0,0.5,1,2 --rounds 20 --population 1000 --q 0.1 --clip 0.5 --lr 0.1 --model mlp]
 * DP-FedAvg accuracy vs epsilon. Simulates the population in one process with the production pipeline:
 * Poisson sampling of clients (the accountant's assumption), local training with tfjs, the client-side
 * clip -> fixed point -> stochastic rounding -> Skellam noise -> ring encoding of shared/fl/encoding.ts,
 * the modular sum and decoding of the server, and the RDP accountant. Secure-aggregation masks are left
 * out: they cancel exactly (bit for bit, see the secagg tests), so they cannot change the result.
 * Runs on the synthetic data, and on CIFAR-10 too when ../shared/data/cifar10 holds the binaries.
 * Writes bench-results/dp.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import '../client/wasm-backend.ts';
import type { Dataset } from '../shared/data/dataset.ts';
import { subset, toFloat } from '../shared/data/dataset.ts';
import { createRng } from '../shared/data/rng.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { epsilonFor } from '../shared/dp/calibrate.ts';
import { createSecureRandom } from '../shared/dp/secure-random.ts';
import { decodeAggregate, encodeContribution, planEncoding, vectorLength } from '../shared/fl/encoding.ts';
import { buildModel } from '../shared/model/build.ts';
import { modelByName, numParams } from '../shared/model/spec.ts';
import { getFlatWeights, setFlatWeights } from '../shared/model/weights.ts';
import { addInto } from '../shared/secagg/ring.ts';
import { locateCifar10, readCifar10Dir } from '../server/datasets.ts';

const { values } = parseArgs({
  options: {
    noise: { type: 'string', default: '0,0.5,1,2' },
    rounds: { type: 'string', default: '20' },
    population: { type: 'string', default: '1000' },
    q: { type: 'string', default: '0.1' },
    clip: { type: 'string', default: '0.5' },
    model: { type: 'string', default: 'mlp' },
    'per-client': { type: 'string', default: '32' },
    lr: { type: 'string', default: '0.1' },
    delta: { type: 'string', default: '1e-5' },
    'cifar-dir': { type: 'string', default: '../shared/data/cifar10' },
  },
});
const noises = values.noise!.split(',').map(Number);
const rounds = Number(values.rounds);
const N = Number(values.population);
const q = Number(values.q);
const clip = Number(values.clip);
const spec = modelByName(values.model!);
const perClient = Number(values['per-client']);
const lr = Number(values.lr);
const delta = Number(values.delta);
const d = numParams(spec);
const minSurvivors = Math.max(2, Math.floor(q * N * 0.8)); // rounds with fewer sampled clients are skipped
const rand = createSecureRandom();
const progress = (msg: string): void => void process.stderr.write(`\r\x1b[K${msg}`);

if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');

interface Population {
  name: string;
  clients: Dataset[];
  test: Dataset;
}

function tensors(ds: Dataset): [tf.Tensor4D, tf.Tensor2D] {
  return [
    tf.tensor4d(toFloat(ds.x), [ds.n, 32, 32, 3]),
    tf.oneHot(tf.tensor1d(Array.from(ds.y), 'int32'), 10) as tf.Tensor2D,
  ];
}

async function run(pop: Population, z: number) {
  const model = buildModel(spec, 1);
  model.compile({ optimizer: tf.train.sgd(lr), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  let global = await getFlatWeights(model);
  const [tx, ty] = tensors(pop.test);
  const rng = createRng(7); // client sampling only (not a privacy-relevant secret in a simulation)
  const history: { round: number; clients: number; accuracy: number; epsilon: number }[] = [];
  let released = 0;
  for (let r = 1; r <= rounds; r++) {
    const cohort: number[] = [];
    for (let i = 0; i < N; i++) if (rng.next() < q) cohort.push(i);
    if (cohort.length < minSurvivors) continue; // refused: too few for the planned noise
    const plan = planEncoding({
      numParams: d,
      maxClients: cohort.length,
      clipNorm: clip,
      coordClip: clip,
      weighting: 'uniform',
      maxExamples: perClient,
      noise: z > 0 ? { multiplier: z, minSurvivors, bitStd: 0 } : null,
    });
    const sum = new Uint32Array(vectorLength(d));
    for (const [j, i] of cohort.entries()) {
      if (j % 10 === 0)
        progress(`bench:dp ${pop.name} z=${z} round ${r}/${rounds}: client ${j}/${cohort.length}`);
      setFlatWeights(model, spec, global);
      const [x, y] = tensors(pop.clients[i]);
      await model.fit(x, y, { batchSize: 16, epochs: 1, verbose: 0, shuffle: true });
      tf.dispose([x, y]);
      const local = await getFlatWeights(model);
      const delta32 = new Float32Array(d);
      for (let k = 0; k < d; k++) delta32[k] = local[k] - global[k];
      addInto(sum, encodeContribution(delta32, perClient, plan, rand).ring);
    }
    const agg = decodeAggregate(sum, cohort.length, plan);
    const next = new Float32Array(d);
    for (let k = 0; k < d; k++) next[k] = global[k] + agg.mean[k];
    global = next;
    released++;
    setFlatWeights(model, spec, global);
    const [, acc] = (model.evaluate(tx, ty, { batchSize: 256 }) as tf.Scalar[]).map((t) => t.dataSync()[0]);
    history.push({
      round: r,
      clients: cohort.length,
      accuracy: acc,
      epsilon: z > 0 ? epsilonFor(q, z, released, delta) : Infinity,
    });
  }
  tf.dispose([tx, ty]);
  model.dispose();
  const last = history.slice(-5).map((h) => h.accuracy);
  return {
    z,
    epsilon: z > 0 ? epsilonFor(q, z, released, delta) : Infinity,
    rounds: released,
    accuracy: history.at(-1)?.accuracy ?? NaN,
    // One round's accuracy jumps with the noise; the mean of the last five is the steadier figure.
    lastFiveMean: last.reduce((a, b) => a + b, 0) / last.length,
    history,
  };
}

function synthetic(): Population {
  return {
    name: 'synthetic',
    clients: Array.from({ length: N }, (_, i) => syntheticDataset({ seed: 1000 + i, count: perClient })),
    test: syntheticDataset({ seed: 99, count: 1000 }),
  };
}

async function cifar(base: string): Promise<Population | null> {
  const dir = locateCifar10(base);
  if (!dir) return null;
  const { train, test } = await readCifar10Dir(dir, 2000);
  const per = Math.floor(train.n / N);
  return {
    name: 'cifar10',
    clients: Array.from({ length: N }, (_, i) =>
      subset(
        train,
        Array.from({ length: per }, (_, k) => i * per + k),
      ),
    ),
    test,
  };
}

const pops: Population[] = [synthetic()];
const c = await cifar(values['cifar-dir']!);
if (c) pops.push(c);
else console.log(`CIFAR-10 not found at ${values['cifar-dir']}: synthetic data only`);

const results: Record<string, Awaited<ReturnType<typeof run>>[]> = {};
for (const pop of pops) {
  results[pop.name] = [];
  for (const z of noises) results[pop.name].push(await run(pop, z));
}
progress('');
console.log(
  `\nDP-FedAvg, model ${spec.name} (${d.toLocaleString('en')} params), population ${N}, Poisson q = ${q} (~${q * N} clients/round), ${rounds} rounds, clip C = ${clip}, delta = ${delta}, noise split over >= ${minSurvivors} survivors`,
);
for (const [name, rs] of Object.entries(results)) {
  console.log(
    `\n${name}:\n| noise multiplier z | epsilon | rounds released | final test accuracy | mean of last 5 rounds |\n|---:|---:|---:|---:|---:|`,
  );
  for (const r of rs) {
    console.log(
      `| ${r.z === 0 ? '0 (no DP)' : r.z} | ${Number.isFinite(r.epsilon) ? r.epsilon.toFixed(2) : 'inf'} | ${r.rounds} | ${(r.accuracy * 100).toFixed(1)}% | ${(r.lastFiveMean * 100).toFixed(1)}% |`,
    );
  }
}
mkdirSync('bench-results', { recursive: true });
writeFileSync(
  'bench-results/dp.json',
  JSON.stringify(
    { model: spec.name, params: d, population: N, q, rounds, clip, delta, minSurvivors, results },
    null,
    2,
  ),
);
console.log('\nwrote bench-results/dp.json');
