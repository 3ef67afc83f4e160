import type { DataSpec } from '../data/dataset.ts';
import type { ModelSpec } from '../model/spec.ts';

/** Bumped on any incompatible change to the events or payloads below. */
export const PROTOCOL_VERSION = 1;

/** Training backends a client may report (tfjs backend names). */
export const BACKENDS = ['webgpu', 'webgl', 'wasm', 'cpu', 'tensorflow'] as const;
export type BackendName = (typeof BACKENDS)[number];

export const CLIENT_SOURCES = ['demo', 'embed', 'swarm', 'node'] as const;
export type ClientSource = (typeof CLIENT_SOURCES)[number];

export interface Hello {
  protocolVersion: number;
  /** Random id the client keeps across reconnects (16-64 chars of [A-Za-z0-9_-]). */
  clientId: string;
  source: ClientSource;
}

export interface Welcome {
  protocolVersion: number;
  clientId: string;
  model: ModelSpec;
  data: DataSpec;
}

export interface Ready {
  backend: BackendName;
  numExamples: number;
}

export type LocalOptimizer = 'sgd' | 'adam';

/** Training hyper-parameters for one round; weights travel beside them as binary. */
export interface TrainConfig {
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: LocalOptimizer;
}

export interface RoundStart {
  round: number;
  attempt: number;
  model: ModelSpec;
  train: TrainConfig;
  /** Milliseconds from now until the server stops accepting updates for this round. */
  deadlineMs: number;
  /** Global weights, little-endian float32. */
  weights: ArrayBuffer | Uint8Array;
}

export interface Update {
  round: number;
  attempt: number;
  numExamples: number;
  trainMs: number;
  /** Mean training loss of the last local epoch. */
  loss: number;
  /** w_local - w_global, little-endian float32. */
  delta: ArrayBuffer | Uint8Array;
}

export const REJECT_REASONS = [
  'malformed',
  'protocol_version',
  'too_large',
  'wrong_length',
  'not_finite',
  'wrong_round',
  'late',
  'duplicate',
  'not_selected',
  'unknown_client',
  'wrong_phase',
  'not_neighbour',
  'misaddressed',
  'unrequested_share',
  'both_shares',
  'bad_key',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface Rejection {
  event: string;
  reason: RejectReason;
  message: string;
}

export type Ack = { ok: true } | { ok: false; reason: RejectReason; message: string };

export interface RoundSummary {
  round: number;
  attempts: number;
  clients: number;
  examples: number;
  stragglers: number;
  accuracy: number;
  loss: number;
  durationMs: number;
  completedAt: string;
}

/** Typed socket.io event maps; the server and client sockets are declared with these. */
export interface ServerToClientEvents {
  welcome: (w: Welcome) => void;
  'round:start': (r: RoundStart) => void;
  'round:end': (s: RoundSummary) => void;
  rejected: (r: Rejection) => void;
}

export interface ClientToServerEvents {
  hello: (h: Hello) => void;
  ready: (r: Ready) => void;
  update: (u: Update, ack?: (a: Ack) => void) => void;
}
