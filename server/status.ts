import type { BoundsFailure } from '../shared/fl/encoding.ts';
import { PROTOCOL_VERSION, type RoundRef, type RoundSummary } from '../shared/protocol/messages.ts';
import type {
  DataKind,
  DefenceStatus,
  EvaluationStatus,
  PrivacyStatus,
  SecAggStatus,
  ServerStatus,
} from '../shared/protocol/status.ts';
import type { DegreeReport } from './aggregator/index.ts';
import type { ClientCounts, ClientRegistry } from './clients.ts';
import type { ServerConfig } from './config.ts';
import type { GlobalModel } from './global-model.ts';
import type { RoundState } from './round-state.ts';

/** Everything the status view shows, as the coordinator holds it. */
export interface StatusInput {
  state: RoundState;
  /** The round in progress or next, and its latest attempt. */
  ref: RoundRef;
  targetRounds: number;
  secaggEnabled: boolean;
  /** Neighbour degree and threshold of the secure round in progress, or the last one. */
  degree: DegreeReport | null;
  /** --secagg-malicious-server (shown before the first secure round too). */
  maliciousServer: boolean;
  clients: ClientCounts;
  /** Ready clients a round waits for. */
  needed: number;
  data: { kind: DataKind; description: string } | null;
  model: { name: string; numParams: number };
  evalBackend: string;
  initial: { accuracy: number; loss: number } | null;
  history: RoundSummary[];
  evaluation: EvaluationStatus | null;
  privacy: PrivacyStatus | { enabled: false };
  defences: DefenceStatus;
}

/** Aggregates refused by their bounds check: counted by check in the accumulator; kept here for status. */
export class AggregateRejections {
  count = 0;
  last: DefenceStatus['lastAggregateRejection'] = null;

  note(ref: RoundRef, check: BoundsFailure, message: string): void {
    this.count++;
    this.last = { ...ref, check, message };
  }
}

/** What the coordinator holds, from which coordinatorStatus assembles the view's input. */
export interface CoordinatorView {
  config: ServerConfig;
  model: GlobalModel;
  clients: ClientRegistry;
  evalBackend: string;
  state: RoundState;
  ref: RoundRef;
  degree: DegreeReport | null;
  rejections: AggregateRejections;
  needed: number;
  data: StatusInput['data'];
}

export function coordinatorStatus(v: CoordinatorView): ServerStatus {
  const cfg = v.config;
  return statusView({
    state: v.state,
    ref: v.ref,
    targetRounds: cfg.rounds,
    secaggEnabled: cfg.secagg,
    degree: v.degree,
    maliciousServer: cfg.secagg && cfg.secaggMaliciousServer,
    clients: v.clients.counts(),
    needed: v.needed,
    data: v.data,
    model: { name: v.model.taskName, numParams: v.model.numParams },
    evalBackend: v.evalBackend,
    initial: v.model.initial,
    history: v.model.history,
    evaluation: v.model.evaluation,
    privacy: v.model.privacyStatus(),
    defences: {
      aggregatesRejected: v.rejections.count,
      lastAggregateRejection: v.rejections.last,
      modelsRejected: v.model.modelsRejected,
      maxLossIncrease: cfg.maxLossIncrease,
    },
  });
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
    roundsCompleted: s.history.length,
    selected: training ? training.cohort.length : st.kind === 'evaluating' ? st.selected : 0,
    reported: training ? training.accumulator.reported : st.kind === 'evaluating' ? st.reported : 0,
    deadlineAt: training ? training.accumulator.deadlineAt : null,
    clients: { ...s.clients, needed: s.needed },
    data: s.data?.kind ?? null,
    dataDescription: s.data?.description ?? null,
    model: s.model,
    evalBackend: s.evalBackend,
    initial: s.initial && scoresOnly(s.initial),
    history: s.history,
    evaluation: s.evaluation,
    secagg: secaggView(s, training?.accumulator.secure?.phase ?? null),
    privacy: s.privacy,
    defences: s.defences,
    stopReason: st.kind === 'done' ? st.reason : null,
  };
}

function secaggView(s: StatusInput, phase: SecAggStatus['phase']): SecAggStatus {
  const r = s.degree;
  const d = r?.degree;
  const b = d?.bounds;
  return {
    enabled: s.secaggEnabled,
    phase,
    k: d?.k ?? null,
    t: d?.t ?? null,
    n: r?.n ?? null,
    complete: d?.complete ?? null,
    toleratedColluders: d?.toleratedColluders ?? null,
    toleratedColludersSplit: d?.toleratedColludersSplit ?? null,
    bounds: b ? { securityBits: finite(b.securityBits), correctnessBits: finite(b.correctnessBits) } : null,
    maliciousServer: s.maliciousServer,
    splitBound: r?.split ? 2 ** r.split.log2Bound : null,
    description: r?.description ?? null,
  };
}

/** The initial evaluation without its per-class part (that is `evaluation`, for the current model). */
function scoresOnly<T extends object>(e: T): T {
  const { classes: _c, samplePreds: _p, sampleLabels: _l, ...rest } = e as T & Record<string, unknown>;
  return rest as T;
}

/** JSON has no infinities (a bound of probability 0 gives infinitely many bits): null instead. */
const finite = (v: number): number | null => (Number.isFinite(v) ? v : null);
