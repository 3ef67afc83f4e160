import { describe, expect, it } from 'vitest';
import type { ServerStatus } from '../shared/protocol/status.ts';
import {
  classNames,
  completedText,
  dataText,
  epsilonText,
  phaseText,
  roundText,
  sentText,
  tabStateText,
  trainedText,
} from './view.ts';

const status = (p: Partial<ServerStatus> = {}): ServerStatus =>
  ({
    phase: 'waiting',
    round: 1,
    attempt: 0,
    targetRounds: 3,
    roundsCompleted: 0,
    selected: 0,
    reported: 0,
    clients: { connected: 1, ready: 1, needed: 2, byBackend: {} },
    data: 'synthetic',
    secagg: { phase: null },
    privacy: { enabled: false },
    stopReason: null,
    ...p,
  }) as ServerStatus;

describe('demo view', () => {
  it('before anything happened: what the round waits for, not "Round 1 / waiting"', () => {
    const s = status();
    expect(phaseText(s)).toBe('waiting for 2 clients, 1 ready');
    expect(roundText(s)).toBe('1 of 3 (not started)');
    expect(completedText(s)).toBe('0 of 3');
    expect(phaseText(status({ clients: { connected: 2, ready: 2, needed: 2, byBackend: {} } }))).toMatch(
      /^starting the next round/,
    );
  });

  it('a round in progress, and a finished run that never counts past its target', () => {
    const t = status({ phase: 'training', round: 2, selected: 3, reported: 1, roundsCompleted: 1 });
    expect(phaseText(t)).toBe('training: 1 of 3 reported');
    expect(phaseText({ ...t, secagg: { ...t.secagg, phase: 'shares' } })).toBe(
      'training: 1 of 3 reported, secure aggregation: shares',
    );
    expect(roundText(t)).toBe('2 of 3');
    const done = status({ phase: 'done', round: 4, roundsCompleted: 3 });
    expect(roundText(done)).toBe('done after 3 of 3 rounds');
    expect(completedText(done)).toBe('3 of 3');
    expect(phaseText({ ...done, stopReason: 'privacy budget reached' })).toBe(
      'stopped: privacy budget reached',
    );
  });

  it("this tab's idle state says why, from the same status", () => {
    const t = status({ phase: 'training', round: 2 });
    expect(tabStateText('idle', '', { training: null, accepted: [1] }, t)).toBe(
      "idle: not in round 2's cohort",
    );
    expect(tabStateText('idle', '', { training: null, accepted: [1, 2] }, t)).toMatch(
      /update for round 2 sent/,
    );
    expect(tabStateText('training', '', { training: 2, accepted: [] }, t)).toBe('training');
    expect(tabStateText('waiting', 'another tab', { training: null, accepted: [] }, t)).toBe(
      'waiting: another tab',
    );
    expect(trainedText({ training: 5, accepted: [] }, 4)).toBe('4 (round 5 in progress)');
    expect(trainedText({ training: null, accepted: [] }, 4)).toBe('4');
  });

  it('what left this browser in a round, by message', () => {
    const sent = [
      { event: 'ready', round: null, bytes: 20 },
      { event: 'secagg:keys', round: 2, bytes: 300 },
      { event: 'update', round: 2, bytes: 4096 },
      { event: 'secagg:reveal', round: 2, bytes: 100 },
      { event: 'update', round: 1, bytes: 4096 },
    ];
    expect(sentText(sent, 2, true)).toBe(
      'round 2: 4.4 KiB — secagg:keys 300 B, model update (masked) 4.0 KiB, secagg:reveal 100 B',
    );
    expect(sentText(sent, 3, true)).toBe('–');
  });

  it('data source, class names and epsilon against the budget', () => {
    expect(dataText(status({ data: 'cifar10' }))).toBe('CIFAR-10 (real images)');
    expect(dataText(status())).toMatch(/^synthetic/);
    expect(classNames(status({ data: 'cifar10' }), 10)[3]).toBe('cat');
    expect(classNames(status(), 2)).toEqual(['class 0', 'class 1']);
    expect(epsilonText(status())).toBeNull();
    const dp = status({
      privacy: {
        enabled: true,
        epsilon: 2,
        epsilonBudget: 8,
        epsilonAgainstServer: 5,
      } as ServerStatus['privacy'],
    });
    expect(epsilonText(dp)).toBe(
      'ε 2.00 of 8 (25% of the budget) for the released models · ε 5.00 against the server',
    );
  });
});
