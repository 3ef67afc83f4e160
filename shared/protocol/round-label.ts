import type { ServerStatus } from './status.ts';

/**
 * The round counter as people read it. status.round is the round in progress or the next one, so after
 * the last round it is targetRounds + 1: a finished run says how many rounds it completed instead
 * ("done after 5 of 5 rounds"), and a running one never counts past its target.
 */
export function roundLabel(s: Pick<ServerStatus, 'phase' | 'round' | 'targetRounds'>): string {
  if (!Number.isInteger(s.round) || s.round < 0)
    throw new RangeError(`round must be a whole number, got ${s.round}`);
  const target = s.targetRounds > 0 ? s.targetRounds : null; // 0: no limit
  if (s.phase === 'done') {
    const completed = Math.max(0, s.round - 1);
    const of = target ? `${Math.min(completed, target)} of ${target}` : String(completed);
    return `done after ${of} round${(target ?? completed) === 1 ? '' : 's'}`;
  }
  return target ? `${Math.min(s.round, target)} of ${target}` : String(s.round);
}
