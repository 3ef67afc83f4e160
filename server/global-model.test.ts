import { describe, expect, it } from 'vitest';
import { epsilonFor } from '../shared/dp/calibrate.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import type { RoundOutcome } from './aggregator/index.ts';
import { ManualClock } from './clock.ts';
import { DEFAULTS, type ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import { GlobalModel } from './global-model.ts';
import { createMetrics } from './metrics.ts';
import { metricValue } from './test-fixtures.ts';

const spec = MODELS.tiny;
const P = numParams(spec);

/** A stub evaluator: the test loss is the mean weight (NaN weights give a NaN loss, as a diverged model). */
const meanLoss = async (w: Float32Array): Promise<EvalResult> => {
  let s = 0;
  for (const x of w) s += x;
  return { accuracy: 0.5, loss: s / w.length, examples: 10, ms: 1 };
};

function model(over: Partial<ServerConfig> = {}, evaluate = meanLoss) {
  const metrics = createMetrics();
  const logs: string[] = [];
  const m = new GlobalModel({
    config: { ...DEFAULTS, model: spec, secagg: false, ...over },
    metrics,
    evaluate,
    initialWeights: new Float32Array(P), // test loss 0
    clock: new ManualClock(1000),
    log: (s) => logs.push(s),
  });
  return { m, metrics, logs };
}

const outcome = (v: number): Extract<RoundOutcome, { ok: true }> => ({
  ok: true,
  why: 'test',
  mean: new Float32Array(P).fill(v),
  clients: 3,
  examples: null,
  trainLoss: null,
  stragglers: 0,
  dropped: 0,
  indicatorSum: null,
});
const release = (m: GlobalModel, round: number, v: number) =>
  m.release({ ref: { round, attempt: 1 }, startedAt: 0, outcome: outcome(v) });

describe('GlobalModel: the keep-old-model guard (--max-loss-increase)', () => {
  it('keeps a model within the margin, discards one past it (weights and optimizer state restored), counts it', async () => {
    // FedAvgM, so a discarded step that left its momentum behind would show in the next round.
    const { m, metrics } = model({
      maxLossIncrease: 1,
      serverOptimizer: { ...DEFAULTS.serverOptimizer, name: 'fedavgm', momentum: 0.5 },
    });
    await m.init();
    const r1 = await release(m, 1, 0.8); // m = 0.8, w = 0.8: loss 0.8 <= 0 + 1
    expect(r1).toMatchObject({ accuracy: 0.5, loss: expect.closeTo(0.8, 6), rejected: null });
    const w1 = m.weights.slice();
    const r2 = await release(m, 2, 5); // m = 5.4, candidate 6.2: loss 6.2 > 0.8 + 1
    expect(m.weights).toEqual(w1);
    expect(m.weightsBytes.equals(Buffer.from(w1.buffer))).toBe(true);
    // The history shows the kept model's scores, and the discarded one's with the reason.
    expect(r2.loss).toBeCloseTo(0.8, 6);
    expect(r2.rejected).toEqual({
      reason: expect.stringMatching(/^test loss 6\.2000 is more than 1 above the current 0\.8000$/),
      accuracy: 0.5,
      loss: expect.closeTo(6.2, 5),
    });
    expect(m.history).toEqual([r1, r2]);
    expect(m.modelsRejected).toBe(1);
    expect(await metricValue(metrics, 'aegis_models_rejected_total', { reason: 'loss_increase' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_rounds_completed_total')).toBe(1);
    expect(await metricValue(metrics, 'aegis_test_loss')).toBeCloseTo(0.8, 6);
    // The momentum is back to 0.8: 0.5 * 0.8 - 0.2 = 0.2, w = 1.0 (with 5.4 left over it would be 3.3).
    const r3 = await release(m, 3, -0.2);
    expect(r3.rejected).toBeNull();
    expect(m.weights[0]).toBeCloseTo(1.0, 6);
  });

  it('a non-finite test loss is always discarded; an evaluator that throws decides nothing', async () => {
    let fail = false;
    const { m, metrics } = model({ maxLossIncrease: 1 }, async (w) => {
      if (fail) throw new Error('evaluator down');
      return meanLoss(w);
    });
    await m.init();
    const nan = await release(m, 1, NaN);
    expect(nan.rejected?.reason).toBe('test loss is NaN');
    expect(m.weights.every((x) => x === 0)).toBe(true);
    expect(await metricValue(metrics, 'aegis_models_rejected_total', { reason: 'not_finite' })).toBe(1);
    fail = true;
    const unknown = await release(m, 2, 3); // a jump of 3, but no score to judge it by: kept
    expect(unknown).toMatchObject({ rejected: null, accuracy: NaN, loss: NaN });
    expect(m.weights[0]).toBe(3);
  });

  it('--max-loss-increase 0 turns the guard off: every aggregate is applied', async () => {
    const { m } = model({ maxLossIncrease: 0 });
    await m.init();
    expect((await release(m, 1, 50)).rejected).toBeNull();
    expect(m.weights[0]).toBe(50);
    expect(m.modelsRejected).toBe(0);
  });

  it('under DP a discarded round is still charged: its noisy sum was computed and its model evaluated', async () => {
    const dp = {
      noiseMultiplier: 1,
      clipNorm: 0.1,
      epsilonBudget: 100,
      delta: 1e-5,
      population: 0,
      adaptive: null,
    };
    const { m } = model({ maxLossIncrease: 1, dp });
    await m.init();
    const r = await release(m, 1, 5);
    expect(r.rejected).not.toBeNull();
    expect(r.epsilon).toBeCloseTo(epsilonFor(1, 1, 1, 1e-5), 10);
    expect(m.privacyStatus()).toMatchObject({ enabled: true, rounds: 1 });
  });
});

describe('GlobalModel: evaluation time', () => {
  it("each round carries its evaluation's time; /metrics times every evaluation, the initial one too", async () => {
    let ms = 40;
    const { m, metrics, logs } = model({}, async (w) => ({ ...(await meanLoss(w)), ms: (ms += 10) }));
    await m.init(); // 50 ms
    const r1 = await release(m, 1, 0.1); // 60 ms
    expect(r1.evalMs).toBe(60);
    expect(logs.at(-1)).toMatch(/\(evaluation 0\.06s\)$/);
    const h = (await metrics.evalDuration.get()).values;
    const of = (name: string): number | undefined => h.find((v) => v.metricName === name)?.value;
    expect(of('aegis_eval_duration_seconds_count')).toBe(2);
    expect(of('aegis_eval_duration_seconds_sum')).toBeCloseTo(0.11, 9);
    // A failed evaluation has no time to report.
    const failing = model({}, async () => {
      throw new Error('no backend');
    });
    await failing.m.init().catch(() => {});
    expect((await release(failing.m, 1, 0.1)).evalMs).toBeNull();
  });
});
