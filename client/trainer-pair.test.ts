import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { MessageChannel } from 'node:worker_threads';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { examplesFromDataset } from '../shared/data/examples.ts';
import { buildModel } from '../shared/model/build.ts';
import { MODELS } from '../shared/model/spec.ts';
import { presetTask } from '../shared/model/task.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import type { BackendName, TrainConfig } from '../shared/protocol/messages.ts';
import { createTrainerHost } from './trainer-host.ts';
import { createTrainerPair, defaultTrainThreads } from './trainer-pair.ts';
import { createInlineTrainerPort, type TrainerPort } from './trainer-port.ts';
import './wasm-backend.ts';

const plan: TrainConfig = { epochs: 1, batchSize: 8, learningRate: 0.01, optimizer: 'momentum' };
const task = presetTask('tiny', plan);
const examples = examplesFromDataset(syntheticDataset({ seed: 4, count: 20 }));
const init = (backends: BackendName[]) =>
  ({ type: 'init', task, data: { kind: 'inline', examples }, serverUrl: 'http://x', backends }) as const;
// Node's MessagePort has the browser's onmessage / postMessage / close.
const channel = () => new MessageChannel() as unknown as { port1: MessagePort; port2: MessagePort };
const inline = (): TrainerPort => createInlineTrainerPort(createTrainerHost);

async function weights(): Promise<Float32Array> {
  const m = buildModel(MODELS.tiny, 3);
  const w = await getFlatWeights(m);
  m.dispose();
  return w;
}

