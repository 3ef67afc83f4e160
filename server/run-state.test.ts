import { describe, expect, it } from 'vitest';
import { MODELS, numParams } from '../shared/model/spec.ts';
import type { RoundOutcome } from './aggregator/index.ts';
import { ManualClock } from './clock.ts';
import { DEFAULTS, parseConfig, type ServerConfig } from './config.ts';
import type { EvalResult } from './evaluator.ts';
import { GlobalModel } from './global-model.ts';
import { createMetrics } from './metrics.ts';
import {
  decodeCheckpoint,
  decodeLedger,
  decodeRun,
  encodeCheckpoint,
  encodeLedger,
  encodeRun,
  RunState,
  StateError,
} from './run-state.ts';
import { MemoryStore } from './store.ts';

const spec = MODELS.tiny;
const P = numParams(spec);
const RUN = '0123456789abcdef';

/** The stub evaluator's loss is the mean weight; a failed evaluation would be NaN (kept through JSON). */
const meanLoss = async (w: Float32Array): Promise<EvalResult> => {
  let s = 0;
  for (const x of w) s += x;
  return { accuracy: 0.5, loss: s / w.length, examples: 10, ms: 1 };
};

/** DP with adaptive clipping and FedAdam: every piece of state a checkpoint must carry moves. */
function config(over: Partial<ServerConfig> = {}): ServerConfig {
  const dp = parseConfig([
    '--dp-noise',
    '1.2',
    '--dp-epsilon',
    '50',
    '--dp-adaptive-clip',
    '--dp-indicator-std',
    '1',
    '--clients-per-round',
    '3',
  ]).dp;
  return {
    ...DEFAULTS,
    model: spec,
    secagg: false,
    clientsPerRound: 3,
    maxLossIncrease: 0,
    serverOptimizer: { ...DEFAULTS.serverOptimizer, name: 'fedadam' },
    serverLearningRate: 0.1,
    dp,
    ...over,
  };
}

function model(cfg = config()): GlobalModel {
  return new GlobalModel({
    config: cfg,
    metrics: createMetrics(),
    evaluate: meanLoss,
    initialWeights: new Float32Array(P).fill(0.01),
    clock: new ManualClock(1000),
    log: () => {},
  });
}

const outcome = (seed: number): Extract<RoundOutcome, { ok: true }> => ({
  ok: true,
  why: 'test',
  mean: Float32Array.from({ length: P }, (_, i) => Math.sin(i * 0.37 + seed) * 0.01),
  clients: 3,
  examples: null,
  trainLoss: null,
  stragglers: 0,
  dropped: 0,
  indicatorSum: 0.4 + seed * 0.3, // moves the adaptive clip norm
});

async function trained(rounds: number): Promise<GlobalModel> {
  const m = model();
  await m.init();
  for (let r = 1; r <= rounds; r++)
    await m.release({ ref: { round: r, attempt: 1 }, startedAt: 0, outcome: outcome(r) });
  return m;
}

