import { beforeEach, describe, expect, it } from 'vitest';
import { MessageChannel } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { buildModel } from '../shared/model/build.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import { MODELS } from '../shared/model/spec.ts';
import type { TrainConfig } from '../shared/protocol/messages.ts';
import { combineHalves, LocalTrainer } from './trainer.ts';
import { pairedExchanges, portExchange, type PortLike } from './grad-exchange.ts';
import './wasm-backend.ts';

const spec = MODELS.tiny;

async function solo(n: number, cfg: TrainConfig, w0: Float32Array): Promise<Float32Array> {
  const t = new LocalTrainer(spec, syntheticDataset({ seed: 5, count: n }), 9);
  const r = await t.train(w0, cfg);
  t.dispose();
  expect(r.pairMs).toEqual({ grad: 0, wait: 0, apply: 0 }); // alone: no paired step
  return r.delta;
}

async function pair(n: number, cfg: TrainConfig, w0: Float32Array) {
  const [e0, e1] = pairedExchanges();
  const a = new LocalTrainer(spec, syntheticDataset({ seed: 5, count: n }), 9);
  const b = new LocalTrainer(spec, syntheticDataset({ seed: 5, count: n }), 9);
  const before = tf.memory().numTensors;
  const [ra, rb] = await Promise.all([
    a.train(w0, cfg, undefined, undefined, e0),
    b.train(w0, cfg, undefined, undefined, e1),
  ]);
  const leaked = tf.memory().numTensors - before;
  a.dispose();
  b.dispose();
  return { ra, rb, leaked };
}

function maxAbsDiff(x: Float32Array, y: Float32Array): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

describe('data-parallel training (two trainers, each half of every batch)', () => {
  beforeEach(async () => {
    await tf.setBackend('wasm');
  });

  const w0 = async (): Promise<Float32Array> => {
    const m = buildModel(spec, 3);
    const w = await getFlatWeights(m);
    m.dispose();
    return w;
  };

  // 21 examples in batches of 8: halves 4/4, 4/4 and 3/2; 17: the last batch of 1 leaves rank 1 nothing.
  for (const [n, cfg] of [
    [21, { epochs: 2, batchSize: 8, learningRate: 0.01, optimizer: 'momentum', augment: true }],
    [17, { epochs: 2, batchSize: 8, learningRate: 0.002, optimizer: 'adam', proximalMu: 0.1 }],
    [16, { epochs: 1, batchSize: 16, learningRate: 0.05, optimizer: 'sgd', logitAdjust: true }],
    // Fixed steps: 3 batches of 4 from 6 examples, the second across two shuffles.
    [6, { epochs: 1, steps: 3, batchSize: 4, learningRate: 0.05, optimizer: 'sgd' }],
  ] as [number, TrainConfig][]) {
    it(`both sides end on the same update bit for bit, the one training alone gives to float rounding (${cfg.optimizer}, n ${n}${cfg.steps ? `, ${cfg.steps} steps` : ''})`, async () => {
      const w = await w0();
      const { ra, rb, leaked } = await pair(n, cfg, w);
      expect(leaked).toBe(0);
      expect(rb.delta).toEqual(ra.delta);
      expect(ra.numExamples).toBe(n);
      // Each side accounts its paired steps' time: its half, its wait, the apply; within its training time.
      for (const r of [ra, rb]) {
        const { grad, wait, apply } = r.pairMs;
        expect(grad).toBeGreaterThan(0);
        expect(apply).toBeGreaterThan(0);
        expect(wait).toBeGreaterThanOrEqual(0);
        expect(grad + wait + apply).toBeLessThanOrEqual(r.trainMs);
      }
      const alone = await solo(n, cfg, w);
      const scale = Math.max(...alone.map(Math.abs));
      expect(scale).toBeGreaterThan(1e-4); // it trained
      // Same batches, same crops; only the order of float additions differs.
      expect(maxAbsDiff(ra.delta, alone)).toBeLessThan(1e-3 * scale);
      expect(ra.loss).toBeCloseTo((await lossAlone(n, cfg, w)) ?? NaN, 3);
    });
  }

  async function lossAlone(n: number, cfg: TrainConfig, w: Float32Array): Promise<number> {
    const t = new LocalTrainer(spec, syntheticDataset({ seed: 5, count: n }), 9);
    const r = await t.train(w, cfg);
    t.dispose();
    return r.loss;
  }

  it('combineHalves weighs each half by its examples, and passes a lone half through', () => {
    const a = { n: 3, loss: 1, grad: Float32Array.of(1, 2, 4) };
    const b = { n: 1, loss: 2, grad: Float32Array.of(5, 6, 0) };
    expect(Array.from(combineHalves(a, b))).toEqual([2, 3, 3]);
    expect(combineHalves(a, { n: 0, loss: 0, grad: new Float32Array(0) })).toBe(a.grad);
    expect(() => combineHalves(a, { n: 1, loss: 0, grad: new Float32Array(2) })).toThrow(/3 and 2 values/);
  });
});

describe('portExchange (the pair over a MessageChannel)', () => {
  const half = (v: number) => ({ n: 2, loss: v, grad: Float32Array.of(v, v) });
  const channel = () => {
    const { port1, port2 } = new MessageChannel();
    const wrap = (p: typeof port1): PortLike => {
      const like: PortLike = {
        postMessage: (m) => p.postMessage(m),
        onmessage: null,
        close: () => p.close(),
      };
      p.on('message', (data) => like.onmessage?.({ data }));
      return like;
    };
    return [wrap(port1), wrap(port2)] as const;
  };

  it('swaps each step in order, in both directions', async () => {
    const [p0, p1] = channel();
    const a = portExchange(p0, 0);
    const b = portExchange(p1, 1);
    for (let s = 1; s <= 3; s++) {
      const [ga, gb] = await Promise.all([a.swap(half(s)), b.swap(half(10 * s))]);
      expect(Array.from(ga.grad)).toEqual([10 * s, 10 * s]);
      expect(Array.from(gb.grad)).toEqual([s, s]);
    }
    a.close('done');
    b.close('done');
  });

  it('a peer a step ahead, a malformed message, or a close: the pending swap fails, and every later one', async () => {
    const [p0, p1] = channel();
    const a = portExchange(p0, 0);
    // Step 1 from the peer while this side is at step 0.
    p1.postMessage({ type: 'grad', step: 1, n: 2, loss: 0, grad: Float32Array.of(0, 0) });
    await expect(a.swap(half(1))).rejects.toThrow(/peer is at step 1, this side at 0/);
    await expect(a.swap(half(1))).rejects.toThrow(/step 1/);

    const [q0, q1] = channel();
    const c = portExchange(q0, 0);
    const pending = c.swap(half(1));
    q1.postMessage({ type: 'grad', step: 0, n: 2, loss: 0, grad: [0, 0] });
    await expect(pending).rejects.toThrow(/malformed/);

    // Rank 0's patience: a peer that says nothing fails the swap, and the pair with it.
    const [s0] = channel();
    const e = portExchange(s0, 0);
    await expect(e.swap(half(1), 50)).rejects.toThrow(/sent no gradient within 50 ms/);
    await expect(e.swap(half(1))).rejects.toThrow(/within 50 ms/);

    const [r0] = channel();
    const d = portExchange(r0, 1);
    const hung = d.swap(half(1));
    d.close('the other worker failed');
    await expect(hung).rejects.toThrow(/closed: the other worker failed/);
    await expect(d.swap(half(1))).rejects.toThrow(/closed/);
  });
});
