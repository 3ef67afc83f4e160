import { LocalTrainer } from '../../client/trainer.ts';
import type { Dataset } from '../../shared/data/dataset.ts';
import { subset } from '../../shared/data/dataset.ts';
import { createRng, permutation } from '../../shared/data/rng.ts';
import { epsilonFor } from '../../shared/dp/calibrate.ts';
import { createSecureRandom, type SecureRandom } from '../../shared/dp/secure-random.ts';
import { addSkellamSumInPlace } from '../../shared/dp/skellam.ts';
import { encodeContribution, vectorLength, type EncodingPlan } from '../../shared/fl/encoding.ts';
import { addInto } from '../../shared/secagg/ring.ts';
import { partition, type PartitionScheme } from '../../shared/fl/partition.ts';
import { createServerOptimizer, type ServerOptimizerConfig } from '../../shared/fl/server-opt.ts';
import { buildModel } from '../../shared/model/build.ts';
import { asRuntime, type ModelRuntime } from '../../shared/model/task-build.ts';
import type { ModelSpec } from '../../shared/model/spec.ts';
import { getFlatWeights } from '../../shared/model/weights.ts';
import * as tf from '@tensorflow/tfjs';
import type { TrainConfig } from '../../shared/protocol/messages.ts';
import { createAccumulator, type RoundOutcome } from '../aggregator/index.ts';
import { ManualClock } from '../clock.ts';
import { DEFAULTS } from '../config.ts';
import { Evaluator, type EvalResult } from '../evaluator.ts';
import { createMetrics } from '../metrics.ts';
import { TrainPool, type ClientTraining } from './pool.ts';

/**
 * Headless federated training in one Node process with the same pieces the real system uses: the client's
 * LocalTrainer, the partitioners, the update encoding + Skellam noise (with DP), the server optimizers and
 * the RDP accountant, and the server's own round accumulator (the same encoding plan, sum and decode).
 * Secure-aggregation masks are left out because they cancel exactly (tested bit for bit elsewhere), so
 * they cannot change a result.
 */
export interface SimulationOptions {
  model: ModelSpec;
  train: Dataset;
  test: Dataset;
  clients: number;
  perRound: number;
  rounds: number;
  partition: PartitionScheme;
  local: TrainConfig;
  /** The clients' learning rate in round r (1-based), e.g. a decay over the run; default local.learningRate. */
  lrAt?: (round: number) => number;
  server: ServerOptimizerConfig;
  /** DP: noise multiplier z and clip C; null = no DP. */
  dp: { noiseMultiplier: number; clipNorm: number; delta: number } | null;
  /** Per-coordinate clip of encoded updates, as the server's --coord-clip (default the same). */
  coordClip?: number;
  /** The server's --min-updates: each client adds noise for this many survivors. Default: the whole cohort. */
  minUpdates?: number;
  seed: number;
  /**
   * How a round's cohort is drawn. 'fixed' (default): perRound clients without replacement. 'poisson':
   * each client joins independently with probability q = perRound / clients, the sampling the RDP
   * accountant assumes. As on the server (--dp-population), a draw of fewer than minUpdates clients starts
   * no round and is not charged, and the cohort size is public: both lie outside the ledger
   * (docs/design.md says so; frequent skips would make the amplification optimistic).
   */
  sampling?: 'fixed' | 'poisson';
  /** Evaluate the global model every this many rounds (and after the last); default every round. */
  evalEvery?: number;
  /**
   * Where a DP round's Skellam noise is drawn. 'per-client' (default): each client adds its share, as a
   * real client does. 'aggregate': the clients encode without noise and the round's sum gets one draw of
   * the summed noise (addSkellamSumInPlace), which has exactly the distribution of the clients' shares
   * added up; the sum, and so everything the server decodes, is the same in distribution, at a few draws
   * per coordinate a round instead of one per client (the bulk of a DP round's time at 137 000
   * parameters). Only a client's own clamping at the ring's edge (rare by the encoding's design) could tell
   * the two apart.
   */
  noise?: 'per-client' | 'aggregate';
  /**
   * Worker threads training clients in parallel, each with this thread's tfjs backend; 0 or absent: one
   * client at a time in this thread. Either way a client's training depends only on (seed, round, client),
   * so without DP every setting gives the same weights bit for bit (DP rounds draw their rounding and
   * noise from a CSPRNG on purpose: no two runs match).
   */
  workers?: number;
}

