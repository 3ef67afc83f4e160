import { describe, expect, it } from 'vitest';
import { roundLabel } from './round-label.ts';

describe('roundLabel', () => {
  it('counts rounds in progress against the target', () => {
    expect(roundLabel({ phase: 'waiting', round: 1, targetRounds: 5 })).toBe('1 of 5');
    expect(roundLabel({ phase: 'training', round: 5, targetRounds: 5 })).toBe('5 of 5');
    expect(roundLabel({ phase: 'evaluating', round: 3, targetRounds: 5 })).toBe('3 of 5');
  });

  it('says "done after N of N rounds" once the last round ended (status.round is then N + 1)', () => {
    expect(roundLabel({ phase: 'done', round: 6, targetRounds: 5 })).toBe('done after 5 of 5 rounds');
    expect(roundLabel({ phase: 'done', round: 2, targetRounds: 1 })).toBe('done after 1 of 1 round');
    for (let n = 1; n <= 20; n++)
      expect(roundLabel({ phase: 'done', round: n + 1, targetRounds: n })).toMatch(
        new RegExp(`^done after ${n} of ${n} rounds?$`),
      );
  });

  it('an early stop (privacy budget) says how many rounds were done of the target', () => {
    expect(roundLabel({ phase: 'done', round: 4, targetRounds: 10 })).toBe('done after 3 of 10 rounds');
  });

  it('without a target (0: unlimited) shows the bare round number', () => {
    expect(roundLabel({ phase: 'training', round: 7, targetRounds: 0 })).toBe('7');
    expect(roundLabel({ phase: 'done', round: 8, targetRounds: 0 })).toBe('done after 7 rounds');
  });

  it('clamps at the target in any phase', () => {
    expect(roundLabel({ phase: 'waiting', round: 6, targetRounds: 5 })).toBe('5 of 5');
  });

  it('refuses a nonsense round', () => {
    expect(() => roundLabel({ phase: 'training', round: -1, targetRounds: 5 })).toThrow(/whole number/);
    expect(() => roundLabel({ phase: 'training', round: 1.5, targetRounds: 5 })).toThrow(/whole number/);
  });
});
