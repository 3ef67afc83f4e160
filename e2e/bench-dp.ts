/**
 * npm run bench:dp [-- --epsilons 1,2,4,8,inf --population 10000 --q 0.01 --rounds 200 --clip 0.3
 *   --delta 1e-5 --model small --lr 0.1 --local-epochs 1 --batch-size 5 --server-opt fedavgm --server-lr 1
 *   --server-momentum 0.9 --train all --test all --eval-every 20 --cifar-dir ../shared/data/cifar10
 *   --workers N --noise aggregate|per-client --seed 1 --out bench-results]
 * User-level DP-FedAvg: test accuracy against epsilon on real CIFAR-10 (synthetic data when the folder is
 * missing, labelled so). A population of --population clients splits the training images IID (50 000 /
 * 10 000 = 5 each); each round samples every client independently with probability --q (Poisson, what the
 * accountant assumes) and skips a round that draws fewer than 80% of q N, the survivors the noise is split
 * over. Everything else is the production path through runSimulation: the client's LocalTrainer, the
 * client-side clip -> fixed point -> stochastic rounding -> Skellam noise -> ring encoding, the server's
 * modular sum, decode and optimizer, and the RDP accountant. Secure-aggregation masks are left out: they
 * cancel exactly (bit for bit, see the secagg tests), so they cannot change a result. With --noise aggregate
 * (the default) each round's Skellam noise is drawn once for the sum (the sum of the clients' shares, in
 * distribution: runSimulation's `noise`); --noise per-client has every client draw its own, as in production.
 * For each target epsilon the noise multiplier z is the smallest that keeps epsilon within the target after
 * --rounds released rounds at (q, delta); a skipped draw is not charged, so the spent epsilon can only be
 * lower. As on the server, the skips and each cohort's size are public and outside the ledger
 * (docs/design.md); at the defaults ~2% of draws are skipped. `inf` is the same pipeline with clipping
 * and no noise.
 * Writes dp.json and dp.svg to --out after every arm.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import '../client/wasm-backend.ts';
import { chartSvg } from '../shared/chart/chart.ts';
import { head, type Dataset } from '../shared/data/dataset.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { noiseForEpsilon } from '../shared/dp/calibrate.ts';
import { SERVER_OPTIMIZER_DEFAULTS, type ServerOptimizerConfig } from '../shared/fl/server-opt.ts';
import { modelByName, numParams } from '../shared/model/spec.ts';
import { locateCifar10, readCifar10Dir } from '../server/datasets.ts';
import { defaultWorkers } from '../server/simulation/pool.ts';
import { runSimulation, type RoundRecord } from '../server/simulation/run.ts';

const { values: v } = parseArgs({
  options: {
    epsilons: { type: 'string', default: '1,2,4,8,inf' },
    population: { type: 'string', default: '10000' },
    q: { type: 'string', default: '0.01' },
    rounds: { type: 'string', default: '200' },
    clip: { type: 'string', default: '0.3' },
    delta: { type: 'string', default: '1e-5' },
    model: { type: 'string', default: 'small' },
    lr: { type: 'string', default: '0.1' },
    'local-epochs': { type: 'string', default: '1' },
    'batch-size': { type: 'string', default: '5' },
    'server-opt': { type: 'string', default: 'fedavgm' },
    'server-lr': { type: 'string', default: '1' },
    'server-momentum': { type: 'string', default: '0.9' },
    // 'all': every CIFAR-10 image (50 000 / 10 000); synthetic data: 10 000 / 2 000.
    train: { type: 'string', default: 'all' },
    test: { type: 'string', default: 'all' },
    'eval-every': { type: 'string', default: '20' },
    'cifar-dir': { type: 'string', default: '../shared/data/cifar10' },
    workers: { type: 'string' },
    // 'aggregate': each round's noise drawn once for the sum (same distribution); 'per-client': as clients do.
    noise: { type: 'string', default: 'aggregate' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'bench-results' },
  },
});
const num = (k: keyof typeof v, ok: (n: number) => boolean, what: string): number => {
  const n = Number(v[k]);
  if (!ok(n)) throw new Error(`--${k} must be ${what}, got ${v[k]}`);
  return n;
};
const whole = (min: number) => (n: number) => Number.isInteger(n) && n >= min;
const population = num('population', whole(2), 'a whole number >= 2');
const q = num('q', (n) => n > 0 && n <= 1, 'in (0, 1]');
const rounds = num('rounds', whole(1), 'a whole number >= 1');
const clip = num('clip', (n) => n > 0, '> 0');
const delta = num('delta', (n) => n > 0 && n < 1, 'in (0, 1)');
const evalEvery = num('eval-every', whole(1), 'a whole number >= 1');
const seed = num('seed', whole(0), 'a whole number >= 0');
const workers = v.workers === undefined ? defaultWorkers() : num('workers', whole(0), 'a whole number >= 0');
const targets = v.epsilons!.split(',').map((s) => {
  const e = s.trim() === 'inf' ? Infinity : Number(s);
  if (!(e > 0)) throw new Error(`--epsilons: each must be > 0 or inf, got ${s}`);
  return e;
});
const noise = v.noise!;
if (noise !== 'aggregate' && noise !== 'per-client')
  throw new Error(`--noise must be aggregate or per-client, got ${noise}`);
const serverOpt = v['server-opt']!;
if (serverOpt !== 'fedavg' && serverOpt !== 'fedavgm')
  throw new Error(`--server-opt must be fedavg or fedavgm, got ${serverOpt}`);
const server: ServerOptimizerConfig = {
  ...SERVER_OPTIMIZER_DEFAULTS,
  name: serverOpt,
  lr: num('server-lr', (n) => n > 0, '> 0'),
  momentum: num('server-momentum', (n) => n >= 0 && n < 1, 'in [0, 1)'),
};
const spec = modelByName(v.model!);
const local = {
  epochs: num('local-epochs', whole(1), 'a whole number >= 1'),
  batchSize: num('batch-size', whole(1), 'a whole number >= 1'),
  learningRate: num('lr', (n) => n > 0, '> 0'),
  optimizer: 'sgd' as const,
};
// The simulator samples at perRound / population: calibrate at exactly that rate.
const perRound = q * population;
const qSim = perRound / population;
// The noise is split over this many survivors; a round that samples fewer is skipped.
const minUpdates = Math.max(2, Math.floor(0.8 * perRound));
const progress = (msg: string): void => void process.stderr.write(`\r\x1b[K${msg}`);

if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');

async function loadData(): Promise<{ train: Dataset; test: Dataset; name: string }> {
  const size = (flag: 'train' | 'test', all: number): number =>
    v[flag] === 'all' ? all : num(flag, whole(1), "a whole number >= 1 or 'all'");
  const dir = locateCifar10(v['cifar-dir']!);
  if (dir) {
    const d = await readCifar10Dir(dir);
    return {
      train: head(d.train, size('train', d.train.n)),
      test: head(d.test, size('test', d.test.n)),
      name: 'CIFAR-10',
    };
  }
  return {
    train: syntheticDataset({ seed: 1, count: size('train', 10_000) }),
    test: syntheticDataset({ seed: 2, count: size('test', 2_000) }),
    name: 'SYNTHETIC (no CIFAR-10 at --cifar-dir)',
  };
}

const data = await loadData();
if (data.train.n < population)
  throw new Error(
    `--population ${population} exceeds the ${data.train.n} training images (one each at least)`,
  );
const settings = {
  data: data.name,
  train: data.train.n,
  test: data.test.n,
  model: spec.name,
  params: numParams(spec),
  population,
  perClient: data.train.n / population,
  q,
  expectedPerRound: perRound,
  minUpdates,
  rounds,
  clip,
  delta,
  local,
  server,
  evalEvery,
  workers,
  noise,
  seed,
  backend: tf.getBackend(),
};
console.log(
  `bench:dp: ${data.name}, ${spec.name} (${settings.params.toLocaleString('en')} params); ${population} clients x ${settings.perClient} images, ` +
    `Poisson q = ${q} (~${settings.expectedPerRound}/round, noise split over >= ${minUpdates}), ${rounds} rounds, C = ${clip}, delta = ${delta}; ` +
    `client sgd lr ${local.learningRate}, ${local.epochs} epoch(s), batch ${local.batchSize}; server ${server.name} lr ${server.lr}` +
    (server.name === 'fedavgm' ? ` momentum ${server.momentum}` : '') +
    `; ${workers} worker thread(s); noise drawn ${noise === 'aggregate' ? 'once per round for the sum' : 'by each client'}`,
);

interface Arm {
  target: number;
  z: number;
  epsilon: number;
  released: number;
  /** Clients in each round (0: a draw below the minimum, skipped). */
  cohorts: number[];
  /**
   * The noise multiplier the sums actually carried, averaged over released rounds: each client adds the
   * variance planned for minUpdates survivors, so n clients carry z sqrt(n / minUpdates) (> z: the ledger's
   * z is conservative, and the accuracy a little pessimistic).
   */
  zEffective: number;
  accuracy: number;
  /** Mean of the last three evaluations: one evaluation moves with the noise. */
  lastThreeMean: number;
  minutes: number;
  points: { round: number; accuracy: number; epsilon: number | null }[];
}
const arms: Arm[] = [];
const fmtEps = (e: number): string => (Number.isFinite(e) ? e.toFixed(2) : 'inf');
/** z as calibrated (3 significant digits), without float noise such as 1.1300000000000001. */
const fmtZ = (z: number): string => String(Number(z.toPrecision(6)));

