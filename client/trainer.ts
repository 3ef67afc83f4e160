import * as tf from '@tensorflow/tfjs';
import { NUM_CLASSES, type Dataset } from '../shared/data/dataset.ts';
import { examplesFromDataset, type Examples } from '../shared/data/examples.ts';
import { asRuntime, type ModelRuntime } from '../shared/model/task-build.ts';
import { getFlatWeights, setFlatWeights } from '../shared/model/weights.ts';
import { AUGMENT_PAD, randomWindows } from '../shared/data/augment.ts';
import { createRng, type Rng } from '../shared/data/rng.ts';
import { batchStream } from '../shared/data/batches.ts';
import { augmentBatch } from './augment.ts';
import { logLabelPrior, logitAdjustedCrossentropy } from './loss.ts';
import { modelLogits } from '../shared/model/logits.ts';
import type { ModelSpec } from '../shared/model/spec.ts';
import {
  LOCAL_MOMENTUM,
  MAX_PLAN_EPOCHS,
  type LocalOptimizer,
  type TrainConfig,
} from '../shared/protocol/messages.ts';

export interface TrainProgress {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  /** Mean loss of the epoch just finished; undefined mid-epoch (reading it would stall the GPU queue). */
  loss?: number;
}

/** One side's share of a data-parallel step: the mean gradient and loss over its n examples (n may be 0). */
export interface HalfGradient {
  n: number;
  loss: number;
  /** Flat, in trainable-weight order; empty when n is 0. */
  grad: Float32Array;
}

/**
 * The link between the two trainers of a data-parallel pair (each on its own thread, same data, same seed):
 * each step, each sends its half's gradient and receives the other's.
 */
export interface GradientExchange {
  /** 0 trains the first half of each batch, 1 the second. */
  readonly rank: 0 | 1;
  /** Rejects if the peer's half has not come within `patienceMs` (absent: waits). */
  swap(mine: HalfGradient, patienceMs?: number): Promise<HalfGradient>;
}

/** Least time rank 0 waits for its peer's half before it fails the round (20x its own half, if longer). */
export const PAIR_PATIENCE_MS = 10_000;

/** The batch's mean gradient from its halves' means, rank 0 first (both sides compute it alike). */
export function combineHalves(a: HalfGradient, b: HalfGradient): Float32Array {
  if (b.n === 0) return a.grad;
  if (a.n === 0) return b.grad;
  if (a.grad.length !== b.grad.length)
    throw new Error(`data-parallel step: gradients of ${a.grad.length} and ${b.grad.length} values`);
  const wa = a.n / (a.n + b.n);
  const wb = b.n / (a.n + b.n);
  const out = new Float32Array(a.grad.length);
  for (let i = 0; i < out.length; i++) out[i] = wa * a.grad[i] + wb * b.grad[i];
  return out;
}

/** Where a data-parallel pair's steps went, summed over its paired steps (milliseconds, this side). */
export interface PairTimes {
  /** This side's half: forward, backward, gradients read back. */
  grad: number;
  /** Waiting for the peer's half (its longer compute, plus the message). */
  wait: number;
  /** Combining the halves and applying the update. */
  apply: number;
}

export interface TrainResult {
  delta: Float32Array;
  numExamples: number;
  /** Example-passes trained (examples through a step, summed over the steps). */
  passes: number;
  /** Mean loss of the last epoch; with plan.steps, of all the round's steps. */
  loss: number;
  trainMs: number;
  /** Steps trained as half of a data-parallel pair (0 alone). */
  pairedSteps: number;
  pairMs: PairTimes;
}

/**
 * Local training on one client's data. The dataset is uploaded to the backend once and batches are
 * gathered on-device, and the loss is read back once per epoch, so the loop keeps the GPU queue full.
 * The model is a CIFAR preset (a ModelSpec, built here) or a task's built runtime (owned from now on);
 * the data CIFAR-style images (bytes) or any task's Examples.
 */