export interface RoundRecord {
  round: number;
  /** Clients aggregated; 0 in a skipped Poisson round. */
  clients: number;
  examples: number;
  /** Example-passes the round's clients trained. */
  passes: number;
  /** Test accuracy and loss; null in rounds skipped by evalEvery. */
  accuracy: number | null;
  loss: number | null;
  /** Privacy spent so far (null without DP). */
  epsilon: number | null;
  trainLoss: number;
  seconds: number;
}

/**
 * The training pool for `clients` clients of `perClient` examples each, drawn (seeded, without replacement)
 * from a larger set such as CIFAR-10's 50 000; the partitioner then splits exactly this pool.
 */
export function clientPool(train: Dataset, clients: number, perClient: number, seed: number): Dataset {
  if (!Number.isInteger(clients) || clients < 1) throw new RangeError(`clients must be >= 1, got ${clients}`);
  if (!Number.isInteger(perClient) || perClient < 1)
    throw new RangeError(`examples per client must be a whole number >= 1, got ${perClient}`);
  const need = clients * perClient;
  if (need > train.n)
    throw new RangeError(
      `${clients} clients x ${perClient} examples = ${need} exceeds the ${train.n} training examples`,
    );
  return subset(train, permutation(train.n, createRng(seed ^ 0x706f6f6c)).subarray(0, need));
}

/**
 * The noise n clients would add to a ring sum under `plan`, drawn at once: the parameters' Skellam and the
 * clip indicator's, summed over the clients, as ring words (two's complement mod 2^32).
 */
export function roundNoise(plan: EncodingPlan, n: number, d: number, rand: SecureRandom): Uint32Array {
  const x = new Float64Array(vectorLength(d));
  addSkellamSumInPlace(x, plan.noiseVariance, n, rand, 0, d);
  if (plan.sendIndicator) addSkellamSumInPlace(x, plan.bitNoiseVariance, n, rand, d + 1, d + 2);
  return Uint32Array.from(x, (v) => v >>> 0);
}

/** A thread given a plan must return the encoded update: a silent fallback here would hide a broken thread. */
function ringFromThread(res: ClientTraining, round: number): Uint32Array {
  if (!res.ring)
    throw new Error(`round ${round}: a training thread returned no ring update for a ring round`);
  return res.ring;
}

export async function runSimulation(
  o: SimulationOptions,
  onRound?: (r: RoundRecord, progress: { client: number; of: number } | null) => void,
): Promise<{ initial: { accuracy: number; loss: number }; rounds: RoundRecord[]; weights: Float32Array }> {
  if (o.workers !== undefined && !(Number.isInteger(o.workers) && o.workers >= 0))
    throw new RangeError(`workers must be a whole number >= 0, got ${o.workers}`);
  const backend = tf.getBackend();
  if ((o.workers ?? 0) > 0 && backend !== 'wasm' && backend !== 'cpu')
    throw new Error(`--workers trains on wasm or cpu, not on the ${backend} backend`);
  const pool =
    (o.workers ?? 0) > 0
      ? new TrainPool(o.workers!, { backend: backend as 'wasm' | 'cpu', model: o.model })
      : null;
  try {
    return await simulate(o, pool, onRound);
  } finally {
    await pool?.close();
  }
}