for (const target of targets) {
  const z = Number.isFinite(target) ? noiseForEpsilon(target, delta, qSim, rounds) : 0;
  const t0 = performance.now();
  const r = await runSimulation(
    {
      model: spec,
      train: data.train,
      test: data.test,
      clients: population,
      perRound,
      rounds,
      sampling: 'poisson',
      minUpdates,
      partition: { kind: 'iid' },
      local,
      server,
      dp: { noiseMultiplier: z, clipNorm: clip, delta },
      noise,
      seed,
      evalEvery,
      workers,
    },
    (rec: RoundRecord, p) => {
      if (p)
        progress(
          `bench:dp epsilon ${fmtEps(target)} (z ${fmtZ(z)}) round ${rec.round}/${rounds}: client ${p.client}/${p.of}`,
        );
      else if (rec.accuracy !== null)
        progress(
          `bench:dp epsilon ${fmtEps(target)} (z ${fmtZ(z)}) round ${rec.round}/${rounds}: ${(rec.accuracy * 100).toFixed(1)}%\n`,
        );
    },
  );
  const evals = r.rounds.filter((x) => x.accuracy !== null);
  const last3 = evals.slice(-3).map((x) => x.accuracy!);
  const released = r.rounds.filter((x) => x.clients > 0).length;
  const cohorts = r.rounds.map((x) => x.clients);
  const live = cohorts.filter((n) => n > 0);
  arms.push({
    target,
    z,
    epsilon: z > 0 ? r.rounds.at(-1)!.epsilon! : Infinity,
    released,
    cohorts,
    zEffective: live.reduce((a, n) => a + z * Math.sqrt(n / minUpdates), 0) / live.length,
    accuracy: evals.at(-1)!.accuracy!,
    lastThreeMean: last3.reduce((a, b) => a + b, 0) / last3.length,
    minutes: (performance.now() - t0) / 60_000,
    points: [
      { round: 0, accuracy: r.initial.accuracy, epsilon: 0 },
      ...evals.map((x) => ({ round: x.round, accuracy: x.accuracy!, epsilon: x.epsilon })),
    ],
  });
  write(false);
}
progress('');
console.log(
  `\n| target epsilon | noise multiplier z (charged) | z carried (mean) | epsilon spent | rounds released | final test accuracy | mean of last 3 evaluations | minutes |\n|---:|---:|---:|---:|---:|---:|---:|---:|`,
);
for (const a of arms)
  console.log(
    `| ${fmtEps(a.target)} | ${a.z === 0 ? '0 (clip only)' : fmtZ(a.z)} | ${a.zEffective.toFixed(3)} | ${fmtEps(a.epsilon)} | ${a.released} / ${rounds} | ${(a.accuracy * 100).toFixed(1)}% | ${(a.lastThreeMean * 100).toFixed(1)}% | ${a.minutes.toFixed(1)} |`,
  );
