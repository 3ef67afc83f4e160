import type { BoundsFailure } from '../fl/encoding.ts';
import type { SecAggActivePhase } from '../secagg/types.ts';
import type { RoundSummary } from './messages.ts';

export type Phase = 'waiting' | 'training' | 'evaluating' | 'done';

/** GET /api/status: the current round and the history, for the demo page and operators. */
export interface ServerStatus {
  protocolVersion: number;
  phase: Phase;
  round: number;
  attempt: number;
  targetRounds: number;
  selected: number;
  reported: number;
  deadlineAt: number | null;
  clients: { connected: number; ready: number; byBackend: Record<string, number> };
  model: { name: string; numParams: number };
  evalBackend: string;
  initial: { accuracy: number; loss: number } | null;
  history: RoundSummary[];
  secagg: SecAggStatus;
  privacy: PrivacyStatus | { enabled: false };
  defences: DefenceStatus;
  /** Why training stopped early (e.g. the privacy budget), else null. */
  stopReason: string | null;
}

/** Poisoning defences at the aggregate (the server cannot see single updates under secure aggregation). */
export interface DefenceStatus {
  /** Round sums refused by the bounds check before decoding; their attempts were retried, model unchanged. */
  aggregatesRejected: number;
  /** The latest such refusal: the attempt, the check it failed and the checker's message. */
  lastAggregateRejection: { round: number; attempt: number; check: BoundsFailure; message: string } | null;
  /** New models discarded by the loss guard (their rounds are in the history with `rejected` set). */
  modelsRejected: number;
  /** The loss guard's margin in nats (--max-loss-increase); 0 = off. */
  maxLossIncrease: number;
}

export interface SecAggStatus {
  enabled: boolean;
  /** Phase of the round in progress, null between rounds or without secure aggregation. */
  phase: SecAggActivePhase | null;
  /** Neighbour degree and Shamir threshold of the round in progress (or the last). */
  k: number | null;
  t: number | null;
}

export interface PrivacyStatus {
  enabled: true;
  /** Spent on the released models: charged with the sampling rate q. */
  epsilon: number;
  /** Spent against the server, which sees who was sampled: the same rounds at q = 1. */
  epsilonAgainstServer: number;
  delta: number;
  epsilonBudget: number;
  noiseMultiplier: number;
  valueNoiseMultiplier: number;
  clipNorm: number;
  adaptiveClipping: boolean;
  q: number;
  sampling: string;
  bestOrder: number | null;
  rounds: number;
  exhausted: string | null;
}
