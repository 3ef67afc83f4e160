import type { RejectReason } from '../base/errors.ts';
import type { DataSpec } from '../data/dataset.ts';
import type { Task } from '../model/task.ts';
import type { EncodingPlan } from '../fl/encoding.ts';
import type { AdvertiseKeys, SurvivorSet, SurvivorSignature } from '../secagg/types.ts';
import type { WireInbox, WireReveal, WireRoster, WireShares, WireUnmask } from '../secagg/wire.ts';
import type { ServerStatus } from './status.ts';

/**
 * Bumped on any incompatible change to the events or payloads below. 3: welcome/round:start carry the
 * pinned `task` (not `model`), masks are AES-256-CTR (not ChaCha20), round:start may carry secagg.cohort.
 */
export const PROTOCOL_VERSION = 3;

/** Training backends a client may report (tfjs backend names). */
export const BACKENDS = ['webgpu', 'webgl', 'wasm', 'cpu', 'tensorflow'] as const;
export type BackendName = (typeof BACKENDS)[number];

export const CLIENT_SOURCES = ['demo', 'embed', 'swarm', 'node'] as const;
export type ClientSource = (typeof CLIENT_SOURCES)[number];

/**
 * A server-issued identity: the session id names the client (it is not secret); the resume token (a MAC
 * under the server's key over the id, its shard and the issue time, base64url) proves it. The server
 * keeps no token; every welcome carries a fresh one.
 */
export interface SessionCredentials {
  sessionId: string;
  resumeToken: string;
}

export interface Hello {
  protocolVersion: number;
  source: ClientSource;
  /** Absent: start a new session. Present: resume that session (after a reconnect or a reload). */
  resume?: SessionCredentials;
}

export interface Welcome extends SessionCredentials {
  protocolVersion: number;
  /** What this server trains (shared/model/task.ts); a client that pinned another task refuses it. */
  task: Task;
  data: DataSpec;
}

/** The client is prepared to train. Its example count is not sent: the server never learns it in the clear. */
export interface Ready {
  backend: BackendName;
}

/** Clients' optimizers: plain SGD, SGD with heavy-ball momentum LOCAL_MOMENTUM, or Adam. */
export const LOCAL_OPTIMIZERS = ['sgd', 'momentum', 'adam'] as const;
export type LocalOptimizer = (typeof LOCAL_OPTIMIZERS)[number];
/**
 * The coefficient of 'momentum'. Fixed: a task (and its hash) names the optimizer, not its constants, so
 * another coefficient needs another optimizer name, never a change here. Clients built before 'momentum'
 * refuse a plan naming it (plan.optimizer), which the server counts as a refusal.
 */
export const LOCAL_MOMENTUM = 0.9;
export const isLocalOptimizer = (v: unknown): v is LocalOptimizer =>
  (LOCAL_OPTIMIZERS as readonly unknown[]).includes(v);

/**
 * Most epochs a plan may ask for; a plan with steps may not ask more example-passes of a client than this
 * many epochs of its data (the trainer, which knows the data, refuses it).
 */
export const MAX_PLAN_EPOCHS = 100;

/** Training hyper-parameters for one round; weights travel beside them as binary. */
export interface TrainConfig {
  epochs: number;
  /**
   * Local steps instead of epochs: exactly this many batches of batchSize (of all its data, for a client
   * holding less), drawn from fresh permutations of the client's data as needed. epochs is then 1 and
   * unused. Absent = epochs over the data.
   */
  steps?: number;
  batchSize: number;
  learningRate: number;
  optimizer: LocalOptimizer;
  /** FedProx: weight mu of the proximal term (mu / 2) ||w - w_global||^2 added to the local loss; 0 or absent = off. */
  proximalMu?: number;
  /** Random crop (zero-pad 4) + horizontal mirror of every training batch; absent = off. */
  augment?: boolean;
  /**
   * Logit adjustment for label skew: the local loss is the cross-entropy of softmax(z + log pi), pi the
   * client's own label frequencies, so a client stops pushing down the classes it does not hold. Absent =
   * off. pi stays on the device, but the update then shows exactly which classes the client lacks
   * (docs/threat-model.md).
   */
  logitAdjust?: boolean;
}

