import type { RoundRef, RoundStart } from '../shared/protocol/messages.ts';
import type { Accumulator, RoundSettings } from './aggregator/index.ts';
import { serverTask, type ServerConfig } from './config.ts';

/** The settings of one attempt, from the config, the invited and cohort sizes and the ledger's current DP state. */
export function roundSettings(
  cfg: ServerConfig,
  numParams: number,
  n: number,
  target: number,
  dp: RoundSettings['dp'],
  tag: string,
): RoundSettings {
  return {
    numParams,
    n,
    target,
    // The public cap, not the cohort's claims: clients no longer send their example counts.
    maxExamples: cfg.maxExamplesPerClient,
    minUpdates: cfg.minUpdates,
    roundDeadlineMs: cfg.roundDeadlineMs,
    coordClip: cfg.coordClip,
    dp,
    secagg: cfg.secagg
      ? {
          tag,
          keysDeadlineMs: cfg.secaggKeysDeadlineMs,
          sharesDeadlineMs: cfg.secaggSharesDeadlineMs,
          unmaskDeadlineMs: cfg.secaggUnmaskDeadlineMs,
          dropout: cfg.secaggDropout,
          corrupt: cfg.secaggCorrupt,
          thresholdFraction: cfg.secaggThreshold,
          maliciousServer: cfg.secaggMaliciousServer,
          consistency:
            cfg.secaggConsistency && cfg.siteAttestationKey
              ? { sitePublicKey: cfg.siteAttestationKey }
              : null,
        }
      : null,
  };
}

/** round:start for cohort member `member` (1-based). */
export function roundStart(
  cfg: ServerConfig,
  ref: RoundRef,
  weights: Uint8Array,
  acc: Accumulator,
  member: number,
): RoundStart {
  const { task } = serverTask(cfg);
  return {
    ...ref,
    task,
    train: task.plan,
    deadlineMs: cfg.roundDeadlineMs,
    weights,
    ...(acc.encoding ? { encoding: acc.encoding } : {}),
    ...(acc.secure ? { secagg: acc.secure.info(member) } : {}),
  };
}

/** The DP part of an attempt's log line: the configured z and this round's clip norm (empty without DP). */
export function dpNote(cfg: ServerConfig, dp: RoundSettings['dp']): string {
  return dp && cfg.dp ? `, DP z = ${cfg.dp.noiseMultiplier}, C = ${dp.clipNorm.toPrecision(3)}` : '';
}
