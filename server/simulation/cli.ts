/**
 * npm run simulate -- --clients 100 --per-round 10 --rounds 20 [--model small|mlp|tiny|medium] [--backend wasm|cpu] [--partition dirichlet
 *   --dirichlet-alpha 0.5] [--server-opt fedadam --server-lr 0.03] [--prox-mu 0.01] [--augment] [--logit-adjust] [--dp-noise 1 --dp-clip 0.5]
 *   [--cifar-dir DIR] [--eval-every K] [--workers N] [--out sim-results/NAME]   (--help lists every flag)
 * Federated training without browsers or sockets, through the same client and server code (see
 * server/simulation/run.ts). Shows a progress line; writes rounds.csv, rounds.json and accuracy.svg.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import '../../client/wasm-backend.ts';
import { chartSvg } from '../../shared/chart/chart.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import {
  SERVER_OPTIMIZER_DEFAULTS,
  SERVER_OPTIMIZERS,
  type ServerOptimizerName,
} from '../../shared/fl/server-opt.ts';
import type { PartitionScheme } from '../../shared/fl/partition.ts';
import { modelByName, numParams } from '../../shared/model/spec.ts';
import { isLocalOptimizer, LOCAL_OPTIMIZERS } from '../../shared/protocol/messages.ts';
import { parsePartition } from '../config.ts';
import { readCifar10Dir } from '../datasets.ts';
import { defaultWorkers } from './pool.ts';
import { clientPool, runSimulation } from './run.ts';

/** Every flag with its default and what it does; parseArgs' options and --help are both built from it. */
const FLAGS = {
  clients: { type: 'string', default: '100', help: 'clients in the federation' },
  'per-round': {
    type: 'string',
    default: '10',
    help: 'clients drawn each round (poisson: the expected number)',
  },
  sampling: {
    type: 'string',
    default: 'fixed',
    help: 'fixed (per-round clients) or poisson (each client with probability per-round/clients, as the DP accountant assumes; rounds with fewer than 80% of per-round are skipped)',
  },
  rounds: { type: 'string', default: '20', help: 'rounds to run' },
  model: { type: 'string', default: 'small', help: 'model: small, mlp, tiny or medium' },
  backend: { type: 'string', default: 'wasm', help: 'tfjs backend: wasm or cpu' },
  'examples-per-client': {
    type: 'string',
    default: '64',
    help: 'training examples per client (with --cifar-dir: a seeded sample of clients x this many)',
  },
  'test-examples': { type: 'string', default: '1000', help: 'held-out examples for evaluation' },
  partition: { type: 'string', default: 'iid', help: 'iid, dirichlet or shards' },
  'dirichlet-alpha': { type: 'string', help: 'label skew of --partition dirichlet' },
  'shards-per-client': { type: 'string', help: 'shards each client gets with --partition shards' },
  'unbalanced-sigma': { type: 'string', help: 'log-normal client sizes with --partition iid' },
  epochs: { type: 'string', default: '1', help: 'local epochs per round' },
  'local-steps': { type: 'string', help: 'local steps (batches) per round instead of epochs' },
  'batch-size': { type: 'string', default: '16', help: 'local batch size' },
  lr: { type: 'string', default: '0.05', help: 'local learning rate' },
  optimizer: { type: 'string', default: 'sgd', help: 'local optimizer: sgd, momentum (0.9) or adam' },
  'prox-mu': { type: 'string', default: '0', help: 'FedProx proximal term mu (0: off)' },
  augment: { type: 'boolean', default: false, help: 'random crop + mirror augmentation' },
  'logit-adjust': {
    type: 'boolean',
    default: false,
    help: 'clients train on softmax(z + log pi), pi their own label mix (for label skew)',
  },
  'server-opt': {
    type: 'string',
    default: 'fedavg',
    help: `server optimizer: ${SERVER_OPTIMIZERS.join(', ')}`,
  },
  'server-lr': { type: 'string', default: '1', help: 'server learning rate' },
  'dp-noise': { type: 'string', default: '0', help: 'DP noise multiplier z (0: no DP)' },
  'dp-clip': { type: 'string', default: '0.5', help: 'DP clip norm C' },
  'dp-delta': { type: 'string', default: '1e-5', help: 'DP delta' },
  'cifar-dir': { type: 'string', help: 'CIFAR-10 binaries (cifar-10-batches-bin) instead of synthetic data' },
  seed: {
    type: 'string',
    default: '1',
    help: 'seed of data, partition, cohorts, initial model and training',
  },
  'eval-every': { type: 'string', default: '1', help: 'evaluate every K rounds (and after the last)' },
  workers: {
    type: 'string',
    default: String(defaultWorkers()),
    help: 'threads training clients in parallel (0: one at a time in the main thread; same results)',
  },
  out: {
    type: 'string',
    default: 'sim-results/latest',
    help: 'folder for rounds.csv, rounds.json, accuracy.svg',
  },
  help: { type: 'boolean', short: 'h', help: 'print this help and exit' },
} as const;

