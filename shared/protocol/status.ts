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
}