export class LocalTrainer {
  readonly model: tf.LayersModel;
  readonly runtime: ModelRuntime;
  private readonly x: tf.Tensor;
  private readonly y: tf.Tensor2D;
  /** log of this client's label frequencies, for plans with logitAdjust (they stay on the device). */
  private readonly logPrior: tf.Tensor1D;
  private readonly n: number;
  /** Crop windows for augmentation (not a secret: a seeded PRNG keeps runs reproducible). */
  private augRng: Rng;
  /** Batch order, seeded for the same reason (tfjs' own shuffle draws from Math.random). */
  private orderRng: Rng;
  private readonly seed: number;

  /**
   * `ownsModel` false: a runtime lent for this client only (the simulator's threads build one model and
   * train client after client on it; train() overwrites every weight first), left undisposed by dispose().
   */
  constructor(
    spec: ModelSpec | ModelRuntime,
    data: Dataset | Examples,
    seed = 1,
    private readonly ownsModel = true,
  ) {
    if (data.n < 1) throw new Error('cannot train on an empty dataset');
    const ex = data.x instanceof Float32Array ? (data as Examples) : examplesFromDataset(data as Dataset);
    const classes = 'model' in spec ? spec.numClasses : NUM_CLASSES;
    // Before any tensor exists: a label outside the classes throws here and leaks nothing.
    const logPrior = logLabelPrior(ex.y, classes);
    this.runtime = asRuntime(spec, seed);
    this.model = this.runtime.model;
    this.n = ex.n;
    this.seed = seed;
    this.augRng = createRng(seed ^ 0x6a09e667);
    this.orderRng = createRng(seed ^ 0x3c6ef372);
    const { inputShape, numClasses } = this.runtime;
    this.x = tf.tensor(ex.x, [ex.n, ...inputShape], 'float32');
    this.y = tf.tidy(() => tf.oneHot(tf.tensor1d(ex.y, 'int32'), numClasses).toFloat() as tf.Tensor2D);
    this.logPrior = tf.tensor1d(logPrior);
  }

  get numExamples(): number {
    return this.n;
  }

  /**
   * Restarts the batch-order and crop streams at a round's own point (round 0 = as constructed). A trainer
   * kept across rounds calls it before each: the two sides of a data-parallel pair then draw the same
   * batches whichever rounds either trained alone before, and a retried round trains the same batches.
   */
  reseed(round: number): void {
    const s = (this.seed + Math.imul(round >>> 0, 0x9e3779b1)) >>> 0;
    this.augRng = createRng(s ^ 0x6a09e667);
    this.orderRng = createRng(s ^ 0x3c6ef372);
  }

