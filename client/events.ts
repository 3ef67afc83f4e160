import type { RejectReason } from '../shared/base/errors.ts';
import type { Ack, BackendName, Rejection, RoundSummary } from '../shared/protocol/messages.ts';
import type { SkippedBackend } from './backends.ts';
import type { TrainProgress } from './trainer.ts';
import type { TrainerPort } from './trainer-port.ts';

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
  backend: { backend: BackendName; skipped: SkippedBackend[]; where: TrainerPort['where']; data: string };
  progress: { round: number } & TrainProgress;
  trained: { round: number; loss: number; trainMs: number; numExamples: number };
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
  secagg: {
    round: number;
    step: 'keys' | 'shares' | 'inbox' | 'signature' | 'reveal' | 'refused';
    detail?: string;
  };
  /** A round this client sat out: its plan is below the page's floors (the server was told the reason). */
  refused: { round: number; attempt: number; reason: RejectReason; message: string };
  ack: { round: number; ack: Ack };
  roundEnd: RoundSummary;
  rejected: Rejection;
  error: Error;
}
