import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import { chooseDegree, colludersOf, DEFAULT_NEIGHBOURHOOD, log2SplitBound } from '../shared/secagg/graph.ts';
import type { Accumulator, DegreeReport, SecAggChannel } from './aggregator/index.ts';
import type { ClientRecord } from './clients.ts';
import type { RoundSummary } from '../shared/protocol/messages.ts';
import type { RoundState } from './round-state.ts';
import { statusView, type StatusInput } from './status.ts';

const report = (n: number, maliciousServer = false): DegreeReport => {
  const degree = chooseDegree(n, { ...DEFAULT_NEIGHBOURHOOD, maliciousServer });
  const split = maliciousServer
    ? log2SplitBound(n, degree.k, degree.t, colludersOf(n, DEFAULT_NEIGHBOURHOOD.corrupt))
    : null;
  return { n, degree, maliciousServer, split, description: `described ${n}` };
};

const base = (state: RoundState): StatusInput => ({
  state,
  ref: { round: 3, attempt: 2 },
  targetRounds: 10,
  secaggEnabled: true,
  degree: report(5),
  maliciousServer: false,
  clients: { connected: 7, ready: 5, byBackend: { wasm: 5 } },
  needed: 6,
  data: { kind: 'synthetic', description: 'synthetic (8 examples per client)' },
  model: { name: 'tiny', numParams: 100 },
  evalBackend: 'cpu',
  initial: { accuracy: 0.1, loss: 2.3 },
  history: [],
  evaluation: null,
  privacy: { enabled: false },
  defences: {
    aggregatesRejected: 1,
    lastAggregateRejection: { round: 3, attempt: 1, check: 'norm', message: 'too big' },
    modelsRejected: 2,
    maxLossIncrease: 1,
  },
});

const accumulator = (secure: Partial<SecAggChannel> | null): Accumulator =>
  ({ reported: 2, deadlineAt: 12345, secure }) as unknown as Accumulator;

describe('statusView', () => {
  it('training: cohort, reports, the phase deadline and the secure phase come from the attempt', () => {
    const cohort = [{}, {}, {}] as ClientRecord[];
    const s = statusView(
      base({
        kind: 'training',
        ref: { round: 3, attempt: 2 },
        startedAt: 0,
        cohort,
        members: new Map(),
        refused: new Set(),
        accepted: new Map(),
        accumulator: accumulator({ phase: 'shares' }),
      }),
    );
    expect(s).toMatchObject({
      protocolVersion: PROTOCOL_VERSION,
      phase: 'training',
      round: 3,
      attempt: 2,
      selected: 3,
      reported: 2,
      deadlineAt: 12345,
      secagg: { enabled: true, phase: 'shares', k: 4, t: 3 },
      clients: { connected: 7, ready: 5, needed: 6, byBackend: { wasm: 5 } },
      defences: base({ kind: 'waiting', pause: null }).defences,
      stopReason: null,
    });
    const plain = statusView(
      base({
        kind: 'training',
        ref: { round: 3, attempt: 2 },
        startedAt: 0,
        cohort,
        members: new Map(),
        refused: new Set(),
        accepted: new Map(),
        accumulator: accumulator(null),
      }),
    );
    expect(plain.secagg.phase).toBeNull();
  });

  it('evaluating keeps the counts of the closed attempt; waiting shows none; done carries its reason', () => {
    const ev = statusView(
      base({ kind: 'evaluating', ref: { round: 3, attempt: 2 }, startedAt: 0, selected: 4, reported: 3 }),
    );
    expect(ev).toMatchObject({ phase: 'evaluating', selected: 4, reported: 3, deadlineAt: null });
    expect(ev.secagg.phase).toBeNull();
    const w = statusView(base({ kind: 'waiting', pause: null }));
    expect(w).toMatchObject({
      phase: 'waiting',
      selected: 0,
      reported: 0,
      deadlineAt: null,
      stopReason: null,
    });
    expect(statusView(base({ kind: 'done', reason: 'privacy budget reached' }))).toMatchObject({
      phase: 'done',
      stopReason: 'privacy budget reached',
    });
    expect(statusView(base({ kind: 'done', reason: null })).stopReason).toBeNull();
  });

  it('counts completed rounds from the history, names the data source and carries per-class results', () => {
    const summary = { round: 1 } as RoundSummary;
    const evaluation = {
      round: 2,
      numClasses: 2,
      perClass: [1, null],
      confusion: [
        [3, 0],
        [0, 0],
      ],
      samples: [{ label: 0, pred: 0 }],
    };
    const s = statusView({
      ...base({ kind: 'done', reason: null }),
      ref: { round: 3, attempt: 0 },
      history: [summary, { ...summary, round: 2 }],
      evaluation,
      // The initial evaluation as the evaluator returns it: status keeps its scores only.
      initial: { accuracy: 0.1, loss: 2.3, classes: evaluation, samplePreds: [1] } as StatusInput['initial'],
    });
    expect(s).toMatchObject({ round: 3, roundsCompleted: 2, data: 'synthetic', evaluation });
    expect(s.dataDescription).toMatch(/^synthetic/);
    expect(s.initial).toEqual({ accuracy: 0.1, loss: 2.3 });
    const unknown = statusView({ ...base({ kind: 'waiting', pause: null }), data: null });
    expect(unknown).toMatchObject({ data: null, dataDescription: null, roundsCompleted: 0 });
  });

  it('secagg: what (k, t) tolerates, the SecAgg+ bounds for large cohorts, the split bound in malicious mode', () => {
    const waiting: RoundState = { kind: 'waiting', pause: null };
    const small = statusView(base(waiting)).secagg;
    expect(small).toEqual({
      enabled: true,
      phase: null,
      k: 4,
      t: 3,
      n: 5,
      complete: true,
      toleratedColluders: 2,
      toleratedColludersSplit: 1,
      bounds: null,
      maliciousServer: false,
      splitBound: null,
      description: 'described 5',
    });
    const big = statusView({ ...base(waiting), degree: report(1000) }).secagg;
    const d = chooseDegree(1000);
    expect(big).toMatchObject({ n: 1000, k: d.k, t: d.t, complete: false, toleratedColluders: d.t - 1 });
    expect(big.bounds!.securityBits).toBeGreaterThan(40);
    expect(big.bounds!.correctnessBits).toBeGreaterThan(20);
    const mal = report(1000, true);
    const m = statusView({ ...base(waiting), degree: mal, maliciousServer: true }).secagg;
    expect(m.maliciousServer).toBe(true);
    expect(m.splitBound).toBe(2 ** mal.split!.log2Bound);
    expect(m.splitBound).toBeLessThan(2 ** -40);
    expect(m.t).toBeGreaterThan(d.t);
    // Before any secure round: the mode is shown, the degree is not.
    const none = statusView({ ...base(waiting), degree: null, maliciousServer: true }).secagg;
    expect(none).toMatchObject({
      maliciousServer: true,
      k: null,
      toleratedColluders: null,
      splitBound: null,
    });
  });
});