  /** Trains from `global` weights and returns w_local - w_global; `between` is awaited after each batch. */
  async train(
    global: Float32Array,
    cfg: TrainConfig,
    onProgress?: (p: TrainProgress) => void,
    between?: () => Promise<void>,
    peer?: GradientExchange,
  ): Promise<TrainResult> {
    const t0 = performance.now();
    // Steps do not scale with the data as epochs do: a plan may not ask more of a small client than the
    // most epochs of its own data (a hostile server's 1 000 steps of 256 on a visitor's 256 images).
    // The count stays out of the message: in a masked round the server never learns it.
    if (cfg.steps !== undefined && cfg.steps * Math.min(cfg.batchSize, this.n) > MAX_PLAN_EPOCHS * this.n)
      throw new Error(
        `plan.steps x batchSize asks more than ${MAX_PLAN_EPOCHS} epochs of this client's data`,
      );
    setFlatWeights(this.model, this.runtime.shapes, global);
    const optimizer = localOptimizer(cfg.optimizer, cfg.learningRate);
    const mu = cfg.proximalMu ?? 0;
    // FedProx anchors: the global weights, one constant tensor per trainable variable.
    const anchors = mu > 0 ? this.model.trainableWeights.map((w) => tf.keep(w.read().clone())) : [];
    const n = this.n;
    const bs = Math.min(cfg.batchSize, n);
    // Fixed local steps (plan.steps): a client's work does not grow with its data, as epochs' steps would.
    const steps = cfg.steps;
    const batches = steps ?? Math.ceil(n / bs);
    const epochs = steps === undefined ? cfg.epochs : 1;
    // A client smaller than a batch trains on all its data each step, as in epochs (its memory is bounded
    // by its data, whatever batchSize a plan names). Epochs stop each pass at its permutation's end; steps
    // run on across permutations.
    const order = batchStream(n, this.orderRng);
    let lastLoss = NaN;
    let passes = 0;
    let pairedSteps = 0;
    const pairMs: PairTimes = { grad: 0, wait: 0, apply: 0 };
    let epochLoss: tf.Scalar | null = null; // disposed in finally if a step throws mid-epoch
    try {
      for (let epoch = 0; epoch < epochs; epoch++) {
        epochLoss = tf.scalar(0);
        for (let b = 0; b < batches; b++) {
          const ids = order.next(bs, steps === undefined);
          // Drawn for the whole batch on both sides of a pair: the same stream as one trainer alone.
          const windows = cfg.augment ? randomWindows(ids.length, AUGMENT_PAD, this.augRng) : null;
          const lossOf = (from: number, to: number) => (): tf.Scalar => {
            const idx = tf.tensor1d(Int32Array.from(ids.subarray(from, to)), 'int32');
            const raw = tf.gather(this.x, idx);
            const xb = windows ? augmentBatch(raw as tf.Tensor4D, windows.slice(from, to), AUGMENT_PAD) : raw;
            const yb = tf.gather(this.y, idx);
            const ce = cfg.logitAdjust
              ? logitAdjustedCrossentropy(yb, modelLogits(this.model, xb, true), this.logPrior)
              : (tf.metrics
                  .categoricalCrossentropy(yb, this.model.apply(xb, { training: true }) as tf.Tensor)
                  .mean() as tf.Scalar);
            if (mu === 0) return ce;
            const prox = tf.addN(
              this.model.trainableWeights.map((w, k) => tf.sum(tf.square(tf.sub(w.read(), anchors[k])))),
            );
            return tf.add(ce, tf.mul(mu / 2, prox)) as tf.Scalar;
          };
          const cost = peer
            ? await this.pairStep(optimizer, peer, ids.length, lossOf, pairMs)
            : optimizer.minimize(lossOf(0, ids.length), true)!;
          if (peer) pairedSteps++;
          passes += ids.length;
          const next: tf.Scalar = tf.add(epochLoss, cost);
          epochLoss.dispose();
          cost.dispose();
          epochLoss = next;
          if (onProgress && b < batches - 1) onProgress({ epoch, epochs, batch: b + 1, batches });
          // The host page's share of the CPU (pause while hidden, duty cycle): yield between batches.
          if (between) await between();
        }
        lastLoss = (await epochLoss.data())[0] / batches;
        epochLoss.dispose();
        epochLoss = null;
        onProgress?.({ epoch, epochs, batch: batches, batches, loss: lastLoss });
      }
    } finally {
      epochLoss?.dispose();
      optimizer.dispose();
      // tfjs' MomentumOptimizer.dispose() skips SGD's learning-rate scalar `c`: one tensor leaked a round.
      (optimizer as unknown as { c?: tf.Tensor }).c?.dispose();
      tf.dispose(anchors);
    }
    const local = await getFlatWeights(this.model);
    // A lost GPU device reads back zeros; sending w=0 as an update would wipe the global model.
    if (local.every((v) => v === 0))
      throw new Error(`backend ${tf.getBackend()} returned all-zero weights (GPU device lost?)`);
    for (let i = 0; i < local.length; i++) local[i] -= global[i];
    return {
      delta: local,
      numExamples: n,
      passes,
      loss: lastLoss,
      trainMs: performance.now() - t0,
      pairedSteps,
      pairMs,
    };
  }

