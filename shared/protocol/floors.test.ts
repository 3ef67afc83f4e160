import { describe, expect, it } from 'vitest';
import { planEncoding, type EncodingPlan } from '../fl/encoding.ts';
import { MODELS, numParams } from '../model/spec.ts';
import { presetTask } from '../model/task.ts';
import { chooseDegree } from '../secagg/graph.ts';
import {
  checkRoundAgainstFloors,
  DEFAULT_FLOORS,
  makeFloors,
  parseFloors,
  planNoiseMultiplier,
  type FloorCheck,
  type Floors,
} from './floors.ts';
import type { RoundStart, SecAggRoundInfo } from './messages.ts';

const model = MODELS.tiny;
const d = numParams(model);
const TRAIN = { epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: 'sgd' } as const;

function dpPlan(z: number, minSurvivors: number, clipNorm = 1): EncodingPlan {
  return planEncoding({
    numParams: d,
    maxClients: 20,
    clipNorm,
    coordClip: 0.5,
    weighting: 'uniform',
    maxExamples: 100,
    noise: { multiplier: z, minSurvivors, bitStd: 0 },
  });
}

const plainPlan = (): EncodingPlan =>
  planEncoding({
    numParams: d,
    maxClients: 20,
    clipNorm: null,
    coordClip: 0.5,
    weighting: 'examples',
    maxExamples: 100,
    noise: null,
  });

/** A round as the server builds it today: chooseDegree's (k, t) for n clients. */
function round(
  n: number | null,
  encoding: EncodingPlan | undefined,
  over: Partial<SecAggRoundInfo> = {},
): RoundStart {
  const secagg =
    n === null
      ? undefined
      : { tag: 'x', index: 1, n, ...(({ k, t }) => ({ k, t }))(chooseDegree(n)), ...over };
  return {
    round: 1,
    attempt: 1,
    task: presetTask(model.name, TRAIN),
    train: TRAIN,
    deadlineMs: 1000,
    weights: new Uint8Array(0),
    encoding,
    secagg,
  };
}

const why = (c: FloorCheck): string => (c.ok ? 'ok' : `${c.reason}: ${c.message}`);

describe('floors from the page', () => {
  it('defaults keep the demo working: secure aggregation required, hard minimums, no DP floor', () => {
    expect(DEFAULT_FLOORS).toEqual({
      requireSecAgg: true,
      minCohort: 3,
      minThreshold: 2,
      minNoiseMultiplier: 0,
      maxClipNorm: null,
    });
    // The demo: secagg on, a few clients, no DP.
    for (const n of [3, 4, 10])
      expect(checkRoundAgainstFloors(round(n, plainPlan()), DEFAULT_FLOORS)).toMatchObject({ ok: true });
  });

  it('parses data-* attributes (dataset keys or full names) and refuses malformed or weakening values', () => {
    expect(parseFloors({})).toEqual(DEFAULT_FLOORS);
    expect(
      parseFloors({
        secagg: 'optional',
        minCohort: '10',
        minThreshold: ' 4 ',
        minNoise: '0.8',
        maxClip: '1.5e0',
      }),
    ).toEqual({
      requireSecAgg: false,
      minCohort: 10,
      minThreshold: 4,
      minNoiseMultiplier: 0.8,
      maxClipNorm: 1.5,
    });
    expect(parseFloors({ 'data-min-cohort': '12', consent: 'required', backends: 'wasm' }).minCohort).toBe(
      12,
    );
    expect(() => parseFloors({ secagg: 'yes' })).toThrow(/data-secagg="yes"/);
    expect(() => parseFloors({ minCohort: '2' })).toThrow(/minCohort must be an integer >= 3/);
    expect(() => parseFloors({ minThreshold: '1' })).toThrow(/>= 2/);
    expect(() => parseFloors({ minCohort: '5.5' })).toThrow(/whole number/);
    expect(() => parseFloors({ minNoise: '-1' })).toThrow(/data-min-noise/);
    expect(() => parseFloors({ minNoise: 'NaN' })).toThrow(/data-min-noise/);
    expect(() => parseFloors({ maxClip: '0' })).toThrow(/maxClipNorm/);
    // A threshold floor implies a cohort floor one above it.
    expect(parseFloors({ minThreshold: '6' }).minCohort).toBe(7);
    expect(() => makeFloors({ requireSecAgg: 'no' as unknown as boolean })).toThrow(RangeError);
    expect(() => makeFloors({ maxClipNorm: Infinity })).toThrow(RangeError);
  });
});