export interface RoundStart {
  round: number;
  attempt: number;
  /** The task this round trains: the client refuses it (task_mismatch) unless its hash is the pinned one. */
  task: Task;
  /** The task's plan (the client refuses a round whose train differs from task.plan). */
  train: TrainConfig;
  /** Milliseconds from now until the server stops accepting updates for this round. */
  deadlineMs: number;
  /** Global weights, little-endian float32. */
  weights: ArrayBuffer | Uint8Array;
  /** Present when updates travel as ring vectors (secure aggregation and/or DP): how to encode them. */
  encoding?: EncodingPlan;
  /** Present when this round uses secure aggregation. */
  secagg?: SecAggRoundInfo;
}

export interface SecAggRoundInfo {
  /** Binds keys, boxes and masks to this round attempt. */
  tag: string;
  /** This client's 1-based index in the cohort. */
  index: number;
  /** Clients invited (the highest index); also the cohort size unless `cohort` says otherwise. */
  n: number;
  /** Shamir threshold. */
  t: number;
  /** Neighbours per client (cohort - 1 for the complete graph). */
  k: number;
  /**
   * Over-selection: at most this many of the n invited clients take part, the first to advertise valid
   * keys (R0); k and t are sized for it, and rosters list only its members. Absent: all n (no over-selection).
   * n stays the highest index.
   */
  cohort?: number;
  /**
   * Present (true) when the round runs with authenticated keys and the consistency round (R3): keys carry
   * the client's attested identity, and survivors sign U3 before unmasking. Absent otherwise.
   */
  consistency?: true;
}

/** Every secure-aggregation message names its round attempt; anything else is late or early. */
export interface RoundRef {
  round: number;
  attempt: number;
}

/**
 * Why a client sits a round attempt out: the reason only (e.g. 'below_floor'), from the closed set. The
 * words the client shows its page stay on the page; the server counts the reason and logs nothing else.
 */
export interface RoundRefusal extends RoundRef {
  reason: RejectReason;
}

/** The step at which an over-selected cohort is fixed: R0 key advertising, or the update (plain rounds). */
export const RELEASE_STEPS = ['keys', 'update'] as const;
export type ReleaseStep = (typeof RELEASE_STEPS)[number];

/**
 * Over-selection (--over-select): the attempt's cohort was fixed at `step` without this invited client
 * (the first --clients-per-round to answer form it). It is sent nothing more for the attempt, is not a
 * dropout, and may drop its work on it and wait for the next round:start. Clients that do not know the
 * event ignore it; their late messages are then refused (not_selected, or late) as before.
 */
export interface RoundRelease extends RoundRef {
  step: ReleaseStep;
}

/**
 * An update in a float round (no secure aggregation, no DP): the server sees each update anyway, so the
 * example count (FedAvg weight), training time and loss travel beside the delta.
 */
export interface FloatUpdate {
  round: number;
  attempt: number;
  numExamples: number;
  trainMs: number;
  /** Mean training loss of the last local epoch. */
  loss: number;
  /** w_local - w_global as little-endian float32. */
  delta: ArrayBuffer | Uint8Array;
}

/**
 * An update in a ring round (secure aggregation and/or DP, i.e. round:start carried an encoding plan):
 * only the ring vector. The weight and the loss travel inside it (shared/fl/encoding.ts), so the server
 * learns them only summed; nothing per client is sent in the clear. Any other field is refused.
 */
export interface RingUpdate {
  round: number;
  attempt: number;
  /** The (masked, under secure aggregation) ring vector as little-endian uint32. */
  delta: ArrayBuffer | Uint8Array;
}

