import { PROTOCOL_VERSION, type RoundRef, type RoundSummary } from '../shared/protocol/messages.ts';
import type { DefenceStatus, PrivacyStatus, ServerStatus } from '../shared/protocol/status.ts';
import type { ClientCounts } from './clients.ts';
import type { RoundState } from './round-state.ts';

/** Everything the status view shows, as the coordinator holds it. */
export interface StatusInput {
  state: RoundState;
  /** The round in progress or next, and its latest attempt. */
  ref: RoundRef;
  targetRounds: number;
  secaggEnabled: boolean;
  /** Neighbour degree and threshold of the secure round in progress, or the last one. */
  degree: { k: number; t: number } | null;
  clients: ClientCounts;
  model: { name: string; numParams: number };
  evalBackend: string;
  initial: { accuracy: number; loss: number } | null;
  history: RoundSummary[];
  privacy: PrivacyStatus | { enabled: false };
  defences: DefenceStatus;
}

/**
 * GET /api/status from the coordinator's state. Pure, and it walks no client records (the registry
 * keeps its counts), so it costs the same with any number of clients.
 */
export function statusView(s: StatusInput): ServerStatus {
  const st = s.state;
  const training = st.kind === 'training' ? st : null;
  return {
    protocolVersion: PROTOCOL_VERSION,
    phase: st.kind,
    round: s.ref.round,
    attempt: s.ref.attempt,
    targetRounds: s.targetRounds,
    selected: training ? training.cohort.length : st.kind === 'evaluating' ? st.selected : 0,
    reported: training ? training.accumulator.reported : st.kind === 'evaluating' ? st.reported : 0,
    deadlineAt: training ? training.accumulator.deadlineAt : null,
    clients: s.clients,
    model: s.model,
    evalBackend: s.evalBackend,
    initial: s.initial,
    history: s.history,
    secagg: {
      enabled: s.secaggEnabled,
      phase: training?.accumulator.secure?.phase ?? null,
      k: s.degree?.k ?? null,
      t: s.degree?.t ?? null,
    },
    privacy: s.privacy,
    defences: s.defences,
    stopReason: st.kind === 'done' ? st.reason : null,
  };
}