/** The --help text: usage and one line per flag. */
function usage(): string {
  const rows = Object.entries(FLAGS).map(([name, f]) => {
    const flag = `--${name}${'short' in f ? `, -${f.short}` : ''}${f.type === 'string' ? ' X' : ''}`;
    const def = 'default' in f && f.type === 'string' ? ` (default ${f.default})` : '';
    return `  ${flag.padEnd(26)}${f.help}${def}`;
  });
  return [
    'usage: npm run simulate -- [flags]',
    'Federated training without browsers or sockets, through the same client and server code.',
    '',
    ...rows,
  ].join('\n');
}

function parseFlags() {
  try {
    const { values, tokens } = parseArgs({
      options: Object.fromEntries(
        Object.entries(FLAGS).map(([name, { help: _, ...opt }]) => [name, opt]),
      ) as { [K in keyof typeof FLAGS]: Omit<(typeof FLAGS)[K], 'help'> },
      tokens: true,
    });
    // --epochs has a default, so only the command line tells whether it was asked for beside --local-steps.
    if (values['local-steps'] !== undefined && tokens.some((t) => t.kind === 'option' && t.name === 'epochs'))
      throw new Error('--epochs and --local-steps go apart: steps replace epochs');
    return values;
  } catch (err) {
    // A mistyped flag: say which, show the flags, exit like other CLIs on a usage error.
    console.error(`simulate: ${(err as Error).message}\n\n${usage()}`);
    process.exit(2);
  }
}
const v = parseFlags();
if (v.help) {
  console.log(usage());
  process.exit(0);
}

function whole(name: string): number {
  const n = positive(name);
  if (!Number.isInteger(n)) throw new Error(`--${name} must be a whole number, got "${n}"`);
  return n;
}

function positive(name: string, min = 1): number {
  const n = Number(v[name as keyof typeof v]);
  if (!Number.isFinite(n) || n < min)
    throw new Error(`--${name} must be a number >= ${min}, got "${v[name as keyof typeof v]}"`);
  return n;
}

const clients = positive('clients');
const perRound = positive('per-round');
const rounds = positive('rounds');
const per = positive('examples-per-client');
const model = modelByName(v.model!);
const serverOpt = v['server-opt'] as ServerOptimizerName;
if (!SERVER_OPTIMIZERS.includes(serverOpt))
  throw new Error(`--server-opt must be one of ${SERVER_OPTIMIZERS.join(', ')}`);
if (!isLocalOptimizer(v.optimizer))
  throw new Error(`--optimizer must be one of ${LOCAL_OPTIMIZERS.join(', ')}`);
const scheme: PartitionScheme = parsePartition((k) => v[k as keyof typeof v] as string | undefined);
const noise = Number(v['dp-noise']);
if (v.sampling !== 'fixed' && v.sampling !== 'poisson')
  throw new Error('--sampling must be fixed or poisson');
const sampling = v.sampling;

if (v.backend !== 'wasm' && v.backend !== 'cpu') throw new Error('--backend must be wasm or cpu');
if (!(await tf.setBackend(v.backend))) throw new Error(`tfjs backend ${v.backend} did not initialise`);
const seed = positive('seed', 0);
const data = v['cifar-dir']
  ? await readCifar10Dir(v['cifar-dir'], positive('test-examples')).then(({ train, test }) => ({
      name: 'CIFAR-10',
      train: clientPool(train, clients, per, seed),
      test,
    }))
  : {
      name: 'synthetic',
      train: syntheticDataset({ seed, count: clients * per }),
      test: syntheticDataset({ seed: seed + 7919, count: positive('test-examples') }),
    };