export type Update = FloatUpdate | RingUpdate;

export interface Rejection {
  event: string;
  reason: RejectReason;
  message: string;
}

/**
 * The answer to a client message. `duplicate`: the same message was already accepted (a re-send after a
 * reconnect); it was counted once, nothing else changed.
 */
export type Ack = { ok: true; duplicate?: true } | { ok: false; reason: RejectReason; message: string };

export interface RoundSummary {
  round: number;
  attempts: number;
  clients: number;
  /**
   * Examples behind the aggregate. Float rounds: the sum of the clients' numExamples. Ring rounds with
   * example weighting (secure aggregation without DP): decoded from the weight sum, weightSum times the
   * public cap --max-examples-per-client (each client's count capped there, rounded to an integer).
   * null under uniform weighting (DP): no example count is ever sent.
   */
  examples: number | null;
  stragglers: number;
  /** Test accuracy and loss of the global model after this round (the kept one when `rejected`). */
  accuracy: number;
  loss: number;
  /**
   * Mean training loss of the clients in the aggregate: decoded from the sum in ring rounds, the mean of
   * the reported losses in float rounds; null under DP (no loss is sent).
   */
  trainLoss: number | null;
  /**
   * Set when the round's new model was discarded by the loss guard (--max-loss-increase): why, and the
   * discarded model's test scores. The global model stayed as before this round.
   */
  rejected: { reason: string; accuracy: number; loss: number } | null;
  durationMs: number;
  /** Of durationMs, the held-out evaluation of the new model (null when the evaluation failed). */
  evalMs: number | null;
  completedAt: string;
  secagg: boolean;
  /** Privacy spent after this round (null without DP). */
  epsilon: number | null;
  /** Clip norm used this round (null without DP). */
  clipNorm: number | null;
}

/** Typed socket.io event maps; the server and client sockets are declared with these. */
export interface ServerToClientEvents {
  welcome: (w: Welcome) => void;
  'round:start': (r: RoundStart) => void;
  'round:end': (s: RoundSummary) => void;
  /** Over-selection: this invited client is not in the attempt's cohort (see RoundRelease). */
  'round:release': (m: RoundRelease) => void;
  rejected: (r: Rejection) => void;
  'secagg:roster': (m: RoundRef & WireRoster) => void;
  'secagg:inbox': (m: RoundRef & WireInbox) => void;
  /** R3 only: the survivor set U3, to sign. */
  'secagg:survivors': (m: RoundRef & SurvivorSet) => void;
  'secagg:unmask': (m: RoundRef & WireUnmask) => void;
  /**
   * To observers only (sockets that connect with auth `{ observe: true }`, e.g. the demo page): the
   * server's status, pushed when it changes (GET /api/status's view, history bounded). Additive: clients
   * that do not observe never receive it.
   */
  status: (s: ServerStatus) => void;
}

export interface ClientToServerEvents {
  hello: (h: Hello) => void;
  ready: (r: Ready) => void;
  update: (u: Update, ack?: (a: Ack) => void) => void;
  'secagg:keys': (m: RoundRef & AdvertiseKeys, ack?: (a: Ack) => void) => void;
  'secagg:shares': (m: RoundRef & WireShares, ack?: (a: Ack) => void) => void;
  /** R3 only: the client's identity signature over the survivor set it was told. */
  'secagg:signature': (m: RoundRef & SurvivorSignature, ack?: (a: Ack) => void) => void;
  'secagg:reveal': (m: RoundRef & WireReveal, ack?: (a: Ack) => void) => void;
  /** A client declining a request it must not answer (e.g. both shares of one peer). */
  'secagg:refuse': (m: RoundRef & { reason: RejectReason; message: string }) => void;
  /** A client declining a round whose plan is below its page's floors: it sits this attempt out. */
  'round:refuse': (m: RoundRefusal) => void;
}