describe('a round plan below a floor is refused with a visible reason', () => {
  it('secure aggregation absent while required (and accepted when the page makes it optional)', () => {
    const r = round(null, undefined);
    expect(why(checkRoundAgainstFloors(r, DEFAULT_FLOORS))).toMatch(
      /below_floor: .*requires secure aggregation/,
    );
    const optional = makeFloors({ requireSecAgg: false });
    expect(checkRoundAgainstFloors(r, optional)).toEqual({
      ok: true,
      toleratedColluders: null,
      noiseMultiplier: 0,
    });
  });

  it('a cohort below the page minimum', () => {
    const floors = makeFloors({ minCohort: 8 });
    expect(why(checkRoundAgainstFloors(round(7, plainPlan()), floors))).toMatch(
      /below_floor: .*7 clients.*at least 8/,
    );
    expect(checkRoundAgainstFloors(round(8, plainPlan()), floors)).toMatchObject({
      ok: true,
      toleratedColluders: 4,
    });
  });

  it('over-selection: the plan is judged by its cohort, not by the n invited', () => {
    // 7 invited, a complete graph of 5 with t = 3: sound for the cohort, a "sparse graph of 7" without it.
    const over = round(5, plainPlan(), { n: 7, cohort: 5, index: 7 });
    expect(checkRoundAgainstFloors(over, DEFAULT_FLOORS)).toMatchObject({ ok: true, toleratedColluders: 2 });
    expect(why(checkRoundAgainstFloors(round(5, plainPlan(), { n: 7 }), DEFAULT_FLOORS))).toMatch(/sparse/);
    expect(why(checkRoundAgainstFloors(over, makeFloors({ minCohort: 6 })))).toMatch(/5 clients.*at least 6/);
    expect(why(checkRoundAgainstFloors(round(5, plainPlan(), { n: 4, cohort: 5 }), DEFAULT_FLOORS))).toMatch(
      /^malformed/,
    );
  });

  it('a threshold below the page minimum, below the majority of a complete graph, or at most k/2 on a sparse one', () => {
    const floors = makeFloors({ minThreshold: 6 });
    expect(why(checkRoundAgainstFloors(round(9, plainPlan()), floors))).toMatch(/threshold is 5.*at least 6/);
    expect(checkRoundAgainstFloors(round(10, plainPlan()), floors)).toMatchObject({ ok: true });
    const lowT = round(10, plainPlan(), { t: 5 });
    expect(why(checkRoundAgainstFloors(lowT, DEFAULT_FLOORS))).toMatch(
      /below_floor: .*honest majority 6 of 10/,
    );
    const sparseSmall = round(20, plainPlan(), { k: 8, t: 5 });
    expect(why(checkRoundAgainstFloors(sparseSmall, DEFAULT_FLOORS))).toMatch(/below_floor: .*sparse/);
    const split = round(100, plainPlan(), { k: 34, t: 17 });
    expect(why(checkRoundAgainstFloors(split, DEFAULT_FLOORS))).toMatch(/below_floor: .*half of 34/);
    expect(checkRoundAgainstFloors(round(100, plainPlan()), DEFAULT_FLOORS)).toMatchObject({ ok: true });
    const nonsense = round(10, plainPlan(), { k: 12 });
    expect(why(checkRoundAgainstFloors(nonsense, DEFAULT_FLOORS))).toMatch(/^malformed/);
  });

  it('the DP noise multiplier is derived from the plan: t updates with secure aggregation, 1 without', () => {
    const n = 10;
    const t = chooseDegree(n).t; // 6
    // The server split the noise over t survivors: the plan gives exactly z.
    const honest = dpPlan(1.0, t);
    const z = planNoiseMultiplier(honest, d, t);
    expect(z).toBeCloseTo(1.0, 9);
    // Independently: variance per client (z * Delta)^2 / t, Delta = s C + sqrt(d).
    const delta = honest.scale * 1 + Math.sqrt(d);
    expect(honest.noiseVariance).toBeCloseTo((delta * 1.0) ** 2 / t, 3);
    expect(checkRoundAgainstFloors(round(n, honest), makeFloors({ minNoiseMultiplier: 0.99 }))).toMatchObject(
      {
        ok: true,
        noiseMultiplier: z,
      },
    );
    expect(why(checkRoundAgainstFloors(round(n, honest), makeFloors({ minNoiseMultiplier: 1.01 })))).toMatch(
      /below_floor: .*noise multiplier is 1\.00 \(over 6 updates\).*at least 1.01/,
    );
    // A server that claims n_min = 50 spreads the noise thinner than the threshold protects: z sqrt(6/50).
    const thin = dpPlan(1.0, 50);
    const c = checkRoundAgainstFloors(round(n, thin), makeFloors({ minNoiseMultiplier: 0.5 }));
    expect(why(c)).toMatch(/below_floor: .*0\.346/);
    // Without secure aggregation the server sees one update: only its own noise counts.
    const alone = checkRoundAgainstFloors(
      round(null, honest),
      makeFloors({ requireSecAgg: false, minNoiseMultiplier: 0.5 }),
    );
    expect(why(alone)).toMatch(/0\.408 \(over 1 update\)/);
    // No noise at all, or example-count weights (unnoised), under a DP floor.
    expect(
      why(checkRoundAgainstFloors(round(n, plainPlan()), makeFloors({ minNoiseMultiplier: 0.5 }))),
    ).toMatch(/example counts/);
    const noNoise = { ...honest, noiseVariance: 0 };
    expect(why(checkRoundAgainstFloors(round(n, noNoise), makeFloors({ minNoiseMultiplier: 0.5 })))).toMatch(
      /noise multiplier is 0\.00/,
    );
    const floatRound = round(null, undefined);
    expect(
      why(checkRoundAgainstFloors(floatRound, makeFloors({ requireSecAgg: false, minNoiseMultiplier: 0.5 }))),
    ).toMatch(/without any/);
    const nan = { ...honest, noiseVariance: NaN };
    expect(why(checkRoundAgainstFloors(round(n, nan), makeFloors({ minNoiseMultiplier: 0.5 })))).toMatch(
      /^malformed/,
    );
  });

  it('a clip above the page maximum, the coordinate clip standing in when there is no L2 clip', () => {
    const floors = makeFloors({ maxClipNorm: 2 });
    expect(checkRoundAgainstFloors(round(10, dpPlan(1, 6, 2)), floors)).toMatchObject({ ok: true });
    expect(why(checkRoundAgainstFloors(round(10, dpPlan(1, 6, 2.5)), floors))).toMatch(
      /below_floor: .*norm 2\.50.*at most 2/,
    );
    // No L2 clip: 0.5 per coordinate over d coordinates bounds the norm by 0.5 sqrt(d).
    const expected = (0.5 * Math.sqrt(d)).toPrecision(3);
    expect(why(checkRoundAgainstFloors(round(10, plainPlan()), floors))).toContain(`norm ${expected}`);
    expect(
      checkRoundAgainstFloors(round(10, plainPlan()), makeFloors({ maxClipNorm: 0.5 * Math.sqrt(d) + 1 })),
    ).toMatchObject({ ok: true });
    const floatRound = round(null, undefined);
    expect(why(checkRoundAgainstFloors(floatRound, { ...floors, requireSecAgg: false }))).toMatch(
      /unclipped/,
    );
  });
});

it('Floors is what the secure-aggregation session takes', () => {
  const f: Floors = makeFloors({ minThreshold: 4 });
  const session: { minThreshold: number; minCohort: number } = f;
  expect(session.minCohort).toBe(5);
});
