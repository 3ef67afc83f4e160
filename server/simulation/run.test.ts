import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '../../client/wasm-backend.ts';
import { CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, encodeCifar10 } from '../../shared/data/cifar10.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { epsilonFor } from '../../shared/dp/calibrate.ts';
import { decodeAggregate, encodeContribution, planEncoding, vectorLength } from '../../shared/fl/encoding.ts';
import { createSecureRandom } from '../../shared/dp/secure-random.ts';
import { addInto } from '../../shared/secagg/ring.ts';
import { SERVER_OPTIMIZER_DEFAULTS } from '../../shared/fl/server-opt.ts';
import { MODELS } from '../../shared/model/spec.ts';
import { buildModel } from '../../shared/model/build.ts';
import { getFlatWeights } from '../../shared/model/weights.ts';
import { TrainPool } from './pool.ts';
import { clientPool, roundNoise, runSimulation, type SimulationOptions } from './run.ts';

/** Runs the CLI as `npm run simulate` does; returns its exit status and output. */
const simulate = (args: string[]): { status: number | null; stdout: string; stderr: string } =>
  spawnSync(process.execPath, ['--import', 'tsx', 'server/simulation/cli.ts', ...args], { encoding: 'utf8' });

const base = (): SimulationOptions => ({
  model: MODELS.mlp,
  train: syntheticDataset({ seed: 1, count: 20 * 48 }),
  test: syntheticDataset({ seed: 2, count: 300 }),
  clients: 20,
  perRound: 8,
  rounds: 4,
  partition: { kind: 'iid' },
  local: { epochs: 1, batchSize: 16, learningRate: 0.05, optimizer: 'sgd' },
  server: { name: 'fedavg', lr: 1, ...SERVER_OPTIMIZER_DEFAULTS },
  dp: null,
  seed: 1,
});

