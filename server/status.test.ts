import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import type { Accumulator, SecAggChannel } from './aggregator/index.ts';
import type { ClientRecord } from './clients.ts';
import type { RoundState } from './round-state.ts';
import { statusView, type StatusInput } from './status.ts';

const base = (state: RoundState): StatusInput => ({
  state,
  ref: { round: 3, attempt: 2 },
  targetRounds: 10,
  secaggEnabled: true,
  degree: { k: 4, t: 3 },
  clients: { connected: 7, ready: 5, byBackend: { wasm: 5 } },
  model: { name: 'tiny', numParams: 100 },
  evalBackend: 'cpu',
  initial: { accuracy: 0.1, loss: 2.3 },
  history: [],
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
      clients: { connected: 7, ready: 5, byBackend: { wasm: 5 } },
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
});
