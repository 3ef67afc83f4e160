import type { BoundsFailure, EncodingPlan } from '../../shared/fl/encoding.ts';
import type { RoundRef, SecAggRoundInfo, ServerToClientEvents } from '../../shared/protocol/messages.ts';
import type { Degree, SplitBound } from '../../shared/secagg/graph.ts';
import type { Culprit, SecAggActivePhase } from '../../shared/secagg/types.ts';
import type { UnmaskRunner } from '../unmask-thread.ts';
import type { Clock } from '../clock.ts';
import type { Metrics } from '../metrics.ts';

/** How updates travel this round: plain float32, ring vectors (DP without masks), or masked ring vectors. */
export type RoundMode = 'float' | 'ring' | 'secure';

/**
 * One validated update, as checkUpdate returns it: a float32 delta with its cleartext example count and
 * loss (float rounds), or a ring vector alone (the weight and loss are inside it).
 */
export type MemberUpdate =
  { delta: Float32Array; ring: null; numExamples: number; loss: number } | { delta: null; ring: Uint32Array };

/** How a round attempt ended: an aggregate to apply, or why there is none (the model stays unchanged). */
export type RoundOutcome =
  | {
      ok: true;
      why: string;
      /** Mean update to hand to the server optimizer. */
      mean: Float32Array;
      /** Inputs in the aggregate. */
      clients: number;
      /** Their examples, where known (see RoundSummary.examples); null under uniform weighting. */
      examples: number | null;
      /** Mean training loss of the inputs (decoded from a ring sum); null when no loss is sent (DP). */
      trainLoss: number | null;
      /** Members whose input is not in the aggregate. */
      stragglers: number;
      /** Members that never delivered an update (aegis_stragglers_dropped_total). */
      dropped: number;
      /** Noisy sum of clip indicators, for adaptive clipping; null when not used. */
      indicatorSum: number | null;
      /** Members proven to have cheated (secure rounds; indices are 1-based cohort places). */
      culprits?: readonly Culprit[];
    }
  | {
      ok: false;
      reason: 'too_few_updates' | 'secagg_aborted';
      why: string;
      updates: number;
      dropped: number;
      culprits?: readonly Culprit[];
    }
  | {
      ok: false;
      /** The ring sum broke a bound no set of honest clients can break (aggregateBoundsOk): not decoded. */
      reason: 'aggregate_rejected';
      check: BoundsFailure;
      why: string;
      updates: number;
      dropped: number;
      culprits?: readonly Culprit[];
    };

/** The cohort size of a round: its target with over-selection, else everyone invited. */
export function cohortTarget(s: Pick<RoundSettings, 'n' | 'target'>): number {
  return s.target ?? s.n;
}

/** Settings of one round attempt, fixed when it starts. */
export interface RoundSettings {
  numParams: number;
  /** Clients invited; members are numbered 1..n. */
  n: number;
  /**
   * Cohort size (at most n): with over-selection (target < n) the first `target` members to advertise
   * keys (secure) or to report (plain) form the cohort and the rest are released; k, t and the encoding
   * plan are sized for it. Absent (or n): everyone invited takes part (no over-selection).
   */
  target?: number;
  /**
   * The server's public cap on a client's examples (--max-examples-per-client): a ring weight is
   * numExamples / maxExamples, clamped to 1. Never derived from the clients' claims.
   */
  maxExamples: number;
  /** Fewest inputs for which an aggregate is released. */
  minUpdates: number;
  roundDeadlineMs: number;
  coordClip: number;
  /** DP this round: clip norm, noise multiplier on the values, indicator noise; null = no DP. */
  dp: { clipNorm: number; noiseMultiplier: number; bitStd: number; adaptive: boolean } | null;
  /** Secure aggregation; null = updates are summed in the clear. */
  secagg: SecAggSettings | null;
}