describe('simulation (headless, the real client trainer and server pieces)', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('FedAvg IID learns: accuracy after 4 rounds beats the initial model', async () => {
    const progress: number[] = [];
    const r = await runSimulation(base(), (rec, p) => p && progress.push(p.client));
    expect(r.rounds).toHaveLength(4);
    expect(r.rounds.every((x) => x.clients === 8 && x.examples === 8 * 48 && x.epsilon === null)).toBe(true);
    expect(r.rounds.at(-1)!.accuracy).toBeGreaterThan(r.initial.accuracy + 0.05);
    expect(progress.length).toBe(4 * 8);
  }, 60_000);

  it('non-IID with FedAdam and FedProx runs; with DP it reports the accountant epsilon each round', async () => {
    const r = await runSimulation({
      ...base(),
      rounds: 2,
      partition: { kind: 'dirichlet', alpha: 0.3 },
      local: { ...base().local, proximalMu: 0.1 },
      server: { name: 'fedadam', lr: 0.03, ...SERVER_OPTIMIZER_DEFAULTS },
      dp: { noiseMultiplier: 1, clipNorm: 0.5, delta: 1e-5 },
    });
    expect(r.rounds.map((x) => x.epsilon)).toEqual([
      epsilonFor(8 / 20, 1, 1, 1e-5),
      epsilonFor(8 / 20, 1, 2, 1e-5),
    ]);
    expect(r.rounds.every((x) => Number.isFinite(x.accuracy))).toBe(true);
  }, 60_000);

  it('Poisson sampling: cohorts vary around q N, thin draws start no round and are not charged', async () => {
    // q = 8 / 20 and a minimum of 8: with seed 1 the draws are 10, 10, 10, 11, 12, 8, 6 (the last is skipped).
    const o: SimulationOptions = {
      ...base(),
      rounds: 7,
      evalEvery: 3,
      sampling: 'poisson',
      minUpdates: 8,
      local: { ...base().local, epochs: 1, batchSize: 48 },
      dp: { noiseMultiplier: 1, clipNorm: 0.5, delta: 1e-5 },
    };
    const r = await runSimulation(o);
    const sizes = r.rounds.map((x) => x.clients);
    expect(sizes).toEqual([10, 10, 10, 11, 12, 8, 0]);
    expect(r.rounds.filter((x) => x.clients > 0).every((x) => x.examples === x.clients * 48)).toBe(true);
    // The accountant counts released rounds only, at q = perRound / clients: the skipped round adds nothing.
    expect(r.rounds.map((x) => x.epsilon)).toEqual(
      [1, 2, 3, 4, 5, 6, 6].map((k) => epsilonFor(0.4, 1, k, 1e-5)),
    );
    // Evaluated on the schedule (rounds 3 and 6) and after the last round, which was skipped.
    expect(r.rounds.map((x) => x.accuracy !== null)).toEqual([false, false, true, false, false, true, true]);
    expect(r.rounds[6].accuracy).toBe(r.rounds[5].accuracy); // a skipped round leaves the model as it was
    // Same seed, same cohorts; a rate above 1 is refused.
    expect((await runSimulation(o)).rounds.map((x) => x.clients)).toEqual(sizes);
    await expect(runSimulation({ ...o, perRound: 21 })).rejects.toThrow(/0 < per-round <= clients/);
  }, 60_000);

  it('same seed, same numbers (without DP, whose noise is drawn from a CSPRNG on purpose)', async () => {
    const o = { ...base(), rounds: 2, perRound: 4 };
    const strip = (r: Awaited<ReturnType<typeof runSimulation>>) => ({
      ...r,
      rounds: r.rounds.map(({ seconds: _, ...rest }) => rest),
    });
    const a = strip(await runSimulation(o));
    expect(strip(await runSimulation(o))).toEqual(a);
    expect(strip(await runSimulation({ ...o, seed: 2 })).rounds).not.toEqual(a.rounds);
  }, 60_000);

  it("lrAt sets each round's client learning rate: a round at lr 0 leaves the model as it was", async () => {
    const o = { ...base(), perRound: 4 };
    const one = await runSimulation({ ...o, rounds: 1 });
    const stopped = await runSimulation({ ...o, rounds: 2, lrAt: (r) => (r === 1 ? 0.05 : 0) });
    expect(stopped.weights).toEqual(one.weights);
    const going = await runSimulation({ ...o, rounds: 2, lrAt: () => 0.05 });
    expect(going.weights).not.toEqual(one.weights);
  }, 60_000);

  it('clients trained in 1 or 2 worker threads give the weights of the sequential path, bit for bit', async () => {
    const o: SimulationOptions = {
      ...base(),
      model: MODELS.tiny,
      train: syntheticDataset({ seed: 1, count: 5 * 16 }),
      test: syntheticDataset({ seed: 2, count: 40 }),
      clients: 5,
      perRound: 3,
      rounds: 2,
    };
    const strip = (r: Awaited<ReturnType<typeof runSimulation>>) => ({
      ...r,
      rounds: r.rounds.map(({ seconds: _, ...rest }) => rest),
    });
    const seq = strip(await runSimulation(o));
    const progress: number[] = [];
    const one = strip(await runSimulation({ ...o, workers: 1 }));
    const two = strip(await runSimulation({ ...o, workers: 2 }, (_, p) => p && progress.push(p.client)));
    expect(Array.from(one.weights)).toEqual(Array.from(seq.weights));
    expect(Array.from(two.weights)).toEqual(Array.from(seq.weights));
    expect(two).toEqual(seq);
    // Training moved the weights (the comparison is not of two untouched initial models).
    const init = buildModel(MODELS.tiny, o.seed);
    const w0 = await getFlatWeights(init);
    init.dispose();
    expect(Array.from(seq.weights)).not.toEqual(Array.from(w0));
    expect(progress).toHaveLength(2 * 3);
  }, 120_000);

  it('in a ring round the threads encode the updates as clients do: the same model as encoding here', async () => {
    // Clip-only DP (z = 0): the ring path with stochastic rounding, whose error is ~1/scale per coordinate.
    const o: SimulationOptions = {
      ...base(),
      rounds: 2,
      perRound: 4,
      dp: { noiseMultiplier: 0, clipNorm: 5, delta: 1e-5 },
    };
    const here = await runSimulation(o);
    const threads = await runSimulation({ ...o, workers: 2 });
    const init = buildModel(MODELS.mlp, o.seed);
    const w0 = await getFlatWeights(init);
    init.dispose();
    let moved = 0;
    let diff = 0;
    for (let i = 0; i < w0.length; i++) {
      moved = Math.max(moved, Math.abs(here.weights[i] - w0[i]));
      diff = Math.max(diff, Math.abs(threads.weights[i] - here.weights[i]));
    }
    expect(moved).toBeGreaterThan(1e-3);
    expect(diff).toBeLessThan(1e-5);
    // A thread given the plan returns the encoded update itself (run.ts refuses a ring round without it).
    const pool = new TrainPool(1, { backend: 'wasm', model: MODELS.mlp });
    try {
      const plan = planEncoding({
        numParams: w0.length,
        maxClients: 4,
        clipNorm: 5,
        coordClip: 5,
        weighting: 'uniform',
        maxExamples: 48,
        noise: null,
      });
      const got = await pool.train({
        weights: w0,
        data: base().train,
        seed: 1,
        local: o.local,
        encode: plan,
      });
      expect(got.ring).toBeInstanceOf(Uint32Array);
      expect(got.ring!.length).toBe(vectorLength(w0.length));
      expect(got.delta.length).toBe(0); // the ring is the update: the float delta is not sent back too
      const plain = await pool.train({ weights: w0, data: base().train, seed: 1, local: o.local });
      expect(plain.ring).toBeUndefined();
    } finally {
      await pool.close();
    }
    // With noise, each thread draws its own (CSPRNG) noise: the rounds still aggregate and learn.
    const noisy = await runSimulation({ ...o, dp: { ...o.dp!, noiseMultiplier: 0.5 }, workers: 2 });
    expect(noisy.rounds.every((x) => x.clients === 4 && x.epsilon! > 0)).toBe(true);
  }, 60_000);

  it('an error in a training thread rejects that client with its message; the thread trains on', async () => {
    const pool = new TrainPool(1, { backend: 'wasm', model: MODELS.mlp });
    try {
      const empty = { x: new Uint8Array(0), y: new Uint8Array(0), n: 0 };
      const init = buildModel(MODELS.mlp, 1);
      const weights = await getFlatWeights(init);
      init.dispose();
      await expect(pool.train({ weights, data: empty, seed: 1, local: base().local })).rejects.toThrow(
        /cannot train on an empty dataset/,
      );
      // The thread survives a task's error and trains the next client.
      const ok = await pool.train({
        weights,
        data: syntheticDataset({ seed: 3, count: 8 }),
        seed: 1,
        local: base().local,
      });
      expect(ok.numExamples).toBe(8);
      expect(ok.delta).toHaveLength(weights.length);
    } finally {
      await pool.close();
    }
    expect(() => new TrainPool(0, { backend: 'wasm', model: MODELS.mlp })).toThrow(/>= 1/);
  }, 60_000);

  it('the CLI writes rounds.csv, rounds.json and an SVG plot', () => {
    const out = mkdtempSync(join(tmpdir(), 'sim-'));
    execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'server/simulation/cli.ts',
        '--clients',
        '10',
        '--per-round',
        '4',
        '--rounds',
        '2',
        '--examples-per-client',
        '24',
        '--test-examples',
        '100',
        '--out',
        out,
      ],
      { stdio: 'pipe' },
    );
    const csv = readFileSync(join(out, 'rounds.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('round,clients,examples,accuracy,loss,epsilon,train_loss,seconds');
    expect(csv).toHaveLength(3);
    const json = JSON.parse(readFileSync(join(out, 'rounds.json'), 'utf8'));
    expect(json.rounds).toHaveLength(2);
    const svg = readFileSync(join(out, 'accuracy.svg'), 'utf8');
    expect(svg).toMatch(/^<svg /);
    expect(svg.match(/<circle /g)).toHaveLength(3); // initial + 2 rounds
  }, 60_000);

  it('--help prints every flag and exits 0; a mistyped flag exits 2 with the flags', () => {
    const help = simulate(['--help']);
    expect(help.status).toBe(0);
    for (const flag of ['--clients', '--examples-per-client', '--cifar-dir', '--seed', '--out', '--help'])
      expect(help.stdout).toContain(flag);
    expect(simulate(['-h']).status).toBe(0);
    const typo = simulate(['--client', '3']);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toMatch(/Unknown option '--client'/);
    expect(typo.stderr).toContain('--clients');
    // Steps replace epochs: naming both is a usage error, whichever comes first (--epochs 1 included).
    for (const args of [
      ['--local-steps', '4', '--epochs', '1'],
      ['--epochs=2', '--local-steps', '4'],
    ]) {
      const both = simulate(args);
      expect(both.status).toBe(2);
      expect(both.stderr).toMatch(/--epochs and --local-steps go apart/);
    }
  }, 60_000);

  it('clientPool draws clients x perClient distinct examples, seeded, and refuses more than there are', () => {
    const train = syntheticDataset({ seed: 4, count: 300 });
    const a = clientPool(train, 4, 20, 1);
    expect(a.n).toBe(80);
    expect(a.x.length).toBe(80 * 3072);
    expect(clientPool(train, 4, 20, 1)).toEqual(a);
    expect(clientPool(train, 4, 20, 2).y).not.toEqual(a.y);
    // Without replacement: every drawn image is a distinct one of the pool's.
    const key = (d: typeof train, i: number): string =>
      Buffer.from(d.x.subarray(i * 3072, (i + 1) * 3072)).toString('base64');
    const pool = new Set(Array.from({ length: train.n }, (_, i) => key(train, i)));
    const drawn = new Set(Array.from({ length: a.n }, (_, i) => key(a, i)));
    expect(drawn.size).toBe(80);
    for (const k of drawn) expect(pool.has(k)).toBe(true);
    expect(clientPool(train, 3, 100, 1).n).toBe(300);
    expect(() => clientPool(train, 4, 76, 1)).toThrow(/304 exceeds the 300/);
    expect(() => clientPool(train, 4, 0, 1)).toThrow(/>= 1/);
  });

  it('with --cifar-dir the CLI honours --examples-per-client (a tiny CIFAR-format fixture)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cifar-'));
    CIFAR_TRAIN_FILES.forEach((f, i) =>
      writeFileSync(join(dir, f), encodeCifar10(syntheticDataset({ seed: 100 + i, count: 60 }))),
    );
    writeFileSync(join(dir, CIFAR_TEST_FILE), encodeCifar10(syntheticDataset({ seed: 99, count: 50 })));
    const out = mkdtempSync(join(tmpdir(), 'sim-'));
    const args = [
      '--cifar-dir',
      dir,
      '--model',
      'mlp',
      '--clients',
      '5',
      '--per-round',
      '3',
      '--rounds',
      '1',
    ];
    const run = simulate([...args, '--examples-per-client', '12', '--test-examples', '50', '--out', out]);
    expect(run.status, run.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(out, 'rounds.json'), 'utf8'));
    expect(json.rounds[0].clients).toBe(3);
    expect(json.rounds[0].examples).toBe(3 * 12); // not 3 x 300/5: the pool is 5 x 12 examples
    // More than the 300 training records: a clear error, not a silent cap.
    const tooMany = simulate([...args, '--examples-per-client', '61', '--out', out]);
    expect(tooMany.status).not.toBe(0);
    expect(tooMany.stderr).toMatch(/305 exceeds the 300 training examples/);
  }, 60_000);
});

