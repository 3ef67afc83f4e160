import { LocalTrainer } from '../../client/trainer.ts';
import type { Dataset } from '../../shared/data/dataset.ts';
import { subset } from '../../shared/data/dataset.ts';
import { createRng, permutation } from '../../shared/data/rng.ts';
import { epsilonFor } from '../../shared/dp/calibrate.ts';
import { createSecureRandom } from '../../shared/dp/secure-random.ts';
import { decodeAggregate, encodeContribution, planEncoding, vectorLength } from '../../shared/fl/encoding.ts';
import { WeightedMean } from '../../shared/fl/fedavg.ts';
import { partition, type PartitionScheme } from '../../shared/fl/partition.ts';
import { createServerOptimizer, type ServerOptimizerConfig } from '../../shared/fl/server-opt.ts';
import { buildModel } from '../../shared/model/build.ts';
import type { ModelSpec } from '../../shared/model/spec.ts';
import { getFlatWeights } from '../../shared/model/weights.ts';
import type { TrainConfig } from '../../shared/protocol/messages.ts';
import { addInto } from '../../shared/secagg/ring.ts';
import { Evaluator } from '../evaluator.ts';

/**
 * Headless federated training in one Node process with the same pieces the real system uses: the client's
 * LocalTrainer, the partitioners, the update encoding + Skellam noise (with DP), the server optimizers and
 * the RDP accountant. Secure-aggregation masks are left out because they cancel exactly (tested bit for bit
 * elsewhere), so they cannot change a result.
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
  server: ServerOptimizerConfig;
  /** DP: noise multiplier z and clip C; null = no DP. */
  dp: { noiseMultiplier: number; clipNorm: number; delta: number } | null;
  seed: number;
  /** Evaluate the global model every this many rounds (and after the last); default every round. */
  evalEvery?: number;
}

export interface RoundRecord {
  round: number;
  clients: number;
  examples: number;
  /** Test accuracy and loss; null in rounds skipped by evalEvery. */
  accuracy: number | null;
  loss: number | null;
  /** Privacy spent so far (null without DP). */
  epsilon: number | null;
  trainLoss: number;
  seconds: number;
}

export async function runSimulation(
  o: SimulationOptions,
  onRound?: (r: RoundRecord, progress: { client: number; of: number } | null) => void,
): Promise<{ initial: { accuracy: number; loss: number }; rounds: RoundRecord[] }> {
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
  const e0 = await evaluator.evaluate(weights);
  const out: RoundRecord[] = [];
  for (let r = 1; r <= o.rounds; r++) {
    const t0 = performance.now();
    const eligible = parts.map((p, i) => [p, i] as const).filter(([p]) => p.n > 0);
    const chosen = Array.from(
      permutation(eligible.length, rng).subarray(0, Math.min(o.perRound, eligible.length)),
      (j) => eligible[j][0],
    );
    const plan = o.dp
      ? planEncoding({
          numParams: d,
          maxClients: chosen.length,
          clipNorm: o.dp.clipNorm,
          coordClip: Math.max(0.5, o.dp.clipNorm),
          weighting: 'uniform',
          maxExamples: 1,
          noise: { multiplier: o.dp.noiseMultiplier, minSurvivors: chosen.length, bitStd: 0 },
        })
      : null;
    const mean = new WeightedMean(d);
    const ring = plan ? new Uint32Array(vectorLength(d)) : null;
    let examples = 0;
    let lossSum = 0;
    for (const [k, data] of chosen.entries()) {
      onRound?.(
        {
          round: r,
          clients: 0,
          examples,
          accuracy: NaN,
          loss: NaN,
          epsilon: null,
          trainLoss: NaN,
          seconds: 0,
        },
        { client: k, of: chosen.length },
      );
      const trainer = new LocalTrainer(o.model, data, o.seed + r * 1000 + k);
      const res = await trainer.train(weights, o.local);
      trainer.dispose();
      examples += res.numExamples;
      lossSum += res.loss;
      if (plan && ring) addInto(ring, encodeContribution(res.delta, res.numExamples, plan, rand).ring);
      else mean.add(res.delta, res.numExamples);
    }
    const delta = plan && ring ? decodeAggregate(ring, chosen.length, plan).mean : mean.mean();
    weights = opt.step(weights, delta);
    const ev = r % (o.evalEvery ?? 1) === 0 || r === o.rounds ? await evaluator.evaluate(weights) : null;
    const rec: RoundRecord = {
      round: r,
      clients: chosen.length,
      examples,
      accuracy: ev?.accuracy ?? null,
      loss: ev?.loss ?? null,
      epsilon: o.dp ? epsilonFor(o.perRound / o.clients, o.dp.noiseMultiplier, r, o.dp.delta) : null,
      trainLoss: lossSum / chosen.length,
      seconds: (performance.now() - t0) / 1000,
    };
    out.push(rec);
    onRound?.(rec, null);
  }
  evaluator.dispose();
  return { initial: { accuracy: e0.accuracy, loss: e0.loss }, rounds: out };
}
