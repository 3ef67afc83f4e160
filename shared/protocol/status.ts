import type { BoundsFailure } from '../fl/encoding.ts';
import type { SecAggActivePhase } from '../secagg/types.ts';
import type { RoundSummary } from './messages.ts';

export type Phase = 'waiting' | 'training' | 'evaluating' | 'done';

/**
 * Where the training data comes from: real CIFAR-10 (--cifar-dir), the synthetic stand-in, or the visitors'
 * own pages (a --task that is not CIFAR-10 images; the server holds only its --task-eval set).
 */
export type DataKind = 'cifar10' | 'synthetic' | 'page';

/** Per-class results of the current global model on the held-out set, with a few test examples' predictions. */
export interface EvaluationStatus {
  /** The round whose model this is (0: the initial model). */
  round: number;
  numClasses: number;
  /** Accuracy on each class's test examples; null for a class the test set lacks. */
  perClass: (number | null)[];
  /** confusion[t][p]: test examples of true class t the model predicts as p. */
  confusion: number[][];
  /** The first test examples (images at GET /api/samples, in this order): true and predicted class. */
  samples: { label: number; pred: number }[];
}

/** GET /api/status: the current round and the history, for the demo page and operators. */
export interface ServerStatus {
  protocolVersion: number;
  phase: Phase;
  /** The round in progress or the next one (targetRounds + 1 once all are done): see roundLabel. */
  round: number;
  attempt: number;
  targetRounds: number;
  /** Rounds released so far (history.length, whatever the history below carries). */
  roundsCompleted: number;
  selected: number;
  reported: number;
  deadlineAt: number | null;
  /** needed: ready clients a round waits for before it starts. */
  clients: { connected: number; ready: number; needed: number; byBackend: Record<string, number> };
  /** The training data's source (null where the coordinator was not told, e.g. in unit tests). */
  data: DataKind | null;
  dataDescription: string | null;
  model: { name: string; numParams: number };
  evalBackend: string;
  initial: { accuracy: number; loss: number } | null;
  history: RoundSummary[];
  /** Per-class results of the current model (null before the first evaluation, or from an evaluator without them). */
  evaluation: EvaluationStatus | null;
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
  /** Cohort size (k, t) was chosen for; null before the first secure round. */
  n: number | null;
  /** Whether the graph is complete (cohorts below 50: classic SecAgg with an honest-majority t). */
  complete: boolean | null;
  /** Colluding clients the round withstands whoever they are, when the server follows the protocol: t - 1. */
  toleratedColluders: number | null;
  /** The same when the server splits its unmask requests: 2t - k - 1. */
  toleratedColludersSplit: number | null;
  /**
   * SecAgg+ cohorts: -log2 of the security and correctness union bounds (k, t) were chosen for (a field
   * is null where its bound is exactly 0); null for small cohorts, whose guarantee is the colluder count.
   */
  bounds: { securityBits: number | null; correctnessBits: number | null } | null;
  /** --secagg-malicious-server: t also keeps split unmask requests from exposing anyone. */
  maliciousServer: boolean;
  /**
   * In malicious-server mode, the bound that t guarantees: P[some honest client has >= 2t - k colluding
   * neighbours] under the assumed colluding fraction (0 when the colluders cannot reach 2t - k); else null.
   */
  splitBound: number | null;
  /** What (k, t) protects against, in words (as the round-start log says it). */
  description: string | null;
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