describe("aggregate noise: one draw for the round's sum", () => {
  /** The decoded mean of n clients' updates, each `delta`, with the noise drawn per client or once. */
  function decodedMean(
    mode: 'per-client' | 'aggregate',
    n: number,
    d: number,
    delta: Float32Array,
  ): Float32Array {
    const plan = planEncoding({
      numParams: d,
      maxClients: n,
      clipNorm: 1,
      coordClip: 1,
      weighting: 'uniform',
      maxExamples: 1,
      noise: { multiplier: 1, minSurvivors: n, bitStd: 0.5 },
    });
    const rand = createSecureRandom();
    const clientPlan = mode === 'aggregate' ? { ...plan, noiseVariance: 0, bitNoiseVariance: 0 } : plan;
    const sum = new Uint32Array(vectorLength(d));
    for (let k = 0; k < n; k++) addInto(sum, encodeContribution(delta, 1, clientPlan, rand).ring);
    if (mode === 'aggregate') addInto(sum, roundNoise(plan, n, d, rand));
    return decodeAggregate(sum, n, plan).mean;
  }

  it('the decoded mean carries the same noise either way: centred on the true mean, std z C / n', () => {
    const n = 40;
    const d = 30_000;
    const delta = Float32Array.from({ length: d }, (_, i) => ((i % 7) - 3) * 1e-3); // norm < C = 1
    for (const mode of ['per-client', 'aggregate'] as const) {
      const mean = decodedMean(mode, n, d, delta);
      let s1 = 0;
      let s2 = 0;
      for (let i = 0; i < d; i++) {
        const e = mean[i] - delta[i];
        s1 += e;
        s2 += e * e;
      }
      const sd = Math.sqrt(s2 / d - (s1 / d) ** 2);
      const want = 1 / n; // z C / n: the sum carries z C, the mean divides by n
      // The sample std of 30 000 near-normal draws is within 0.4% (1 SE); the bands are ~8 SE, rounding aside.
      expect(sd / want, mode).toBeGreaterThan(0.97);
      expect(sd / want, mode).toBeLessThan(1.03);
      expect(Math.abs(s1 / d), mode).toBeLessThan((5 * want) / Math.sqrt(d));
    }
  });

  it("runSimulation with aggregate noise trains and charges as per-client (the accountant's epsilon, same z)", async () => {
    const o: SimulationOptions = {
      ...base(),
      rounds: 3,
      dp: { noiseMultiplier: 0.8, clipNorm: 0.5, delta: 1e-5 },
      noise: 'aggregate',
    };
    const r = await runSimulation(o);
    const q = o.perRound / o.clients;
    expect(r.rounds.map((x) => x.epsilon)).toEqual([1, 2, 3].map((t) => epsilonFor(q, 0.8, t, 1e-5)));
    expect(r.rounds.every((x) => x.clients === o.perRound)).toBe(true);
    expect(r.weights.every(Number.isFinite)).toBe(true);
  });
});
