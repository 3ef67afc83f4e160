import { describe, expect, it } from 'vitest';
import { createSecureRandom } from '../dp/secure-random.ts';
import { encodeContribution, planEncoding, type EncodingPlan } from '../fl/encoding.ts';
import { MODELS, numParams } from '../model/spec.ts';
import { presetTask } from '../model/task.ts';
import { chooseDegree } from '../secagg/graph.ts';
import { checkRoundAgainstFloors, makeFloors, type FloorCheck } from './floors.ts';
import type { RoundStart } from './messages.ts';

/**
 * A malicious server's round plans that meet the page's DP floor on the parameters, yet make the client put
 * an un-noised per-client statistic into its vector. Every such plan should be refused before training.
 */
const model = MODELS.tiny;
const d = numParams(model);
const TRAIN = { epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: 'sgd' } as const;

/** What an honest server sends under DP: noise for the parameters, no loss, no indicator. */
const honestDpPlan = (z: number, minSurvivors: number): EncodingPlan =>
  planEncoding({
    numParams: d,
    maxClients: 20,
    clipNorm: 1,
    coordClip: 0.5,
    weighting: 'uniform',
    maxExamples: 100,
    noise: { multiplier: z, minSurvivors, bitStd: 0 },
  });

function round(encoding: EncodingPlan, secagg: boolean, n = 10): RoundStart {
  const { k, t } = chooseDegree(n);
  return {
    round: 1,
    attempt: 1,
    task: presetTask(model.name, TRAIN),
    train: TRAIN,
    deadlineMs: 1000,
    weights: new Uint8Array(0),
    encoding,
    secagg: secagg ? { tag: 'x', index: 1, n, k, t } : undefined,
  };
}

const why = (c: FloorCheck): string => (c.ok ? 'ok' : c.reason);

describe('attack: DP floor met on the parameters, per-client statistics sent without noise', () => {
  const t = chooseDegree(10).t;

  it('the honest DP plan passes (baseline)', () => {
    const floors = makeFloors({ minNoiseMultiplier: 1 });
    expect(why(checkRoundAgainstFloors(round(honestDpPlan(1, t), true), floors))).toBe('ok');
  });

  it('a DP plan with lossScale > 0 is refused (the loss coordinate carries the exact training loss)', () => {
    const plan: EncodingPlan = { ...honestDpPlan(1, t), lossScale: 2 ** 16 };
    // Shown on the real encoder: the client writes its un-noised loss into coordinate d + 2.
    const loss = 1.234567;
    const c = encodeContribution(new Float32Array(d), 1, plan, createSecureRandom(), loss);
    const half = 2 ** (plan.bits - 1);
    expect(Math.abs(c.ring[d + 2] - half - loss * plan.lossScale)).toBeLessThanOrEqual(1);
    // With the page's DP floor (and secure aggregation required), the plan must be refused.
    const floors = makeFloors({ minNoiseMultiplier: 1 });
    expect(why(checkRoundAgainstFloors(round(plan, true), floors))).toBe('below_floor');
    // With secure aggregation optional, the server would read each client's own loss in the clear.
    const optional = makeFloors({ minNoiseMultiplier: 1 / Math.sqrt(t), requireSecAgg: false });
    expect(why(checkRoundAgainstFloors(round(honestDpPlan(1, t), false), optional))).toBe('ok');
    expect(why(checkRoundAgainstFloors(round(plan, false), optional))).toBe('below_floor');
  });

  it('a DP plan that sends the clip indicator without noise is refused', () => {
    const plan: EncodingPlan = { ...honestDpPlan(1, t), sendIndicator: true, bitNoiseVariance: 0 };
    // The encoder writes the exact indicator +-bitScale/2: whether this client's norm exceeded C.
    const big = new Float32Array(d).fill(1); // norm sqrt(d) > C = 1
    const c = encodeContribution(big, 1, plan, createSecureRandom());
    expect(c.ring[d + 1] - 2 ** (plan.bits - 1)).toBe(-plan.bitScale / 2);
    const floors = makeFloors({ minNoiseMultiplier: 1 });
    expect(why(checkRoundAgainstFloors(round(plan, true), floors))).toBe('below_floor');
  });
});