describe('checkpoint: save and load', () => {
  it('round-trips weights, FedAdam moments, clip norm, history and epsilon exactly', async () => {
    const a = await trained(3);
    const cp = decodeCheckpoint(encodeCheckpoint(RUN, a.checkpoint(3)), RUN);
    expect(cp.round).toBe(3);
    const charges = a.history.map(() => ({ q: 1, z: 1.2 }));
    const b = model();
    b.restore(cp, charges);
    expect(b.weights).toEqual(a.weights);
    expect(b.history).toEqual(a.history);
    const pa = a.privacyStatus();
    const pb = b.privacyStatus();
    expect(pb).toEqual(pa); // epsilon (both views), rounds, clip norm
    expect(pa.enabled && pa.clipNorm).not.toBe(config().dp!.clipNorm); // adaptive clipping moved it
    // The optimizer's moments came back: the next step is the same, bit for bit.
    const next = { ref: { round: 4, attempt: 1 }, startedAt: 0, outcome: outcome(4) };
    await a.release(next);
    await b.release(next);
    expect(b.weights).toEqual(a.weights);
    expect(b.privacyStatus()).toEqual(a.privacyStatus());
  });

  it('keeps non-finite scores (a failed evaluation) as such', () => {
    const cp = {
      ...model().checkpoint(0),
      current: { accuracy: NaN, loss: Infinity },
    };
    const back = decodeCheckpoint(encodeCheckpoint(RUN, cp), RUN);
    expect(back.current!.accuracy).toBeNaN();
    expect(back.current!.loss).toBe(Infinity);
  });

  it('refuses a damaged, truncated, foreign or future-version file with one line', async () => {
    const good = encodeCheckpoint(RUN, (await trained(1)).checkpoint(1));
    const flipped = Buffer.from(good);
    flipped[flipped.length - 10] ^= 1;
    expect(() => decodeCheckpoint(flipped, RUN)).toThrow(
      'state file "checkpoint" refused: checksum mismatch (damaged or truncated)',
    );
    expect(() => decodeCheckpoint(good.subarray(0, good.length - 4), RUN)).toThrow(/checksum mismatch/);
    expect(() => decodeCheckpoint(good.subarray(0, 20), RUN)).toThrow(/truncated header|not an AegisFL/);
    expect(() => decodeCheckpoint(Buffer.from('hello'), RUN)).toThrow(/not an AegisFL checkpoint/);
    expect(() => decodeCheckpoint(good, 'fedcba9876543210')).toThrow(
      'state file "checkpoint" refused: it belongs to run 0123456789abcdef, not run fedcba9876543210',
    );
    const v2 = Buffer.from(
      Buffer.from(good).toString('latin1').replace('"version":1', '"version":2'),
      'latin1',
    );
    expect(() => decodeCheckpoint(v2, RUN)).toThrow(/format version 2, this server reads 1/);
    for (const e of [StateError]) expect(() => decodeCheckpoint(flipped, RUN)).toThrow(e);
  });

  it('a checkpoint of another model or server optimizer is refused on restore', async () => {
    const cp = (await trained(1)).checkpoint(1);
    expect(() =>
      model(config({ serverOptimizer: { ...DEFAULTS.serverOptimizer, name: 'fedavg' } })).restore(cp, []),
    ).toThrow(/server optimizer is fedadam, this server's is fedavg/);
    expect(() => model().restore({ ...cp, model: 'small' }, [])).toThrow(/checkpoint is of model small/);
    expect(() => model(config({ dp: null })).restore(cp, [{ q: 1, z: 1 }])).toThrow(/DP is off here/);
  });
});

describe('ledger and run record', () => {
  it('round-trip, and refuse malformed entries, other runs and other formats', () => {
    const entries = [
      { round: 1, attempt: 1, q: 1, z: 1.2, status: 'charged' as const },
      { round: 2, attempt: 1, q: 0.1, z: 1.2, status: 'void' as const },
    ];
    expect(decodeLedger(encodeLedger(RUN, entries), RUN)).toEqual(entries);
    expect(() => decodeLedger(encodeLedger(RUN, entries), 'ffffffffffffffff')).toThrow(/belongs to run/);
    expect(() => decodeLedger(encodeLedger(RUN, [{ ...entries[0], q: 2 }]), RUN)).toThrow(
      'state file "ledger" refused: entry 0 is malformed',
    );
    expect(() => decodeLedger(encodeRun({ runId: RUN, boots: 0 }), RUN)).toThrow(
      /format is "aegisfl-run", expected "aegisfl-ledger"/,
    );
    expect(decodeRun(encodeRun({ runId: RUN, boots: 4 }))).toEqual({ runId: RUN, boots: 4 });
    expect(() =>
      decodeRun(Buffer.from('{"format":"aegisfl-run","version":1,"runId":"x","boots":0}')),
    ).toThrow(/no valid run id/);
  });
});

describe('RunState', () => {
  it('records a new run, counts restarts and keeps its id', async () => {
    const store = new MemoryStore();
    const first = await RunState.open(store);
    expect(first.loaded).toMatchObject({ boots: 0, checkpoint: null, ledger: [] });
    const again = await RunState.open(store);
    expect(again.runId).toBe(first.runId);
    expect(again.loaded.boots).toBe(1);
  });

  it('charges once per attempt, voids on request, and a restart reads it all back', async () => {
    const store = new MemoryStore();
    const rs = await RunState.open(store);
    await rs.charge({ round: 1, attempt: 1 }, 1, 1.2);
    await rs.charge({ round: 1, attempt: 1 }, 1, 1.2); // the same attempt: one entry
    await rs.charge({ round: 1, attempt: 2 }, 1, 1.2);
    await rs.void({ round: 1, attempt: 1 });
    await rs.saveCheckpoint((await trained(1)).checkpoint(1));
    const back = await RunState.open(store);
    expect(back.ledger.map((e) => [e.round, e.attempt, e.status])).toEqual([
      [1, 1, 'void'],
      [1, 2, 'charged'],
    ]);
    expect(back.loaded.checkpoint!.round).toBe(1);
  });

  it('refuses a store whose files are not this run (or have no run record)', async () => {
    const store = new MemoryStore();
    await store.put('ledger', encodeLedger(RUN, []));
    await expect(RunState.open(store)).rejects.toThrow(
      'state file "ledger" refused: no run record beside it',
    );
    await store.put('run', encodeRun({ runId: 'aaaaaaaaaaaaaaaa', boots: 0 }));
    await expect(RunState.open(store)).rejects.toThrow(
      /belongs to run 0123456789abcdef, not run aaaaaaaaaaaaaaaa/,
    );
  });
});