async function simulate(
  o: SimulationOptions,
  pool: TrainPool | null,
  onRound?: (r: RoundRecord, progress: { client: number; of: number } | null) => void,
): Promise<{ initial: { accuracy: number; loss: number }; rounds: RoundRecord[]; weights: Float32Array }> {
  const parts = partition(o.train.y, o.clients, o.partition, createRng(o.seed)).map((idx) =>
    subset(o.train, idx),
  );
  const evaluator = new Evaluator(o.model, o.test);
  const init = buildModel(o.model, o.seed);
  let weights = await getFlatWeights(init);
  init.dispose();
  const d = weights.length;
  const opt = createServerOptimizer(o.server, d);
  const rng = createRng(o.seed ^ 0x51a1);
  const rand = createSecureRandom();
  const clock = new ManualClock();
  const metrics = createMetrics();
  const e0 = await evaluator.evaluate(weights);
  const out: RoundRecord[] = [];
  const q = o.perRound / o.clients;
  if (o.sampling === 'poisson' && !(q > 0 && q <= 1))
    throw new RangeError(
      `Poisson sampling needs 0 < per-round <= clients, got ${o.perRound} of ${o.clients}`,
    );
  const epsilonAfter = (released: number): number | null =>
    o.dp ? epsilonFor(q, o.dp.noiseMultiplier, released, o.dp.delta) : null;
  let released = 0;
  let model: ModelRuntime | null = null;
  /** Evaluates on the schedule (every evalEvery rounds, and after the last); null off it. */
  const evaluateIfDue = (r: number): Promise<EvalResult> | null =>
    r % (o.evalEvery ?? 1) === 0 || r === o.rounds ? evaluator.evaluate(weights) : null;
  for (let r = 1; r <= o.rounds; r++) {
    const t0 = performance.now();
    const eligible = parts.map((p, i) => [p, i] as const).filter(([p]) => p.n > 0);
    const chosen =
      o.sampling === 'poisson'
        ? eligible.filter(() => rng.next() < q).map(([p]) => p)
        : Array.from(
            permutation(eligible.length, rng).subarray(0, Math.min(o.perRound, eligible.length)),
            (j) => eligible[j][0],
          );
    if (o.sampling === 'poisson' && chosen.length < Math.max(1, o.minUpdates ?? 1)) {
      // On the evaluation schedule (and last) a skipped round still reports the model's score.
      const ev = await evaluateIfDue(r);
      const skipped: RoundRecord = {
        round: r,
        clients: 0,
        examples: 0,
        passes: 0,
        accuracy: ev?.accuracy ?? null,
        loss: ev?.loss ?? null,
        epsilon: epsilonAfter(released),
        trainLoss: NaN,
        seconds: (performance.now() - t0) / 1000,
      };
      out.push(skipped);
      onRound?.(skipped, null);
      continue;
    }
    let result: RoundOutcome | null = null;
    const acc = createAccumulator(
      {
        numParams: d,
        n: chosen.length,
        maxExamples: chosen.reduce((m, p) => Math.max(m, p.n), 1),
        minUpdates: Math.min(o.minUpdates ?? chosen.length, chosen.length),
        roundDeadlineMs: Infinity,
        coordClip: o.coordClip ?? DEFAULTS.coordClip,
        dp: o.dp
          ? { clipNorm: o.dp.clipNorm, noiseMultiplier: o.dp.noiseMultiplier, bitStd: 0, adaptive: false }
          : null,
        secagg: null,
      },
      {
        ref: { round: r, attempt: 1 },
        clock, // never advanced: no deadlines here; the round closes when its last member reports
        metrics,
        online: () => true,
        send: () => false,
        defer: (fn) => queueMicrotask(fn),
        log: () => {},
        close: (x) => (result = x),
      },
    );
    let examples = 0;
    let passes = 0;
    let lossSum = 0;
    const progress = (k: number): void =>
      onRound?.(
        {
          round: r,
          clients: 0,
          examples,
          passes,
          accuracy: NaN,
          loss: NaN,
          epsilon: null,
          trainLoss: NaN,
          seconds: 0,
        },
        { client: k, of: chosen.length },
      );
    const seedOf = (k: number): number => o.seed + r * 1000 + k;
    // With aggregate noise the clients encode as planned but without their share of the noise.
    const aggregateNoise = o.noise === 'aggregate' && acc.encoding !== null;
    const clientPlan =
      acc.encoding && aggregateNoise
        ? { ...acc.encoding, noiseVariance: 0, bitNoiseVariance: 0 }
        : acc.encoding;
    const local: TrainConfig = o.lrAt ? { ...o.local, learningRate: o.lrAt(r) } : o.local;
    const n = chosen.length;
    const losses = new Float64Array(n);
    let noise: Uint32Array | null = null;
    /**
     * Takes client k's result into the round: a ring adds mod 2^32 in any order, so rings are taken as the
     * threads return them (a round's rings are not all held at once); float deltas are taken in cohort
     * order, since float sums depend on order. The round's noise, drawn once for the whole cohort, rides in
     * the first ring taken.
     */
    const take = (k: number, res: ClientTraining): void => {
      examples += res.numExamples;
      passes += res.passes;
      losses[k] = res.loss;
      // As the real client: in a ring round the weight and the loss travel inside the vector.
      let ring: Uint32Array | null = null;
      if (clientPlan) {
        ring = pool
          ? ringFromThread(res, r)
          : encodeContribution(res.delta, res.numExamples, clientPlan, rand, res.loss).ring;
        if (noise) addInto(ring, noise);
        noise = null;
      }
      acc.add(
        k + 1,
        ring
          ? { delta: null, ring }
          : { delta: res.delta, ring: null, numExamples: res.numExamples, loss: res.loss },
      );
    };
    const drawNoise = (): void => {
      if (aggregateNoise) noise = roundNoise(acc.encoding!, n, d, rand);
    };
    if (pool) {
      let done = 0;
      const pending = chosen.map((data, k) =>
        pool.train({ weights, data, seed: seedOf(k), local, encode: clientPlan ?? undefined }).then((res) => {
          progress(done++);
          if (!clientPlan) return res;
          take(k, res);
          return null;
        }),
      );
      const all = Promise.all(pending);
      all.catch(() => {}); // awaited below; handled now in case drawNoise throws first
      drawNoise(); // while the threads train the first clients
      const results = await all;
      if (!clientPlan) results.forEach((res, k) => take(k, res!));
    } else {
      drawNoise();
      for (const [k, data] of chosen.entries()) {
        progress(k);
        // One model for the run, as in the pool's threads: train() overwrites every weight first.
        model ??= asRuntime(o.model, o.seed);
        const trainer = new LocalTrainer(model, data, seedOf(k), false);
        take(k, await trainer.train(weights, local));
        trainer.dispose();
      }
    }
    // Summed in cohort order whichever thread finished first: float sums depend on order.
    for (let k = 0; k < n; k++) lossSum += losses[k];
    acc.settle();
    const agg = result as RoundOutcome | null; // assigned in the callback, which TS cannot see
    if (!agg?.ok) throw new Error(`round ${r} did not aggregate: ${agg ? agg.why : 'still open'}`);
    weights = opt.step(weights, agg.mean);
    released++;
    const ev = await evaluateIfDue(r);
    const rec: RoundRecord = {
      round: r,
      clients: agg.clients,
      examples, // the simulator knows every client's count; the aggregate may not (uniform weighting)
      passes,
      accuracy: ev?.accuracy ?? null,
      loss: ev?.loss ?? null,
      epsilon: epsilonAfter(released),
      trainLoss: agg.trainLoss ?? lossSum / chosen.length,
      seconds: (performance.now() - t0) / 1000,
    };
    out.push(rec);
    onRound?.(rec, null);
  }
  evaluator.dispose();
  model?.model.dispose();
  return { initial: { accuracy: e0.accuracy, loss: e0.loss }, rounds: out, weights };
}
