/** The client's public surface: what a page passes in (ClientOptions) and hears back (ClientEvents). */
import type { RejectReason } from '../shared/base/errors.ts';
import type { Example, Examples } from '../shared/data/examples.ts';
import type { Task } from '../shared/model/task.ts';
import type { Floors } from '../shared/protocol/floors.ts';
import type { Ack, BackendName, ClientSource, Rejection, RoundSummary } from '../shared/protocol/messages.ts';
import type { ClientAttestation } from '../shared/secagg/client-session.ts';
import type { SkippedBackend } from './backends.ts';
import type { Clock } from './clock.ts';
import type { IdentityStore, Participation } from './profile.ts';
import type { SentMessage } from './sent-bytes.ts';
import type { ConnectOptions, SocketLike } from './socket.ts';
import type { TrainProgress } from './trainer.ts';
import type { TrainerPort } from './trainer-port.ts';
import type { Guest } from './guest.ts';
import type { SecureEngine } from './secure-engine.ts';

/** 'waiting': another tab of this browser profile takes part; this one waits for its turn (see profile.ts). */
export type ClientState =
  | 'waiting'
  | 'connecting'
  | 'preparing'
  | 'idle'
  | 'training'
  | 'uploading'
  | 'disconnected'
  | 'stopped'
  | 'failed';

export interface ClientEvents extends Record<string, unknown> {
  state: ClientState;
  /** The server's task, accepted (it matches the page's pin, or was pinned at this first welcome). */
  task: { name: string; hash: string; numParams: number };
  /** threads: 2 where two workers split each batch (trainer-pair.ts), else 1. */
  backend: {
    backend: BackendName;
    skipped: SkippedBackend[];
    where: TrainerPort['where'];
    threads: number;
    data: string;
  };
  progress: { round: number } & TrainProgress;
  /** threads: the workers this round trained on (2 where a pair split its batches, trainer-pair.ts). */
  trained: { round: number; loss: number; trainMs: number; numExamples: number; threads: number };
  /** The update as sent: encoding/masking time, its L2 norm before clipping, and whether it was masked. */
  encoded: {
    round: number;
    encodeMs: number;
    maskMs: number;
    norm: number;
    clamped: number;
    masked: boolean;
    bytes: number;
  };
  /** A message as it left (update, secure-aggregation keys, shares, ...): its event, round and size in bytes. */
  sent: SentMessage;
  secagg: {
    round: number;
    step: 'keys' | 'shares' | 'inbox' | 'signature' | 'reveal' | 'refused';
    detail?: string;
  };
  /** A round this client sat out: its plan is below the page's floors (the server was told the reason). */
  refused: { round: number; attempt: number; reason: RejectReason; message: string };
  /** Over-selection: the server formed this attempt's cohort without us; we wait for the next round. */
  released: { round: number; attempt: number };
  /** A round this client sat out to spare the visitor (data saver, low battery); the server was not told. */
  heldOff: { round: number; reason: string };
  ack: { round: number; ack: Ack };
  roundEnd: RoundSummary;
  rejected: Rejection;
  error: Error;
}

export interface ClientOptions {
  serverUrl: string;
  source: ClientSource;
  /** Creates the trainer (a Web Worker in browsers, inline in Node). */
  spawnTrainer: () => Promise<TrainerPort>;
  /** Where the server-issued session (id + resume token) is kept between connections; default: memory. */
  identity?: IdentityStore;
  /** Backend preference override (default: webgpu, webgl, wasm, cpu). */
  backends?: BackendName[];
  /** socket.io path; default /socket.io. */
  path?: string;
  /** Opens the connection; default socket.io-client's io (which reconnects on its own). */
  connect?: (url: string, opts: ConnectOptions) => SocketLike;
  /** Deadlines and timings; default the system clock. */
  clock?: Clock;
  /** The embedding page's floors, which no round plan may go below (default: makeFloors()). */
  floors?: Partial<Floors>;
  /**
   * Takes the profile's participation slot before connecting (browsers: one tab of a profile at a time);
   * calls onWaiting if it must wait for another tab. Default: none (Node: every client takes part).
   */
  participation?: (onWaiting: () => void, signal: AbortSignal) => Promise<Participation>;
  /**
   * From the embedding page (never the server): the site's attestation key and this visitor's identity
   * with the site's signature on it. With it, the client takes part only in secure rounds that run the
   * consistency round (R3), and trusts only peers whose keys the site vouches for.
   */
  attestation?: ClientAttestation;
  /**
   * Manners on the host page (browsers: pause while hidden, CPU share, data saver and battery; see
   * guest.ts). Default: none (Node trains flat out).
   */
  guest?: Guest;
  /**
   * Starts the engine for DP encoding and secure aggregation (browsers: a Web Worker, so none of it runs on
   * the page's main thread). Default: inline on the calling thread (Node).
   */
  secureEngine?: () => SecureEngine;
  /**
   * The join token the embedding site minted for this visitor (data-token), sent in the socket.io
   * handshake; servers with --join-token-key refuse connections without a valid one. It is spent on the
   * first connection, so reconnects offer the session they hold instead.
   */
  joinToken?: string;
  /**
   * The task the page agreed to (shared/model/task.ts): the client trains only a server task with the same
   * hash (topology, shapes and plan), and refuses any other with 'task_mismatch'. Without it (and without
   * taskHash), the first welcome's task is pinned for this client's life.
   */
  task?: Task;
  /** The pinned task's hash (64 hex digits, taskHash()), where the page holds only that. */
  taskHash?: string;
  /**
   * The page's own examples for the task: an array of { x: features (prod(inputShape) numbers), y: class },
   * or packed Examples. Read once, after the server's task is accepted; they stay in this page and its
   * worker. Without it, the data the server names (synthetic or CIFAR-10 shards, image tasks only).
   */
  data?: () => Promise<readonly Example[] | Examples>;
}