const label = `${data.name}, ${model.name} (${numParams(model).toLocaleString('en')} params), ${clients} clients (${v.partition}), ${perRound}/round, ${serverOpt}${noise > 0 ? `, DP z=${noise}` : ''}`;
console.log(`simulate: ${label}`);
const t0 = performance.now();
const bar = (frac: number) => '#'.repeat(Math.round(frac * 30)).padEnd(30, '.');
const result = await runSimulation(
  {
    model,
    train: data.train,
    test: data.test,
    clients,
    perRound,
    rounds,
    partition: scheme,
    local: {
      epochs: positive('epochs'),
      ...(v['local-steps'] !== undefined ? { steps: whole('local-steps') } : {}),
      batchSize: positive('batch-size'),
      learningRate: positive('lr', 1e-9),
      optimizer: v.optimizer,
      proximalMu: Number(v['prox-mu']),
      augment: v.augment === true,
      ...(v['logit-adjust'] === true ? { logitAdjust: true } : {}),
    },
    server: { name: serverOpt, lr: positive('server-lr', 1e-9), ...SERVER_OPTIMIZER_DEFAULTS },
    dp:
      noise > 0
        ? { noiseMultiplier: noise, clipNorm: positive('dp-clip', 1e-9), delta: Number(v['dp-delta']) }
        : null,
    seed,
    sampling,
    // Poisson: the noise is split over (and a round needs) 80% of the expected cohort.
    minUpdates: sampling === 'poisson' ? Math.max(1, Math.floor(0.8 * perRound)) : undefined,
    evalEvery: positive('eval-every'),
    workers: positive('workers', 0),
  },
  (r, p) => {
    const done = (r.round - 1 + (p ? p.client / p.of : 1)) / rounds;
    const evald =
      r.accuracy !== null && r.loss !== null
        ? `accuracy ${(r.accuracy * 100).toFixed(1)}%, loss ${r.loss.toFixed(3)}`
        : r.clients === 0
          ? 'skipped: fewer clients drawn than the minimum'
          : `train loss ${r.trainLoss.toFixed(3)}`;
    const tail = p
      ? `round ${r.round}/${rounds}, client ${p.client + 1}/${p.of}`
      : `round ${r.round}/${rounds}: ${evald}${r.epsilon !== null ? `, epsilon ${r.epsilon.toFixed(2)}` : ''}`;
    process.stderr.write(`\r\x1b[K[${bar(done)}] ${tail}`);
    if (!p) process.stderr.write('\n');
  },
);
const out = v.out!;
mkdirSync(out, { recursive: true });
const rows = result.rounds;
writeFileSync(
  join(out, 'rounds.csv'),
  [
    'round,clients,examples,accuracy,loss,epsilon,train_loss,seconds',
    ...rows.map((r) =>
      [
        r.round,
        r.clients,
        r.examples,
        r.accuracy ?? '',
        r.loss ?? '',
        r.epsilon ?? '',
        Number.isNaN(r.trainLoss) ? '' : r.trainLoss, // a skipped round trained nothing
        r.seconds.toFixed(2),
      ].join(','),
    ),
  ].join('\n') + '\n',
);
writeFileSync(
  join(out, 'rounds.json'),
  JSON.stringify({ settings: v, label, initial: result.initial, rounds: rows }, null, 2),
);
const pts: [number, number][] = [
  [0, result.initial.accuracy],
  ...rows.flatMap((r) => (r.accuracy === null ? [] : [[r.round, r.accuracy] as [number, number]])),
];
// The run's configuration under each chart, so a plot read on its own says what produced it.
const caption = [
  `model ${model.name}, ${clients} clients (${perRound}/round, ${v.partition}), ${rounds} rounds, data ${data.name}`,
  `client lr ${v.lr} (${v.optimizer}, ${v['local-steps'] !== undefined ? `${v['local-steps']} steps` : `${v.epochs} epochs`}, batch ${v['batch-size']}${Number(v['prox-mu']) > 0 ? `, FedProx mu ${v['prox-mu']}` : ''}${v.augment ? ', crop + mirror' : ''}${v['logit-adjust'] ? ', logit-adjusted' : ''}), server ${serverOpt} lr ${v['server-lr']}${noise > 0 ? `, DP z=${noise} clip ${v['dp-clip']}` : ''}, seed ${seed}`,
];
writeFileSync(
  join(out, 'accuracy.svg'),
  chartSvg(
    [{ label: 'test accuracy', color: '#2f6fed', points: pts }],
    // Fitted to the data (within 0-100%): a run that moves from 11% to 19% fills the plot.
    {
      yBounds: [0, 1],
      yFormat: (x) => `${Math.round(x * 100)}%`,
      xMin: 0,
      xLabel: 'round',
      yLabel: 'test accuracy',
      caption,
    },
    label,
  ),
);
const lossPts: [number, number][] = [
  [0, result.initial.loss],
  ...rows.flatMap((r) => (r.loss === null ? [] : [[r.round, r.loss] as [number, number]])),
];
writeFileSync(
  join(out, 'loss.svg'),
  chartSvg(
    [
      { label: 'test loss', color: '#e8710a', points: lossPts },
      {
        label: 'train loss (clients)',
        color: '#888888',
        points: rows.filter((r) => r.clients > 0).map((r) => [r.round, r.trainLoss]),
      },
    ],
    { xMin: 0, xLabel: 'round', yLabel: 'loss', caption },
    label,
  ),
);
console.log(
  `accuracy ${(result.initial.accuracy * 100).toFixed(1)}% -> ${(rows.at(-1)!.accuracy! * 100).toFixed(1)}% in ${rounds} rounds, ${((performance.now() - t0) / 1000).toFixed(0)} s; wrote ${out}/rounds.csv, rounds.json, accuracy.svg, loss.svg`,
);
