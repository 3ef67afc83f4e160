import { describe, expect, it } from 'vitest';
import { createSecureRandom } from '../../shared/dp/secure-random.ts';
import { encodeContribution, vectorLength } from '../../shared/fl/encoding.ts';
import { ManualClock } from '../clock.ts';
import { createMetrics } from '../metrics.ts';
import { metricValue } from '../test-fixtures.ts';
import { RingAccumulator } from './ring.ts';
import {
  createAccumulator,
  planRound,
  roundMode,
  type RoundContext,
  type RoundOutcome,
  type RoundSettings,
} from './index.ts';

const P = 6;
const settings = (over: Partial<RoundSettings> = {}): RoundSettings => ({
  numParams: P,
  n: 3,
  maxExamples: 30,
  minUpdates: 2,
  roundDeadlineMs: 1000,
  coordClip: 0.5,
  dp: null,
  secagg: null,
  ...over,
});

function harness(offline: Set<number> = new Set()) {
  const clock = new ManualClock(5000);
  const metrics = createMetrics();
  const outcomes: RoundOutcome[] = [];
  const ctx: RoundContext = {
    ref: { round: 1, attempt: 1 },
    clock,
    metrics,
    online: (i) => !offline.has(i),
    send: () => true,
    defer: (fn) => queueMicrotask(fn),
    log: () => {},
    close: (o) => outcomes.push(o),
  };
  return { clock, metrics, outcomes, ctx };
}

const vec = (...v: number[]) => Float32Array.from(v);
const float = (numExamples: number, ...v: number[]) => ({
  numExamples,
  loss: numExamples / 10,
  delta: vec(...v),
  ring: null,
});

describe('createAccumulator', () => {
  it('picks the mode from the settings: secure aggregation, else DP ring vectors, else float32', () => {
    expect(roundMode({ secagg: true, dp: null })).toBe('secure');
    expect(roundMode({ secagg: false, dp: {} })).toBe('ring');
    expect(roundMode({ secagg: false, dp: null })).toBe('float');
    const { ctx } = harness();
    const f = createAccumulator(settings(), ctx);
    expect([f.mode, f.encoding, f.ringLength, f.secure]).toEqual(['float', null, undefined, null]);
    const dp = { clipNorm: 1, noiseMultiplier: 1, bitStd: 0, adaptive: false };
    const r = createAccumulator(settings({ dp }), ctx);
    expect(r.mode).toBe('ring');
    expect(r.ringLength).toBe(vectorLength(P));
    expect(r.encoding).toMatchObject({ weighting: 'uniform', clipNorm: 1, coordClip: 0.5 });
    expect(r.encoding!.noiseVariance).toBeGreaterThan(0);
    expect(() => createAccumulator(settings({ n: 0 }), ctx)).toThrow(RangeError);
  });
});

