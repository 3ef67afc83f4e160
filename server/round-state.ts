import type { DataSpec } from '../shared/data/dataset.ts';
import type { SecureRandom } from '../shared/dp/secure-random.ts';
import type { RoundRef, RoundSummary } from '../shared/protocol/messages.ts';
import type { DataKind } from '../shared/protocol/status.ts';
import type { Accumulator } from './aggregator/index.ts';
import type { ClientRecord } from './clients.ts';
import type { Clock, Timer } from './clock.ts';
import type { CohortSkip } from './cohort.ts';
import type { ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import type { AttemptFailure, Metrics } from './metrics.ts';
import type { RunState } from './run-state.ts';
import type { ResumeKeys } from './sessions.ts';
import type { UnmaskRunner } from './unmask-thread.ts';

/** Where the rounds stand; everything that belongs to one attempt lives in its `training` state. */
export type RoundState =
  | { kind: 'waiting'; pause: Timer | null }
  | {
      kind: 'training';
      ref: RoundRef;
      startedAt: number;
      cohort: ClientRecord[];
      /** Client id -> 1-based cohort index. */
      members: Map<string, number>;
      /** Members that refused this attempt (round:refuse): dropouts, whatever their link says. */
      refused: Set<number>;
      accumulator: Accumulator;
      /**
       * Digest of each message a member's answer was accepted in (key: event and member): a re-send of
       * the same message (after a reconnect) is acknowledged as a duplicate instead of refused.
       */
      accepted: Map<string, Buffer>;
    }
  | { kind: 'evaluating'; ref: RoundRef; startedAt: number; selected: number; reported: number }
  /** reason: why training stopped early (e.g. the privacy budget); null after the configured rounds. */
  | { kind: 'done'; reason: string | null };

export type Training = Extract<RoundState, { kind: 'training' }>;
export type Evaluating = Extract<RoundState, { kind: 'evaluating' }>;

/** What the coordinator emits. */
export interface CoordinatorEvents {
  roundStart: [{ round: number; attempt: number; selected: number }];
  roundEnd: [RoundSummary];
  roundFailed: [{ round: number; attempt: number; updates: number; reason: AttemptFailure }];
  /** A cohort draw fell outside the bounds: no attempt started (drawn again after a pause). */
  cohortSkipped: [{ round: number; drawn: number; eligible: number; reason: CohortSkip }];
  done: [RoundSummary[]];
  /** The round state changed (any transition): what status observers are pushed on. */
  changed: [];
}

/** What the coordinator is built from. */
export interface CoordinatorDeps {
  config: ServerConfig;
  metrics: Metrics;
  evaluate: (weights: Float32Array) => Promise<EvalResult>;
  evalBackend: string;
  /** Where the training data comes from, as status shows it. */
  data?: { kind: DataKind; description: string };
  initialWeights: Float32Array;
  dataFor: (clientIndex: number) => DataSpec;
  log?: (msg: string) => void;
  /** Internal errors are logged here (default: log). */
  logError?: (msg: string) => void;
  clock?: Clock;
  /** CSPRNG of Poisson cohort draws (default: one keyed by the OS); tests inject a seeded one. */
  cohortRandom?: SecureRandom;
  /** The run's durable state (--state-dir): resumed from at init, written as rounds go. Absent: nothing persists. */
  runState?: RunState;
  /**
   * Test-only (AEGISFL_TEST_HOLD_PHASE, AEGISFL_TEST_HOLD_ROUND): the secure-aggregation phase that never
   * closes in attempts of `round` and later, so that a test can kill the server in it.
   */
  testHold?: { phase: string; round: number };
  /** Where secure rounds unmask (server.ts: a worker thread); default in-process, synchronously. */
  unmask?: UnmaskRunner;
  /**
   * Signs and checks resume tokens (server/sessions.ts). Default: a random key of this process, so a
   * session resumes only here. Coordinators and gateways sharing a key accept each other's sessions.
   */
  resumeKeys?: ResumeKeys;
  /** The first data-shard index of a new session (ClientRegistry firstIndex; default 0). */
  firstClientIndex?: number;
}
