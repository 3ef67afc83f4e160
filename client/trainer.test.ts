import { beforeEach, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { buildModel } from '../shared/model/build.ts';
import { getFlatWeights, setFlatWeights } from '../shared/model/weights.ts';
import { MODELS } from '../shared/model/spec.ts';
import { LOCAL_MOMENTUM } from '../shared/protocol/messages.ts';
import { LocalTrainer, type TrainProgress } from './trainer.ts';
import './wasm-backend.ts';

const spec = MODELS.tiny;

describe('LocalTrainer', () => {
  // wasm: the fast CPU path (its gradients are checked against cpu in wasm-train-kernels.test.ts and below).
  beforeEach(async () => {
    await tf.setBackend('wasm');
  });

  it('returns w_local - w_global, reduces loss over epochs, reports progress, leaks nothing', async () => {
    const data = syntheticDataset({ seed: 11, count: 32 });
    const trainer = new LocalTrainer(spec, data);
    const init = buildModel(spec, 3);
    const w0 = await getFlatWeights(init);
    const before = tf.memory().numTensors;
    const progress: TrainProgress[] = [];
    const r = await trainer.train(
      w0,
      { epochs: 3, batchSize: 8, learningRate: 0.005, optimizer: 'adam' },
      (p) => progress.push(p),
    );
    expect(tf.memory().numTensors).toBe(before);
    expect(r.numExamples).toBe(32);
    expect(r.delta.length).toBe(w0.length);
    // Applying the delta to w0 reproduces the trained weights exactly.
    const trained = await getFlatWeights(trainer.model);
    for (let i = 0; i < w0.length; i += 997) expect(w0[i] + r.delta[i]).toBeCloseTo(trained[i], 5);
    const epochLosses = progress.filter((p) => p.loss !== undefined).map((p) => p.loss!);
    expect(epochLosses).toHaveLength(3);
    expect(epochLosses[2]).toBeLessThan(epochLosses[0]);
    expect(progress.filter((p) => p.loss === undefined)).toHaveLength(3 * 3); // 4 batches/epoch, the last carries the loss
    // The trained model beats the initial one on its own data.
    setFlatWeights(init, spec, w0);
    const evalLoss = (m: tf.LayersModel): number =>
      tf.tidy(
        () =>
          tf.metrics
            .categoricalCrossentropy(
              tf.oneHot(tf.tensor1d(data.y, 'int32'), 10).toFloat(),
              m.predict(
                tf.tensor4d(
                  Float32Array.from(data.x, (v) => v / 255),
                  [32, 32, 32, 3],
                ),
              ) as tf.Tensor,
            )
            .mean()
            .dataSync()[0],
      );
    expect(evalLoss(trainer.model)).toBeLessThan(evalLoss(init));
    trainer.dispose();
    init.dispose();
  });

  it('uses the given global weights as its starting point each round (no state carried over)', async () => {
    const trainer = new LocalTrainer(spec, syntheticDataset({ seed: 2, count: 8 }));
    const w0 = await getFlatWeights(trainer.model);
    const cfg = { epochs: 1, batchSize: 8, learningRate: 0, optimizer: 'sgd' as const };
    const r = await trainer.train(w0, cfg);
    expect(r.delta.every((v) => v === 0)).toBe(true); // lr 0: nothing moves
    trainer.dispose();
  });

  it('FedProx: with full-batch SGD, step 2 is the plain step 2 minus lr * mu * (w1 - w0), exactly as derived', async () => {
    // Step 1 starts at the anchor, so the proximal gradient mu (w - w0) is zero and both runs reach the same
    // w1; step 2 then differs by exactly -lr * mu * (w1 - w0).
    const trainer = new LocalTrainer(spec, syntheticDataset({ seed: 5, count: 8 }));
    const w0 = await getFlatWeights(trainer.model);
    const base = { batchSize: 8, learningRate: 0.1, optimizer: 'sgd' as const };
    const before = tf.memory().numTensors;
    const one = await trainer.train(w0, { ...base, epochs: 1 });
    const plain = await trainer.train(w0, { ...base, epochs: 2 });
    const prox = await trainer.train(w0, { ...base, epochs: 2, proximalMu: 2 });
    expect(tf.memory().numTensors).toBe(before);
    let maxErr = 0;
    let moved = 0;
    for (let i = 0; i < w0.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(prox.delta[i] - (plain.delta[i] - 0.1 * 2 * one.delta[i])));
      moved = Math.max(moved, Math.abs(prox.delta[i] - plain.delta[i]));
    }
    expect(moved).toBeGreaterThan(1e-4); // the term does something
    expect(maxErr).toBeLessThan(2e-6);
    trainer.dispose();
  });

  it('logitAdjust: the output layer of a class the client lacks does not move; plain cross-entropy moves it', async () => {
    // Only classes 0..2 (classWeights): under the adjusted loss the logits of 3..9 get exactly zero gradient,
    // so their bias and kernel columns in the last dense layer stay where the global model put them, bit
    // for bit, under SGD and under Adam (which would blow a round-off residue up to lr-sized steps).
    const data = syntheticDataset({ seed: 4, count: 24, classWeights: [1, 1, 1, 0, 0, 0, 0, 0, 0, 0] });
    expect(new Set(data.y).size).toBe(3);
    const trainer = new LocalTrainer(spec, data);
    const w0 = await getFlatWeights(trainer.model);
    const cfg = { epochs: 2, batchSize: 8, learningRate: 0.1, optimizer: 'sgd' as const };
    const before = tf.memory().numTensors;
    const adjusted = await trainer.train(w0, { ...cfg, logitAdjust: true });
    const adam = await trainer.train(w0, {
      ...cfg,
      learningRate: 0.01,
      optimizer: 'adam',
      logitAdjust: true,
    });
    const plain = await trainer.train(w0, cfg);
    expect(tf.memory().numTensors).toBe(before);
    // Flat weights end with the logits layer: kernel [units, 10], then bias [10].
    const units = trainer.model.getLayer('logits').getWeights()[0].shape[0];
    const lastMoves = (delta: Float32Array, classes: number[]): number => {
      const bias = delta.length - 10;
      const kernel = bias - units * 10;
      let m = 0;
      for (const c of classes) {
        m = Math.max(m, Math.abs(delta[bias + c]));
        for (let u = 0; u < units; u++) m = Math.max(m, Math.abs(delta[kernel + u * 10 + c]));
      }
      return m;
    };
    const absent = [3, 4, 5, 6, 7, 8, 9];
    for (const r of [adjusted, adam]) {
      expect(lastMoves(r.delta, absent)).toBe(0);
      expect(lastMoves(r.delta, [0, 1, 2])).toBeGreaterThan(1e-3);
    }
    expect(lastMoves(plain.delta, absent)).toBeGreaterThan(1e-3);
    trainer.dispose();
  });

  it('momentum: with full-batch steps, step 2 is the plain step 2 plus 0.9 times step 1, exactly as derived', async () => {
    // Heavy ball: v1 = g0, v2 = 0.9 g0 + g1. Step 1 equals plain SGD's; step 2 adds -lr * 0.9 * g0, which
    // is 0.9 times the first step's delta.
    const trainer = new LocalTrainer(spec, syntheticDataset({ seed: 5, count: 8 }));
    const w0 = await getFlatWeights(trainer.model);
    const sgd = { batchSize: 8, learningRate: 0.1, optimizer: 'sgd' as const };
    const before = tf.memory().numTensors;
    const one = await trainer.train(w0, { ...sgd, epochs: 1 });
    const plain = await trainer.train(w0, { ...sgd, epochs: 2 });
    const heavy = await trainer.train(w0, { ...sgd, optimizer: 'momentum', epochs: 2 });
    expect(tf.memory().numTensors).toBe(before);
    let maxErr = 0;
    let moved = 0;
    for (let i = 0; i < w0.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(heavy.delta[i] - (plain.delta[i] + LOCAL_MOMENTUM * one.delta[i])));
      moved = Math.max(moved, Math.abs(heavy.delta[i] - plain.delta[i]));
    }
    expect(moved).toBeGreaterThan(1e-4);
    expect(maxErr).toBeLessThan(2e-6);
    // No momentum crosses rounds: a second one-step round from w0 takes plain SGD's first step again.
    const again = await trainer.train(w0, { ...sgd, optimizer: 'momentum', epochs: 1 });
    for (let i = 0; i < w0.length; i += 97) expect(again.delta[i]).toBeCloseTo(one.delta[i], 6);
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
  });

  it('trains on wasm (with our gradient kernels) to the same update as on cpu', async () => {
    // Full-batch SGD: the shuffled order only permutes a sum, so both backends take the same steps.
    const data = syntheticDataset({ seed: 8, count: 16 });
    const cfg = { epochs: 3, batchSize: 16, learningRate: 0.05, optimizer: 'sgd' as const };
    const deltas: Float32Array[] = [];
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const t = new LocalTrainer(spec, data);
      const w0 = await getFlatWeights(t.model);
      deltas.push((await t.train(w0, cfg)).delta);
      t.dispose();
    }
    let err = 0;
    let size = 0;
    for (let i = 0; i < deltas[0].length; i++) {
      err = Math.max(err, Math.abs(deltas[0][i] - deltas[1][i]));
      size = Math.max(size, Math.abs(deltas[0][i]));
    }
    expect(size).toBeGreaterThan(1e-3);
    expect(err / size).toBeLessThan(1e-3);
  });

  it('augmentation (crop + mirror) changes what the model sees, reproducibly per seed, and leaks nothing', async () => {
    const data = syntheticDataset({ seed: 12, count: 16 });
    const cfg = { epochs: 1, batchSize: 8, learningRate: 0.05, optimizer: 'sgd' as const };
    const run = async (augment: boolean, seed: number): Promise<Float32Array> => {
      const t = new LocalTrainer(spec, data, seed);
      const init = buildModel(spec, 3);
      const w0 = await getFlatWeights(init);
      init.dispose();
      try {
        const before = tf.memory().numTensors;
        const r = await t.train(w0, { ...cfg, augment });
        expect(tf.memory().numTensors).toBe(before);
        return r.delta;
      } finally {
        t.dispose();
      }
    };
    const plain = await run(false, 1);
    const aug1 = await run(true, 1);
    const aug1again = await run(true, 1);
    const aug2 = await run(true, 2);
    const diff = (a: Float32Array, b: Float32Array) =>
      a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    expect(diff(aug1, aug1again)).toBeLessThan(1e-6);
    expect(diff(aug1, plain)).toBeGreaterThan(1e-4);
    expect(diff(aug1, aug2)).toBeGreaterThan(1e-4);
  });

  it('same seed, same update bit for bit (seeded batch order); another seed shuffles differently', async () => {
    // Several batches per epoch, so the order changes the steps; Math.random is left alone on purpose.
    const data = syntheticDataset({ seed: 13, count: 24 });
    const cfg = { epochs: 2, batchSize: 4, learningRate: 0.05, optimizer: 'sgd' as const };
    const init = buildModel(spec, 3);
    const w0 = await getFlatWeights(init);
    init.dispose();
    const run = async (seed: number): Promise<Float32Array> => {
      const t = new LocalTrainer(spec, data, seed);
      try {
        return (await t.train(w0, cfg)).delta;
      } finally {
        t.dispose();
      }
    };
    const a = await run(4);
    const b = await run(4);
    const c = await run(5);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(a.reduce((m, v, i) => Math.max(m, Math.abs(v - c[i])), 0)).toBeGreaterThan(1e-5);
  });

  it('steps: a fixed number of full batches whatever the data size; whole epochs of steps equal epochs bit for bit', async () => {
    const init = buildModel(spec, 3);
    const w0 = await getFlatWeights(init);
    init.dispose();
    const sgd = { batchSize: 4, learningRate: 0.05, optimizer: 'sgd' as const };
    const run = async (count: number, cfg: { epochs: number; steps?: number }) => {
      const t = new LocalTrainer(spec, syntheticDataset({ seed: 13, count }), 4);
      const progress: TrainProgress[] = [];
      try {
        const before = tf.memory().numTensors;
        const r = await t.train(w0, { ...sgd, ...cfg }, (p) => progress.push(p));
        expect(tf.memory().numTensors).toBe(before);
        return { r, progress };
      } finally {
        t.dispose();
      }
    };
    // 12 images, batch 4: 6 steps are two epochs of the same seeded permutations, the same update.
    const epochs = await run(12, { epochs: 2 });
    const steps = await run(12, { epochs: 1, steps: 6 });
    expect(Buffer.from(steps.r.delta.buffer).equals(Buffer.from(epochs.r.delta.buffer))).toBe(true);
    expect(epochs.r.passes).toBe(24);
    expect(steps.r.passes).toBe(24);
    // Clients of 3, 6 and 40 all take 5 steps (epochs ignored): full batches of 4, batches across shuffles
    // (6 images), and all of its 3 images a step for a client smaller than a batch.
    for (const [count, passes] of [
      [3, 15],
      [6, 20],
      [40, 20],
    ]) {
      const { r, progress } = await run(count, { epochs: 3, steps: 5 });
      expect(progress.map((p) => p.batch)).toEqual([1, 2, 3, 4, 5]);
      expect(progress.at(-1)).toMatchObject({ epoch: 0, epochs: 1, batches: 5 });
      expect(r.passes).toBe(passes);
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(r.numExamples).toBe(count); // the aggregate still weighs it by its data, not its steps
    }
    // No more than 100 epochs of the client's own data: 100 steps of its 3 images pass, 101 are refused
    // before anything is allocated, and the message does not tell the server how many images it holds.
    expect((await run(3, { epochs: 1, steps: 100 })).r.passes).toBe(300);
    const small = new LocalTrainer(spec, syntheticDataset({ seed: 13, count: 3 }), 4);
    const before = tf.memory().numTensors;
    const refused = small.train(w0, { ...sgd, epochs: 1, steps: 101 });
    await expect(refused).rejects.toThrow(
      "plan.steps x batchSize asks more than 100 epochs of this client's data",
    );
    expect(tf.memory().numTensors).toBe(before);
    small.dispose();
  });

  it('reseed(round): a round trains the same batches whatever the trainer trained before; round 0 is as built', async () => {
    const data = syntheticDataset({ seed: 13, count: 24 });
    const cfg = { epochs: 1, batchSize: 4, learningRate: 0.05, optimizer: 'sgd' as const, augment: true };
    const init = buildModel(spec, 3);
    const w0 = await getFlatWeights(init);
    init.dispose();
    const bits = (d: Float32Array): Buffer => Buffer.from(d.buffer);
    const kept = new LocalTrainer(spec, data, 4);
    const fresh = new LocalTrainer(spec, data, 4);
    try {
      const first = await kept.train(w0, cfg); // round 0, unseeded: as built
      kept.reseed(0);
      expect(bits((await kept.train(w0, cfg)).delta).equals(bits(first.delta))).toBe(true);
      kept.reseed(7);
      const seven = await kept.train(w0, cfg);
      expect(bits(seven.delta).equals(bits(first.delta))).toBe(false); // another order and other crops
      // A trainer that trained other rounds before (kept) and one that did not (fresh) agree on round 7.
      await fresh.train(w0, cfg);
      await fresh.train(w0, cfg);
      fresh.reseed(7);
      expect(bits((await fresh.train(w0, cfg)).delta).equals(bits(seven.delta))).toBe(true);
    } finally {
      kept.dispose();
      fresh.dispose();
    }
  });

  it('refuses an empty dataset and wrong-size weights', async () => {
    expect(() => new LocalTrainer(spec, syntheticDataset({ seed: 1, count: 0 }))).toThrow(/empty/);
    const t = new LocalTrainer(spec, syntheticDataset({ seed: 1, count: 4 }));
    await expect(
      t.train(new Float32Array(5), { epochs: 1, batchSize: 4, learningRate: 0.1, optimizer: 'sgd' }),
    ).rejects.toThrow(/needs/);
    t.dispose();
  });
});