describe('float and ring accumulators: closing rules', () => {
  it('the example-weighted mean, released as soon as every member reported', () => {
    const { ctx, outcomes, clock } = harness();
    const a = createAccumulator(settings(), ctx);
    a.add(1, float(10, 1, 1, 1, 1, 1, 1));
    a.add(3, float(30, 5, 5, 5, 5, 5, 5));
    a.settle();
    expect(outcomes).toEqual([]); // member 2 is online and may still report
    expect([a.reported, a.hasReported(2), a.hasReported(3)]).toEqual([2, false, true]);
    a.add(2, float(20, 2, 2, 2, 2, 2, 2));
    a.settle();
    expect(outcomes).toHaveLength(1);
    const o = outcomes[0];
    expect(o).toMatchObject({
      ok: true,
      why: 'all reported',
      clients: 3,
      examples: 60,
      stragglers: 0,
      dropped: 0,
    });
    if (o.ok) expect(o.trainLoss).toBeCloseTo((1 + 3 + 2) / 3, 12); // float rounds: the plain mean of losses
    if (o.ok) expect(o.mean[0]).toBeCloseTo((10 + 40 + 150) / 60, 6);
    // Closed: the deadline timer is gone and nothing more is taken.
    expect(clock.pending).toBe(0);
    expect(() => a.add(1, float(1, 0, 0, 0, 0, 0, 0))).toThrow();
    a.settle();
    expect(outcomes).toHaveLength(1);
  });

  it('closes early when only offline members are missing, once minUpdates reported', () => {
    const offline = new Set<number>();
    const { ctx, outcomes } = harness(offline);
    const a = createAccumulator(settings({ n: 4 }), ctx);
    a.add(1, float(1, 1, 1, 1, 1, 1, 1));
    offline.add(2);
    offline.add(3);
    a.settle();
    expect(outcomes).toEqual([]); // 1 of 2 required, and member 4 is online
    a.add(4, float(1, 3, 3, 3, 3, 3, 3));
    a.settle();
    expect(outcomes[0]).toMatchObject({
      ok: true,
      why: 'remaining clients offline',
      clients: 2,
      stragglers: 2,
    });
  });

  it('at the deadline: releases what it has, or fails with too_few_updates (on a manual clock)', () => {
    const one = harness();
    const a = createAccumulator(settings(), one.ctx);
    expect(a.deadlineAt).toBe(6000);
    a.add(2, float(5, 1, 2, 3, 4, 5, 6));
    one.clock.advance(999);
    expect(one.outcomes).toEqual([]);
    one.clock.advance(1);
    expect(one.outcomes).toEqual([
      {
        ok: false,
        reason: 'too_few_updates',
        why: 'deadline: 1 of 2 required updates',
        updates: 1,
        dropped: 2,
      },
    ]);

    const two = harness();
    const b = createAccumulator(settings(), two.ctx);
    b.add(1, float(5, 1, 1, 1, 1, 1, 1));
    b.add(2, float(5, 3, 3, 3, 3, 3, 3));
    two.clock.advance(1000);
    expect(two.outcomes[0]).toMatchObject({
      ok: true,
      why: 'deadline',
      clients: 2,
      stragglers: 1,
      dropped: 1,
    });
  });

  it('stop() cancels the deadline: close is never called', () => {
    const { ctx, outcomes, clock } = harness();
    const a = createAccumulator(settings(), ctx);
    a.stop();
    clock.advance(10_000);
    expect(outcomes).toEqual([]);
  });

  it('refuses a member outside the cohort, a second input, or the wrong kind of vector', () => {
    const { ctx } = harness();
    const a = createAccumulator(settings(), ctx);
    expect(() => a.add(0, float(1, 0, 0, 0, 0, 0, 0))).toThrow(RangeError);
    expect(() => a.add(4, float(1, 0, 0, 0, 0, 0, 0))).toThrow(RangeError);
    expect(() => a.add(1, { delta: null, ring: new Uint32Array(P + 2) })).toThrow(TypeError);
    a.add(1, float(1, 0, 0, 0, 0, 0, 0));
    expect(() => a.add(1, float(1, 0, 0, 0, 0, 0, 0))).toThrow(/already reported/);
    expect(a.reported).toBe(1);
  });

  it('ring: decodes the sum of encoded contributions back to their uniform mean', () => {
    const { ctx, outcomes } = harness();
    const dp = { clipNorm: 10, noiseMultiplier: 0, bitStd: 0, adaptive: false };
    const a = createAccumulator(settings({ dp, coordClip: 10 }), ctx);
    const rand = createSecureRandom();
    const deltas = [vec(0.1, -0.2, 0.3, 0, 1, -1), vec(0.3, 0.2, -0.1, 0, 1, 1), vec(-0.1, 0, 0, 0.5, 1, 0)];
    deltas.forEach((d, i) =>
      a.add(i + 1, { delta: null, ring: encodeContribution(d, 7, a.encoding!, rand, 2).ring }),
    );
    a.settle();
    const o = outcomes[0];
    expect(o.ok).toBe(true);
    if (!o.ok) return;
    const resolution = 2 / a.encoding!.scale; // stochastic rounding moves each value by < 1 / scale
    for (let j = 0; j < P; j++)
      expect(Math.abs(o.mean[j] - (deltas[0][j] + deltas[1][j] + deltas[2][j]) / 3)).toBeLessThan(resolution);
    // Uniform weighting (DP): the example counts are nowhere, and no loss is sent under DP.
    expect(o).toMatchObject({ clients: 3, examples: null, trainLoss: null, indicatorSum: null });
  });

  it('ring: a huge well-formed vector fails the bounds check before decoding; counted by check', async () => {
    const { ctx, outcomes, metrics } = harness();
    const d = 64;
    const dp = { clipNorm: 0.1, noiseMultiplier: 0, bitStd: 0, adaptive: false };
    const a = createAccumulator(settings({ numParams: d, dp }), ctx);
    const plan = a.encoding!;
    const rand = createSecureRandom();
    const honest = () => Float32Array.from({ length: d }, (_, i) => (i % 2 ? 0.01 : -0.01));
    a.add(1, { delta: null, ring: encodeContribution(honest(), 1, plan, rand).ring });
    a.add(2, { delta: null, ring: encodeContribution(honest(), 1, plan, rand).ring });
    // Every parameter word at the top of one client's range: each a valid ring value, and no coordinate
    // beyond what three clients could reach, but the L2 norm is sqrt(64) / 3 times what three clipped
    // clients can send.
    const huge = encodeContribution(new Float32Array(d), 1, plan, rand).ring.fill(2 ** plan.bits - 1, 0, d);
    a.add(3, { delta: null, ring: huge });
    a.settle();
    expect(outcomes).toEqual([
      {
        ok: false,
        reason: 'aggregate_rejected',
        check: 'norm',
        why: expect.stringMatching(/^all reported: aggregate rejected \(L2 norm of the sum is/),
        updates: 3,
        dropped: 0,
      },
    ]);
    expect(await metricValue(metrics, 'aegis_aggregates_rejected_total', { check: 'norm' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_aggregates_rejected_total', { check: 'coordinate' })).toBe(0);
  });

  it('ring sum with example weighting (the plan of secure aggregation without DP): examples and the training loss are decoded from it', () => {
    const { ctx, outcomes } = harness();
    const plan = planRound(settings()); // no DP: weights = numExamples / the public cap 30, loss inside
    expect(plan).toMatchObject({ weighting: 'examples', maxExamples: 30 });
    expect(plan.lossScale).toBeGreaterThan(0);
    const ring = new RingAccumulator(settings(), plan, ctx);
    const rand = createSecureRandom();
    const counts = [10, 20, 30];
    const losses = [0.5, 1.5, 2.5];
    counts.forEach((n, i) =>
      ring.add(i + 1, {
        delta: null,
        ring: encodeContribution(vec(0.1, 0, 0, 0, 0, -0.1), n, plan, rand, losses[i]).ring,
      }),
    );
    ring.settle();
    const o = outcomes[0];
    expect(o.ok).toBe(true);
    if (!o.ok) return;
    expect(o.examples).toBe(60); // weightSum (60/30) x the public cap 30
    expect(o.trainLoss).toBeCloseTo(1.5, 4);
    expect(o.mean[0]).toBeCloseTo(0.1, 6);
  });
});

describe('secure accumulator', () => {
  it('keys deadline on a manual clock with nobody answering: the attempt aborts (no sum released)', async () => {
    const { ctx, outcomes, clock, metrics } = harness();
    const sa = {
      tag: 't',
      keysDeadlineMs: 100,
      sharesDeadlineMs: 100,
      unmaskDeadlineMs: 100,
      dropout: 0.1,
      corrupt: 0.05,
      thresholdFraction: 0.5,
    };
    const a = createAccumulator(settings({ n: 4, secagg: sa }), ctx);
    expect(a.mode).toBe('secure');
    expect(a.secure!.info(2)).toEqual({ tag: 't', index: 2, n: 4, t: a.secure!.t, k: a.secure!.k });
    expect(a.secure!.phase).toBe('keys');
    expect(a.deadlineAt).toBe(5100);
    clock.advance(99);
    expect(outcomes).toEqual([]);
    clock.advance(1);
    expect(outcomes).toEqual([
      { ok: false, reason: 'secagg_aborted', why: expect.any(String), updates: 0, dropped: 4 },
    ]);
    expect(await metricValue(metrics, 'aegis_secagg_dropouts_total', { phase: 'keys' })).toBe(4);
    expect(await metricValue(metrics, 'aegis_secagg_rounds_total', { outcome: 'aborted' })).toBe(1);
  });
});