export interface SecAggSettings {
  /** Binds keys, boxes and masks to this attempt. */
  tag: string;
  keysDeadlineMs: number;
  sharesDeadlineMs: number;
  unmaskDeadlineMs: number;
  /** Assumed dropout and colluding fractions, and the Shamir threshold fraction (SecAgg+ degree). */
  dropout: number;
  corrupt: number;
  thresholdFraction: number;
  /** Raise t until split unmask requests expose a client with probability < 2^-40 (graph.ts). */
  maliciousServer?: boolean;
  /** Authenticated keys and the consistency round (R3), with the site key that attests identities; null = off. */
  consistency?: { sitePublicKey: Uint8Array } | null;
}

/** The (k, t) of a secure round and what it protects against. */
export interface DegreeReport {
  /** Cohort size (the target with over-selection, not the invited count). */
  n: number;
  degree: Degree;
  maliciousServer: boolean;
  /** Malicious-server mode: the split-request bound of the chosen t; null otherwise. */
  split: SplitBound | null;
  /** describeDegree, plus the split bound in malicious-server mode. */
  description: string;
}

type SecAggEvent = 'secagg:roster' | 'secagg:inbox' | 'secagg:survivors' | 'secagg:unmask' | 'round:release';

/** What an accumulator may do to the world around it. */
export interface RoundContext {
  ref: RoundRef;
  clock: Clock;
  metrics: Metrics;
  /** Member i (1-based) has a live link. */
  online(member: number): boolean;
  /** Sends to member i if it is online; false if it is not. */
  send<E extends SecAggEvent>(
    member: number,
    event: E,
    ...args: Parameters<ServerToClientEvents[E]>
  ): boolean;
  /** Runs fn after the current message is handled. */
  defer(fn: () => void): void;
  log(msg: string): void;
  /** Called once, when the attempt ends either way. */
  close(o: RoundOutcome): void;
  /** Secure rounds: resolves once the attempt's privacy charge is durable; no unmask request goes out before. */
  beforeUnmask?: () => Promise<void>;
  /** Test-only (AEGISFL_TEST_HOLD_PHASE): a secure-aggregation phase for which this is true never closes. */
  hold?: (phase: string) => boolean;
  /** Runs a secure round's unmasking off the event loop (absent: in-process, synchronously). */
  unmask?: UnmaskRunner;
}

/** The secure-aggregation messages a client sends (secagg:<kind>); 'signature' only with R3. */
export type SecAggClientMessage = 'keys' | 'shares' | 'signature' | 'reveal';

/** The secure-aggregation messages of a round, where the round has them. */
export interface SecAggChannel {
  readonly phase: SecAggActivePhase;
  readonly k: number;
  readonly t: number;
  readonly degree: DegreeReport;
  /** What member i needs to know in round:start. */
  info(member: number): SecAggRoundInfo;
  receive(kind: SecAggClientMessage, member: number, raw: unknown): void;
  /** Member i reconnected: re-sends the current phase's request if it still owes an answer; whether it did. */
  resend(member: number): boolean;
  /** Throws (ProtocolError) where member i's masked input would be refused now; counts nothing. */
  checkMasked(member: number): void;
  /** The sum of several members' masked inputs (a gateway's partial sum), checked as a whole first. */
  addMaskedSum(members: readonly number[], sum: Uint32Array): void;
}

/**
 * Collects one round attempt's updates and decides when it closes: when everyone reported, when only
 * offline members are missing, or at a deadline. It ends by calling RoundContext.close exactly once
 * (unless stopped). add() throws ProtocolError for an input it cannot take; nothing is counted then.
 */
export interface Accumulator {
  readonly mode: RoundMode;
  /** How to encode updates (sent with round:start); null for float32 deltas. */
  readonly encoding: EncodingPlan | null;
  /** Length of a ring update in uint32, or undefined when updates are float32 deltas. */
  readonly ringLength: number | undefined;
  /** When the current phase closes at the latest (ms since epoch). */
  readonly deadlineAt: number;
  readonly secure: SecAggChannel | null;
  /** Updates accepted so far. */
  readonly reported: number;
  /** How this round aggregates, for the log. */
  readonly description: string;
  hasReported(member: number): boolean;
  add(member: number, u: MemberUpdate): void;
  /** Closes now if nothing more can come (everyone reported, or the rest are offline). */
  settle(): void;
  /** Cancels timers; close will not be called. */
  stop(): void;
}
