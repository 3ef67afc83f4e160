import type { DataSpec } from '../shared/data/dataset.ts';
import type { Examples } from '../shared/data/examples.ts';
import type { Task } from '../shared/model/task.ts';
import type { BackendName, TrainConfig } from '../shared/protocol/messages.ts';
import type { SkippedBackend } from './backends.ts';
import type { PairTimes, TrainProgress } from './trainer.ts';
import type { Pace } from './pacer.ts';

/** The trainer's data: the server's spec, or the page's own examples (join({ data })), already packed. */
export type TrainerData = DataSpec | { kind: 'inline'; examples: Examples };

/** Messages between the page and the training worker. Vectors move as transferred ArrayBuffers. */
export type TrainerRequest =
  | { type: 'init'; task: Task; data: TrainerData; serverUrl: string; backends?: BackendName[] }
  | { type: 'train'; round: number; weights: ArrayBuffer; config: TrainConfig }
  | { type: 'examples' }
  /** Takes effect at once, even mid-round (at the next batch boundary); has no response. */
  | { type: 'pace'; pace: Pace }
  /**
   * Pairs this trainer with another over `port` (trainer-pair.ts): each trains its half of every batch
   * (rank 0 the first). A null port ends the pair at once, failing a training in progress. No response.
   */
  | { type: 'peer'; port: MessagePort | null; rank: 0 | 1 };

export type TrainerResponse =
  | {
      type: 'ready';
      backend: BackendName;
      skipped: SkippedBackend[];
      numExamples: number;
      dataDescription: string;
    }
  | { type: 'progress'; round: number; progress: TrainProgress }
  | {
      type: 'done';
      round: number;
      delta: ArrayBuffer;
      numExamples: number;
      loss: number;
      trainMs: number;
      /** Steps trained as half of a pair (trainer-pair.ts); 0 alone. */
      pairedSteps: number;
      /** Where the paired steps' time went on this side (the first's, for a pair). */
      pairMs?: PairTimes;
    }
  /** The trainer's examples (a copy), for a second trainer of a pair: it loads nothing itself. */
  | { type: 'examples'; examples: Examples }
  | { type: 'error'; round?: number; message: string };