write(true);
console.log(`\nwrote ${join(v.out!, 'dp.json')} and dp.svg`);

function write(done: boolean): void {
  mkdirSync(v.out!, { recursive: true });
  writeFileSync(
    join(v.out!, 'dp.json'),
    // JSON has no Infinity: the no-noise arm's target and epsilon are written as "inf".
    JSON.stringify(
      { date: new Date().toISOString(), done, settings, arms },
      (_, x) => (x === Infinity ? 'inf' : x),
      2,
    ),
  );
  const colors = ['#b23a48', '#d08c2b', '#3b8d5a', '#2f6db5', '#6b4fa0', '#555555'];
  writeFileSync(
    join(v.out!, 'dp.svg'),
    chartSvg(
      arms.map((a, i) => ({
        label: `epsilon ${fmtEps(a.epsilon)}${a.z ? ` (z ${fmtZ(a.z)})` : ' (no noise)'}: ${(a.accuracy * 100).toFixed(1)}%`,
        color: colors[i % colors.length],
        points: a.points.map((p) => [p.round, p.accuracy] as [number, number]),
      })),
      {
        yMin: 0,
        yMax: 1,
        yFormat: (x) => `${Math.round(x * 100)}%`,
        xLabel: 'round',
        caption: [
          `${data.name}, ${spec.name}; ${population} clients x ${settings.perClient} images, Poisson q ${q}, ${rounds} rounds, C ${clip}, delta ${delta}`,
          `client sgd lr ${local.learningRate}, ${local.epochs} epoch(s), batch ${local.batchSize}; server ${server.name} lr ${server.lr}${server.name === 'fedavgm' ? ` momentum ${server.momentum}` : ''}`,
        ],
      },
      `User-level DP-FedAvg: test accuracy by round, ${data.name}`,
    ),
  );
}
