/**
 * One simulation training thread (server/simulation/pool.ts): its own tfjs with the backend it was started
 * with, the client's LocalTrainer, one task at a time. Every task carries all it depends on (weights, data,
 * seed, settings), so a client trains to the same bits here as in the main thread on the same backend.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import '../../client/wasm-backend.ts';
import { LocalTrainer } from '../../client/trainer.ts';
import { createSecureRandom } from '../../shared/dp/secure-random.ts';
import { encodeContribution } from '../../shared/fl/encoding.ts';
import { asRuntime, type ModelRuntime } from '../../shared/model/task-build.ts';
import type { PoolInit, PoolReply, PoolTask } from './pool.ts';

const init = workerData as PoolInit;
const port = parentPort;
if (!port) throw new Error('train-worker.ts runs as a worker thread (server/simulation/pool.ts)');
const ready = tf.setBackend(init.backend).then((ok) => {
  if (!ok) throw new Error(`tfjs backend ${init.backend} did not initialise in a worker thread`);
});

const rand = createSecureRandom();
/**
 * One model for every task: building a tfjs model per client cost more than a 5-image step, and train()
 * overwrites all its weights first, so each client trains to the same bits as on a fresh one.
 */
let runtime: ModelRuntime | null = null;

port.on('message', (t: PoolTask) => {
  void (async (): Promise<PoolReply> => {
    try {
      await ready;
      runtime ??= asRuntime(init.model);
      const trainer = new LocalTrainer(runtime, t.data, t.seed, false);
      try {
        const r = await trainer.train(t.weights, t.local);
        const ring = t.encode
          ? encodeContribution(r.delta, r.numExamples, t.encode, rand, r.loss).ring
          : undefined;
        const delta = ring ? new Float32Array(0) : r.delta;
        return {
          id: t.id,
          ok: true,
          delta,
          ring,
          numExamples: r.numExamples,
          passes: r.passes,
          loss: r.loss,
        };
      } finally {
        trainer.dispose();
      }
    } catch (e) {
      return { id: t.id, ok: false, message: (e as Error).message };
    }
  })().then((reply) =>
    port.postMessage(
      reply,
      reply.ok
        ? [reply.delta.buffer as ArrayBuffer, ...(reply.ring ? [reply.ring.buffer as ArrayBuffer] : [])]
        : [],
    ),
  );
});
