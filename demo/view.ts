/**
 * What the demo page says, as pure functions of the server's status and this tab's own events (no DOM):
 * every line is derived from one status object, so the page cannot contradict itself.
 */
import { CIFAR10_CLASSES } from '../shared/data/cifar10.ts';
import { roundLabel } from '../shared/protocol/round-label.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import type { ClientState } from '../client/client-api.ts';

/** The round line: "Round k of N" (never k > N), with whether it has started. */
export function roundText(s: ServerStatus): string {
  const label = roundLabel(s);
  if (s.phase === 'done') return label;
  return s.phase === 'waiting' ? `${label} (not started)` : label;
}

/** The phase line: what the server is doing now, and what it waits for. */
export function phaseText(s: ServerStatus): string {
  switch (s.phase) {
    case 'waiting': {
      const { ready, needed } = s.clients;
      if (ready < needed) return `waiting for ${needed} client${needed === 1 ? '' : 's'}, ${ready} ready`;
      return `starting the next round (${ready} ready)`;
    }
    case 'training': {
      const step = s.secagg.phase ? `, secure aggregation: ${s.secagg.phase}` : '';
      return `training: ${s.reported} of ${s.selected} reported${step}`;
    }
    case 'evaluating':
      return `evaluating the new model (${s.reported} of ${s.selected} updates)`;
    case 'done':
      return s.stopReason ? `stopped: ${s.stopReason}` : 'done';
  }
}

/** Rounds released so far, against the target. */
export function completedText(s: ServerStatus): string {
  return s.targetRounds > 0 ? `${s.roundsCompleted} of ${s.targetRounds}` : String(s.roundsCompleted);
}

/** The header's data source. */
export function dataText(s: ServerStatus): string {
  if (s.data === 'cifar10') return 'CIFAR-10 (real images)';
  if (s.data === 'synthetic') return 'synthetic images (a stand-in: this server has no CIFAR-10)';
  return 'unknown';
}

/** Class names for labels: CIFAR-10's, or numbers. */
export function classNames(s: ServerStatus, n: number): string[] {
  return Array.from({ length: n }, (_, i) =>
    s.data === 'cifar10' && i < CIFAR10_CLASSES.length ? CIFAR10_CLASSES[i] : `class ${i}`,
  );
}

/** What this tab knows of the rounds it took part in. */
export interface TabRounds {
  /** The round this tab is training, if any. */
  training: number | null;
  /** Rounds whose update the server accepted from this tab. */
  accepted: number[];
}

/** This tab's state, in the context of the round the server is in. */
export function tabStateText(
  state: ClientState,
  waitingMessage: string,
  tab: TabRounds,
  s: ServerStatus | null,
): string {
  if (state === 'waiting') return `waiting: ${waitingMessage}`;
  if (state !== 'idle' || !s) return state;
  if (s.phase === 'training' || s.phase === 'evaluating') {
    if (tab.accepted.includes(s.round))
      return `idle: update for round ${s.round} sent, waiting for the others`;
    if (s.phase === 'training') return `idle: not in round ${s.round}'s cohort`;
  }
  if (s.phase === 'done') return 'idle: training is over';
  return 'idle: ready for the next round';
}

/** Rounds this tab trained, and the one in progress. */
export function trainedText(tab: TabRounds, count: number): string {
  return tab.training !== null ? `${count} (round ${tab.training} in progress)` : String(count);
}

/** One message as it left: its event and size. */
export interface Sent {
  event: string;
  round: number | null;
  bytes: number;
}

const size = (b: number): string =>
  b < 1024
    ? `${b} B`
    : b < 1024 * 1024
      ? `${(b / 1024).toFixed(1)} KiB`
      : `${(b / 1024 / 1024).toFixed(2)} MiB`;

/** What left this browser for one round: the total, then each kind of message. */
export function sentText(sent: readonly Sent[], round: number, masked: boolean | null): string {
  const mine = sent.filter((m) => m.round === round);
  if (mine.length === 0) return '–';
  const by = new Map<string, number>();
  for (const m of mine) by.set(m.event, (by.get(m.event) ?? 0) + m.bytes);
  const total = mine.reduce((a, m) => a + m.bytes, 0);
  const parts = [...by].map(([e, b]) => {
    const name =
      e === 'update' ? `model update${masked === null ? '' : masked ? ' (masked)' : ' (not masked)'}` : e;
    return `${name} ${size(b)}`;
  });
  return `round ${round}: ${size(total)} — ${parts.join(', ')}`;
}

/** ε spent against the budget, when DP is on. */
export function epsilonText(s: ServerStatus): string | null {
  const p = s.privacy;
  if (!p.enabled) return null;
  const pct =
    p.epsilonBudget > 0 ? ` (${Math.round((100 * p.epsilon) / p.epsilonBudget)}% of the budget)` : '';
  return `ε ${p.epsilon.toFixed(2)} of ${p.epsilonBudget}${pct} for the released models · ε ${p.epsilonAgainstServer.toFixed(2)} against the server`;
}