describe('createTrainerPair (two trainers as one, each half of every batch)', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('pairs on a CPU backend, and trains to what one trainer alone gets, to float rounding', async () => {
    const w0 = await weights();
    const pair = createTrainerPair(inline(), async () => inline(), channel);
    expect((await pair.init(init(['wasm']))).backend).toBe('wasm');
    expect(pair.threads).toBe(2);
    const alone = inline();
    await alone.init(init(['wasm']));
    const a = await pair.train(1, w0.slice().buffer, plan, () => {});
    const b = await alone.train(1, w0.slice().buffer, plan, () => {});
    const da = new Float32Array(a.delta);
    const db = new Float32Array(b.delta);
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < da.length; i++) {
      diff = Math.max(diff, Math.abs(da[i] - db[i]));
      scale = Math.max(scale, Math.abs(db[i]));
    }
    expect(scale).toBeGreaterThan(1e-4);
    expect(diff).toBeLessThan(1e-3 * scale);
    expect(a.numExamples).toBe(20);
    expect(a.pairedSteps).toBe(3); // 20 examples in batches of 8, each split over the two
    expect(b.pairedSteps).toBe(0);
    pair.terminate();
    alone.terminate();
  });

  it('a second trainer that cannot start: one thread, and training goes on', async () => {
    const pair = createTrainerPair(
      inline(),
      async () => {
        throw new Error('no second worker to be had');
      },
      channel,
    );
    await pair.init(init(['wasm']));
    expect(pair.threads).toBe(1);
    const r = await pair.train(1, (await weights()).slice().buffer, plan, () => {});
    expect(r.numExamples).toBe(20);
    pair.terminate();
  });

  it('a second trainer that dies mid-round: that round fails, the pair ends, the next round trains alone', async () => {
    const w0 = await weights();
    let dying = true;
    const pair = createTrainerPair(
      inline(),
      async () => {
        const real = inline();
        // The real trainer, whose train() fails as a crashed worker's would, without ever answering.
        return {
          ...real,
          where: real.where,
          init: (r) => real.init(r),
          peer: (p, rank) => real.peer!(p, rank),
          train: (...args) =>
            dying ? Promise.reject(new Error('worker failed: out of memory')) : real.train(...args),
          terminate: () => real.terminate(),
        };
      },
      channel,
    );
    await pair.init(init(['wasm']));
    expect(pair.threads).toBe(2);
    // The first trainer waits at its first swap for a half that never comes; ending the pair releases it.
    await expect(pair.train(1, w0.slice().buffer, plan, () => {})).rejects.toThrow(
      /out of memory|pair closed/,
    );
    expect(pair.threads).toBe(1);
    dying = false;
    const r = await pair.train(2, w0.slice().buffer, plan, () => {});
    expect(r.numExamples).toBe(20);
    pair.terminate();
  });

  /** A real second trainer, with what the test wants changed, and a record of what it was asked. */
  function wrapped(change: Partial<TrainerPort> = {}) {
    const real = inline();
    const seen = { inits: [] as Parameters<TrainerPort['init']>[0][], terminated: false };
    const port: TrainerPort = {
      where: real.where,
      init: (r) => (seen.inits.push(r), real.init(r)),
      train: (...args) => real.train(...args),
      peer: (p, rank) => real.peer!(p, rank),
      terminate: () => ((seen.terminated = true), real.terminate()),
      ...change,
    };
    return { port, real, seen };
  }

  it("the second trainer gets the first's examples and backend, and fetches nothing", async () => {
    const w = wrapped();
    const pair = createTrainerPair(inline(), async () => w.port, channel);
    await pair.init(init(['wasm']));
    expect(pair.threads).toBe(2);
    expect(w.seen.inits).toHaveLength(1);
    const got = w.seen.inits[0];
    expect(got.backends).toEqual(['wasm']);
    expect(got.data.kind).toBe('inline');
    const ex = (got.data as { examples: typeof examples }).examples;
    expect(ex.n).toBe(20);
    expect(Array.from(ex.y)).toEqual(Array.from(examples.y));
    expect(ex.x).toEqual(examples.x);
    pair.terminate();
  });

  it('a round that fails alike on both (a bad plan) keeps the pair; the next round trains paired', async () => {
    const w0 = await weights();
    const pair = createTrainerPair(inline(), async () => wrapped().port, channel);
    await pair.init(init(['wasm']));
    const bad = { ...plan, optimizer: 'bogus' } as unknown as TrainConfig;
    await expect(pair.train(1, w0.slice().buffer, bad, () => {})).rejects.toThrow(/unknown local optimizer/);
    expect(pair.threads).toBe(2);
    const r = await pair.train(2, w0.slice().buffer, plan, () => {});
    expect(r.pairedSteps).toBe(3);
    pair.terminate();
  });

  it('a second trainer that never answers after the last swap: let go after settleMs, the round kept', async () => {
    const w0 = await weights();
    const w = wrapped();
    w.port.train = (...args) => (void w.real.train(...args), new Promise(() => {}));
    const pair = createTrainerPair(inline(), async () => w.port, channel, { settleMs: 200 });
    await pair.init(init(['wasm']));
    const r = await pair.train(1, w0.slice().buffer, plan, () => {});
    expect(r.pairedSteps).toBe(3); // both halves came; only the second's own answer did not
    expect(pair.threads).toBe(1);
    expect(w.seen.terminated).toBe(true);
    expect((await pair.train(2, w0.slice().buffer, plan, () => {})).pairedSteps).toBe(0);
    pair.terminate();
  });

  it('a CPU share below 1: the first trains alone (a second would double what the page allowed)', async () => {
    const pair = createTrainerPair(inline(), async () => wrapped().port, channel);
    await pair.init(init(['wasm']));
    pair.pace!({ paused: false, cpuShare: 0.5 });
    expect(pair.threads).toBe(1);
    const r = await pair.train(1, (await weights()).slice().buffer, plan, () => {});
    expect(r.pairedSteps).toBe(0);
    pair.pace!({ paused: false, cpuShare: 1 });
    const paired = await pair.train(2, (await weights()).slice().buffer, plan, () => {});
    expect(paired.pairedSteps).toBe(3);
    // Only the first trained round 1: round 2 still splits the batches of one trainer alone at round 2
    // (each side reseeds its batch order by the round), to float rounding.
    const alone = inline();
    await alone.init(init(['wasm']));
    const solo = await alone.train(2, (await weights()).slice().buffer, plan, () => {});
    const [da, db] = [new Float32Array(paired.delta), new Float32Array(solo.delta)];
    const scale = db.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(scale).toBeGreaterThan(1e-4);
    expect(da.reduce((m, v, i) => Math.max(m, Math.abs(v - db[i])), 0)).toBeLessThan(1e-3 * scale);
    alone.terminate();
    pair.terminate();
  });

  it('terminated while the second starts: the second is let go, not kept', async () => {
    const w = wrapped();
    const pair: TrainerPort = createTrainerPair(inline(), async () => w.port, channel);
    w.port.init = (r) => (pair.terminate(), w.real.init(r));
    await pair.init(init(['wasm']));
    expect(w.seen.terminated).toBe(true);
    expect(pair.threads).toBe(1);
  });

  it('defaults to two threads only on the demo page of a machine with 4 or more cores', () => {
    expect(defaultTrainThreads('demo', 4)).toBe(2);
    expect(defaultTrainThreads('demo', 2)).toBe(1);
    expect(defaultTrainThreads('demo', undefined)).toBe(1);
    expect(defaultTrainThreads('embed', 16)).toBe(1);
    expect(defaultTrainThreads('swarm', 16)).toBe(1);
  });
});