  /**
   * One step of a data-parallel pair: this side's half of the batch (rank 0 the first ceil(b/2) examples),
   * the halves' mean gradients swapped with the peer and combined in rank order, the same arithmetic on both
   * sides, so both apply the very same update and stay equal bit for bit without sending weights.
   */
  private async pairStep(
    optimizer: tf.Optimizer,
    peer: GradientExchange,
    b: number,
    lossOf: (from: number, to: number) => () => tf.Scalar,
    times: PairTimes,
  ): Promise<tf.Scalar> {
    const h = Math.ceil(b / 2);
    const [from, to] = peer.rank === 0 ? [0, h] : [h, b];
    const vars = this.model.trainableWeights.map((w) => w.read() as tf.Variable);
    let mine: HalfGradient = { n: 0, loss: 0, grad: new Float32Array(0) };
    const t0 = performance.now();
    if (to > from) {
      const { value, grads } = optimizer.computeGradients(lossOf(from, to), vars);
      try {
        const flat = new Float32Array(this.runtime.shapes.reduce((s, w) => s + w.size, 0));
        let o = 0;
        for (const v of vars) {
          // A variable the loss does not reach has no gradient (minimize skips it): zeros here.
          const g = grads[v.name];
          if (g) flat.set(g.dataSync() as Float32Array, o);
          o += v.size;
        }
        mine = { n: to - from, loss: value.dataSync()[0], grad: flat };
      } finally {
        tf.dispose([value, ...Object.values(grads)]);
      }
    }
    // Rank 0 gives up on a silent peer (a worker that hung); rank 1 waits, as rank 0 may be paused.
    const patienceMs =
      peer.rank === 0 ? Math.max(PAIR_PATIENCE_MS, 20 * (performance.now() - t0)) : undefined;
    const t1 = performance.now();
    const other = await peer.swap(mine, patienceMs);
    const t2 = performance.now();
    const [a, c] = peer.rank === 0 ? [mine, other] : [other, mine];
    if (a.n + c.n !== b) throw new Error(`data-parallel step: halves of ${a.n} + ${c.n} for a batch of ${b}`);
    const combined = combineHalves(a, c);
    let o = 0;
    const named: tf.NamedTensorMap = {};
    for (const v of vars) {
      named[v.name] = tf.tensor(combined.subarray(o, o + v.size), v.shape, 'float32');
      o += v.size;
    }
    optimizer.applyGradients(named);
    tf.dispose(Object.values(named));
    times.grad += t1 - t0;
    times.wait += t2 - t1;
    times.apply += performance.now() - t2;
    return tf.scalar((a.n * a.loss + c.n * c.loss) / b);
  }

  dispose(): void {
    if (this.ownsModel) this.model.dispose();
    this.x.dispose();
    this.y.dispose();
    this.logPrior.dispose();
  }
}

/**
 * One training step of a model on two examples, on the current backend; throws if a kernel is missing.
 * Takes a preset spec, or a function that builds a task's runtime (a fresh one per backend tried).
 */
export async function trainingStepProbe(spec: ModelSpec | (() => Promise<ModelRuntime>)): Promise<void> {
  const rt = typeof spec === 'function' ? await spec() : asRuntime(spec, 7);
  const model = rt.model;
  const opt = tf.train.sgd(0.01);
  try {
    const x = tf.zeros([2, ...rt.inputShape]);
    const y = tf.tidy(() => tf.oneHot(tf.tensor1d([0, 1], 'int32'), rt.numClasses).toFloat());
    const cost = opt.minimize(
      () =>
        tf.metrics
          .categoricalCrossentropy(y, model.apply(x, { training: true }) as tf.Tensor)
          .mean() as tf.Scalar,
      true,
    );
    await cost!.data();
    tf.dispose([x, y, cost!]);
  } finally {
    opt.dispose();
    model.dispose();
  }
}

/** A fresh optimizer each round: no state crosses rounds. An unknown name throws rather than train as SGD. */
function localOptimizer(name: LocalOptimizer, lr: number): tf.Optimizer {
  switch (name) {
    case 'sgd':
      return tf.train.sgd(lr);
    case 'momentum':
      return tf.train.momentum(lr, LOCAL_MOMENTUM);
    case 'adam':
      return tf.train.adam(lr);
    default:
      throw new Error(`unknown local optimizer "${String(name satisfies never)}"`);
  }
}
