import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createSecureRandom } from '../shared/dp/secure-random.ts';
import { epsilonFor } from '../shared/dp/calibrate.ts';
import { encodeContribution, vectorLength } from '../shared/fl/encoding.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type RoundStart, type ServerToClientEvents } from '../shared/protocol/messages.ts';
import { SecAggClientSession, type ClientAttestation } from '../shared/secagg/client-session.ts';
import { attest, generateSigningKeyPair, type SigningKeyPair } from '../shared/secagg/consistency.ts';
import { SecAggServerSession } from '../shared/secagg/server-session.ts';
import { packReveal, packShares, unpackInbox, unpackRoster, unpackUnmask } from '../shared/secagg/wire.ts';
import { DEFAULTS, type ServerConfig } from './config.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { ManualClock, type Clock } from './clock.ts';
import { Coordinator, type ClientLink, type CoordinatorDeps } from './coordinator.ts';
import type { Evaluator } from './evaluator.ts';
import { metricValue, nextEvent, testEvaluator } from './test-fixtures.ts';
import { createMetrics } from './metrics.ts';
import { UnmaskThread, unmaskInProcess, type UnmaskRunner } from './unmask-thread.ts';
import { messageDigest } from './resend.ts';
import { addInto } from '../shared/secagg/ring.ts';
import type { PartialSum, UpdateClaim } from './intake.ts';

const spec = MODELS.tiny;
const P = numParams(spec);
const rand = createSecureRandom();
/** The training loss every simulated client reports, inside its vector. */
const LOSS = 1.25;
type Phase = 'keys' | 'shares' | 'masked' | 'consistency' | 'unmask';

/**
 * An in-memory client that speaks the real secure-aggregation protocol through the coordinator's API
 * (the same calls socket.ts makes), and can vanish before a chosen phase.
 */
class SimClient implements ClientLink {
  session: SecAggClientSession | null = null;
  start: RoundStart | null = null;
  sent: { event: string; m: unknown }[] = [];
  /** Reasons of the coordinator's rejections of this client's messages. */
  rejected: string[] = [];
  /** Stays connected but does not answer round:start while this is true. */
  silent = false;
  /** Answers round:start with round:refuse (its page's floors refuse the plan) while this is true. */
  refuses = false;
  /** The session id the coordinator issued at hello. */
  id = '';
  /** In this attempt, send a huge but well-formed ring vector instead of the honest one. */
  poisonAttempt: number | null = null;
  /** The identity the site attested for this client (consistency-round tests). */
  attestation: ClientAttestation | undefined = undefined;
  /** Alters every share it reveals (in the field, but not what was dealt) in rounds where this says so. */
  alterReveal: ((start: RoundStart) => boolean) | null = null;
  /** Slow in rounds where this says so: holds its keys until it is released, then sends them (too late). */
  slowKeys: ((start: RoundStart) => boolean) | null = null;
  private heldKeys: (() => void) | null = null;
  /** Scale-out: its masked vector goes here (to a simulated gateway) instead of to update(). */
  gateway: ((y: Uint32Array, ref: { round: number; attempt: number }) => void) | null = null;
  constructor(
    readonly c: Coordinator,
    readonly delta: Float32Array,
    readonly examples: number,
    public vanishAt: Phase | null = null,
  ) {}
  private sendHeldKeys(): void {
    const f = this.heldKeys;
    this.heldKeys = null;
    f?.();
  }
  private gone(p: Phase): boolean {
    if (this.vanishAt !== p) return false;
    this.c.disconnect(this);
    this.vanishAt = null;
    return true;
  }
  send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    const m = args[0] as any;
    this.sent.push({ event, m });
    setTimeout(() => this.answer(() => this.react(event, m)), 0);
  }
  /** Runs one reaction; the coordinator's rejections are noted, as a socket client would see them. */
  private answer(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.rejected.push(e.reason);
    }
  }
  private react(event: string, m: any): void {
    if (event === 'round:start') {
      this.start = m;
      if (this.refuses)
        return this.c.roundRefuse(this.id, { round: m.round, attempt: m.attempt, reason: 'below_floor' });
      if (!m.secagg || this.silent || this.gone('keys')) return;
      this.session = new SecAggClientSession({
        ...m.secagg,
        vectorLength: vectorLength(P),
        consistency: m.secagg.consistency === true,
        attestation: this.attestation,
      });
      const keys = { round: m.round, attempt: m.attempt, ...this.session.advertise() };
      this.heldKeys = () => this.c.secagg('keys', this.id, keys);
      if (!this.slowKeys?.(m)) this.sendHeldKeys();
    } else if (event === 'round:release') {
      this.sendHeldKeys();
    } else if (event === 'secagg:roster') {
      if (this.gone('shares')) return;
      this.c.secagg('shares', this.id, {
        round: m.round,
        attempt: m.attempt,
        ...packShares(this.session!.receiveRoster(unpackRoster(m, 100))),
      });
    } else if (event === 'secagg:inbox') {
      if (this.gone('masked')) return;
      this.session!.receiveInbox(unpackInbox(m, 100));
      const plan = this.start!.encoding!;
      const enc = encodeContribution(this.delta, this.examples, plan, rand, LOSS);
      if (m.attempt === this.poisonAttempt) {
        // Every parameter at the largest value one client's ring allows (2^bits - 1, i.e. +2^(bits-1) - 1
        // after the offset): each word is well-formed, the vector is far beyond any clipped update.
        enc.ring.fill(2 ** plan.bits - 1, 0, P);
      }
      // The masks are made through WebCrypto: the update goes out when they are ready.
      void this.session!.mask(enc.ring).then((y) =>
        this.gateway
          ? this.gateway(y, { round: m.round, attempt: m.attempt })
          : // Only the masked vector: the weight and the loss are inside it.
            this.answer(() =>
              this.c.update(this.id, { round: m.round, attempt: m.attempt, delta: y.buffer }),
            ),
      );
    } else if (event === 'secagg:survivors') {
      if (this.gone('consistency')) return;
      this.c.secagg('signature', this.id, {
        round: m.round,
        attempt: m.attempt,
        ...this.session!.receiveSurvivors(m),
      });
    } else if (event === 'secagg:unmask') {
      if (this.gone('unmask')) return;
      const r = this.session!.receiveUnmask(unpackUnmask(m, 100));
      if (this.alterReveal?.(this.start!))
        for (const x of [...r.b, ...r.s])
          x.share = Uint8Array.from(x.share, (v, i) => (i === 32 ? v ^ 1 : v));
      this.c.secagg('reveal', this.id, { round: m.round, attempt: m.attempt, ...packReveal(r) });
    }
  }
}

let evaluator: Evaluator;
let coord: Coordinator | null = null;
beforeAll(async () => {
  evaluator = await testEvaluator(spec);
});
afterEach(() => {
  coord?.stop();
  vi.restoreAllMocks();
});

async function setup(over: Partial<ServerConfig> = {}, clock?: Clock, deps: Partial<CoordinatorDeps> = {}) {
  const config: ServerConfig = {
    ...DEFAULTS,
    model: spec,
    secagg: true,
    minClients: 5,
    clientsPerRound: 5,
    minUpdates: 3,
    roundDeadlineMs: 3000,
    secaggKeysDeadlineMs: 1000,
    secaggSharesDeadlineMs: 1000,
    secaggUnmaskDeadlineMs: 1000,
    roundPauseMs: 0,
    rounds: 1,
    // The public cap the ring weights are divided by: near the clients' real counts keeps the weighted
    // mean exact to 1e-6 (with 50,000 the weights would be ~1e-4 and the fixed point much coarser).
    maxExamplesPerClient: 64,
    ...over,
  };
  const metrics = createMetrics();
  const c = new Coordinator({
    config,
    metrics,
    evaluate: (w) => evaluator.evaluate(w),
    evalBackend: 'cpu',
    initialWeights: new Float32Array(P),
    dataFor: (i) => ({ kind: 'synthetic', seed: i, count: 8 }),
    log: () => {},
    clock,
    ...deps,
  });
  coord = c;
  await c.init();
  return { c, metrics };
}

const HELLO = { protocolVersion: PROTOCOL_VERSION, source: 'node' };
/** A new session, ready with its examples. */
function enter(c: Coordinator, s: SimClient): SimClient {
  s.id = c.hello(s, HELLO);
  c.ready(s.id, { backend: 'cpu' });
  return s;
}
function joinAll(
  c: Coordinator,
  deltas: Float32Array[],
  examples: number[],
  vanish: (Phase | null)[] = [],
): SimClient[] {
  return deltas.map((d, i) => {
    return enter(c, new SimClient(c, d, examples[i], vanish[i] ?? null));
  });
}
const randomDelta = () => Float32Array.from({ length: P }, () => (Math.random() - 0.5) * 0.02);

/** Max |w - expected weighted mean of the given clients' deltas|. */
function maxError(w: Float32Array, deltas: Float32Array[], examples: number[], who: number[]): number {
  const W = who.reduce((s, i) => s + examples[i], 0);
  let err = 0;
  for (let j = 0; j < P; j++) {
    const exact = who.reduce((s, i) => s + examples[i] * deltas[i][j], 0) / W;
    err = Math.max(err, Math.abs(w[j] - exact));
  }
  return err;
}

describe('Coordinator with secure aggregation', () => {
  it('completes a round: the new model is the example-weighted mean, recovered from masked vectors only', async () => {
    const { c, metrics } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 16, 24, 8, 40];
    const end = nextEvent(c, 'roundEnd');
    joinAll(c, deltas, examples);
    const s = await end;
    // Nothing per client was sent in the clear: the example count and the training loss are decoded
    // from the sum (weightSum x the public cap, and the mean of the losses inside the vectors).
    expect(s).toMatchObject({ clients: 5, secagg: true, examples: 96, rejected: null });
    expect(s.trainLoss).toBeCloseTo(LOSS, 4);
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
    expect(c.status().secagg).toMatchObject({ enabled: true, k: 4, t: 3 });
    expect(await metricValue(metrics, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(1);
  });

  it.each(['keys', 'shares', 'masked', 'unmask'] as Exclude<Phase, 'consistency'>[])(
    'a client vanishing before phase %s: the round completes with the exact survivors',
    async (phase) => {
      const { c, metrics } = await setup();
      const deltas = Array.from({ length: 5 }, randomDelta);
      const examples = [8, 8, 8, 8, 8];
      const end = nextEvent(c, 'roundEnd');
      joinAll(c, deltas, examples, [null, phase, null, null, null]);
      const s = await end;
      // Vanishing before 'unmask' still counts its input (it was masked and sent); otherwise it is left out.
      const who = phase === 'unmask' ? [0, 1, 2, 3, 4] : [0, 2, 3, 4];
      expect(s.clients).toBe(who.length);
      expect(maxError(c.globalWeights, deltas, examples, who)).toBeLessThan(1e-6);
      const dropPhase = { keys: 'keys', shares: 'shares', masked: 'masked', unmask: 'unmask' }[phase];
      expect(await metricValue(metrics, 'aegis_secagg_dropouts_total', { phase: dropPhase })).toBe(1);
    },
  );

  it('one client sends a huge well-formed ring vector: the sum fails the bounds check, the model is unchanged, the honest retry completes', async () => {
    const { c, metrics } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    // Weights 8/64 each: together 0.625 of one full-weight client, so no honest sum has a coordinate near
    // the ring's edge. (A sum of weight >= 1 could hold one client at the edge: bounds cannot tell that
    // from honest clients all at the clip; the loss guard is the next line of defence.)
    const examples = [8, 8, 8, 8, 8];
    const before = c.globalWeights.slice();
    const failed = nextEvent(c, 'roundFailed');
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, deltas, examples);
    sims[2].poisonAttempt = 1;
    // Secure aggregation completes (the server cannot see which input is bad); the sum is refused.
    expect(await failed).toMatchObject({ round: 1, attempt: 1, updates: 5, reason: 'aggregate_rejected' });
    expect(c.globalWeights).toEqual(before);
    expect(c.status().history).toEqual([]);
    expect(c.status().defences).toMatchObject({
      aggregatesRejected: 1,
      lastAggregateRejection: { round: 1, attempt: 1, check: 'coordinate' },
      modelsRejected: 0,
    });
    expect(await metricValue(metrics, 'aegis_aggregates_rejected_total', { check: 'coordinate' })).toBe(1);
    expect(
      await metricValue(metrics, 'aegis_round_attempts_failed_total', { reason: 'aggregate_rejected' }),
    ).toBe(1);
    expect(await metricValue(metrics, 'aegis_rounds_completed_total')).toBe(0);
    // The attempt is retried like any failed one; with honest inputs it completes exactly.
    const s = await end;
    expect(s).toMatchObject({ round: 1, attempts: 2, clients: 5, examples: 40, rejected: null });
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
  });

  it('waits for three ready clients, however low --min-clients is (a sum of two shows each the other)', async () => {
    const { c } = await setup({ minClients: 2, clientsPerRound: 5, minUpdates: 2 });
    const deltas = Array.from({ length: 3 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    joinAll(c, deltas.slice(0, 2), [8, 8]);
    expect(c.status()).toMatchObject({ phase: 'waiting', attempt: 0, clients: { ready: 2 } });
    enter(c, new SimClient(c, deltas[2], 8));
    expect(c.status()).toMatchObject({ phase: 'training', selected: 3 });
    expect((await end).clients).toBe(3);
  });

  it('a holder that alters the shares it reveals is named and counted; the secrets are rebuilt and the sum is exact', async () => {
    const { c, metrics } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 8, 8, 8, 8];
    const end = nextEvent(c, 'roundEnd');
    // Client 1 is among the first t holders of every other secret, so its shares are always used.
    const clients = joinAll(c, deltas, examples);
    for (const s of clients) s.alterReveal = (start) => start.secagg!.index === 1;
    const s = await end;
    expect(s.clients).toBe(5);
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
    expect(await metricValue(metrics, 'aegis_secagg_culprits_total', { kind: 'altered_share' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_secagg_culprits_total', { kind: 'inconsistent_dealer' })).toBe(
      0,
    );
    expect(await metricValue(metrics, 'aegis_secagg_culprits_total', { kind: 'malformed_share' })).toBe(0);
  });

  it('too many dropouts: the round fails cleanly, the model is unchanged, and it is retried', async () => {
    const { c, metrics } = await setup({ rounds: 2 });
    const before = c.globalWeights.slice();
    const failed = nextEvent(c, 'roundFailed');
    joinAll(
      c,
      Array.from({ length: 5 }, randomDelta),
      [8, 8, 8, 8, 8],
      [null, 'masked', 'masked', 'masked', null],
    );
    const f = await failed;
    expect(f.reason).toBe('secagg_aborted');
    expect(c.globalWeights).toEqual(before);
    expect(await metricValue(metrics, 'aegis_secagg_rounds_total', { outcome: 'aborted' })).toBe(1);
    expect(
      await metricValue(metrics, 'aegis_round_attempts_failed_total', { reason: 'secagg_aborted' }),
    ).toBe(1);
  });

  it('rejects misbehaviour with a reason and the round still completes', async () => {
    const { c } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const started = nextEvent(c, 'roundStart');
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, deltas, [8, 8, 8, 8, 8]);
    await started;
    const reason = (f: () => unknown) => {
      try {
        f();
        return 'accepted';
      } catch (e) {
        return (e as ProtocolError).reason;
      }
    };
    await new Promise((r) => setTimeout(r, 20)); // keys are in
    const keys = { round: 1, attempt: 1, ...sims[0].session!.advertise() };
    // Other keys than the accepted ones (an exact re-send would be acknowledged as a duplicate instead).
    expect(reason(() => c.secagg('keys', sims[0].id, { ...keys, other: 1 }))).toMatch(
      /duplicate|wrong_phase/,
    );
    expect(reason(() => c.secagg('keys', sims[0].id, { ...keys, round: 0 }))).toBe('late');
    expect(reason(() => c.secagg('keys', sims[0].id, { ...keys, attempt: 2 }))).toBe('wrong_round');
    expect(reason(() => c.secagg('shares', 'client-unknown-00000', keys))).toBe('unknown_client');
    expect(
      reason(() =>
        c.update(sims[0].id, { round: 1, attempt: 1, delta: new Uint32Array(vectorLength(P) - 1).buffer }),
      ),
    ).toBe('wrong_length');
    expect(
      reason(() => c.update(sims[0].id, { round: 1, attempt: 1, delta: new Float32Array(P).buffer })),
    ).toBe('wrong_length');
    // The old shape, with the example count and loss beside the masked vector, is refused.
    expect(
      reason(() =>
        c.update(sims[0].id, {
          round: 1,
          attempt: 1,
          numExamples: 8,
          trainMs: 1,
          loss: 1,
          delta: new Uint32Array(vectorLength(P)).buffer,
        }),
      ),
    ).toBe('malformed');
    const s = await end;
    expect(s.clients).toBe(5);
  });
});

describe('Coordinator with authenticated keys and the consistency round', () => {
  const site = generateSigningKeyPair();
  /** An identity attested by `by` (the real site unless a test says otherwise). */
  const attested = (by: SigningKeyPair = site): ClientAttestation => {
    const identity = generateSigningKeyPair();
    return { sitePublicKey: by.publicKey, identity, signature: attest(by.secretKey, identity.publicKey) };
  };
  const on = { secaggConsistency: true, siteAttestationKey: site.publicKey };
  const joinAttested = (c: Coordinator, deltas: Float32Array[], vanish: (Phase | null)[] = []) =>
    deltas.map((d, i) => {
      const s = new SimClient(c, d, 8, vanish[i] ?? null);
      s.attestation = attested();
      return enter(c, s);
    });

  it('completes with the exact mean; every survivor signed U3 and every unmask request carried t signatures', async () => {
    const { c, metrics } = await setup(on);
    const deltas = Array.from({ length: 5 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAttested(c, deltas);
    const s = await end;
    expect(s).toMatchObject({ clients: 5, secagg: true });
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
    for (const sim of sims) {
      expect(sim.start!.secagg!.consistency).toBe(true);
      const unmask = sim.sent.find((e) => e.event === 'secagg:unmask')!.m as { signatures: Uint8Array };
      expect(unmask.signatures.length).toBe(4 * 68); // its four neighbours' signatures over U3
      expect(sim.rejected).toEqual([]);
    }
    expect(sims[0].sent.map((e) => e.event).filter((e) => e !== 'welcome')).toEqual([
      'round:start',
      'secagg:roster',
      'secagg:inbox',
      'secagg:survivors',
      'secagg:unmask',
      'round:end',
    ]);
    expect(await metricValue(metrics, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(1);
  });

  it('a client vanishing in R3 (before signing): its input still counts, the sum is exact', async () => {
    const { c, metrics } = await setup(on);
    const deltas = Array.from({ length: 5 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    joinAttested(c, deltas, [null, 'consistency', null, null, null]);
    const s = await end;
    expect(s.clients).toBe(5);
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
    expect(await metricValue(metrics, 'aegis_secagg_dropouts_total', { phase: 'consistency' })).toBe(1);
  });

  it('keys the site did not attest are refused (unattested); the round goes on without that client', async () => {
    const { c } = await setup(on);
    const deltas = Array.from({ length: 5 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAttested(c, deltas.slice(0, 4));
    // Attested by another key (e.g. one the server made up): consistent with itself, not with the site.
    const rogue = new SimClient(c, deltas[4], 8);
    rogue.attestation = attested(generateSigningKeyPair());
    enter(c, rogue);
    const s = await end;
    expect(rogue.rejected).toEqual(['unattested']);
    expect(s.clients).toBe(4);
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3])).toBeLessThan(1e-6);
    expect(sims.flatMap((x) => x.rejected)).toEqual([]);
  });

  it('when the last key the phase waits for is refused, the phase closes at once (no deadline)', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const { c } = await setup(on, clock);
    const deltas = Array.from({ length: 5 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAttested(c, deltas.slice(0, 4));
    const rogue = new SimClient(c, deltas[4], 8);
    rogue.attestation = attested(generateSigningKeyPair());
    rogue.slowKeys = () => true; // holds its keys until the four honest ones are in
    enter(c, rogue);
    await until(() => sims.every((s) => s.session) && !!rogue.start, 'the honest keys are in');
    expect(() => (rogue as unknown as { sendHeldKeys(): void }).sendHeldKeys()).toThrow(/not vouched for/);
    // The manual clock never moves: only the refusal itself can close R0 now.
    const s = await end;
    expect(s.clients).toBe(4);
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3])).toBeLessThan(1e-6);
  });

  it('round:start and the unmask request of a round without it are exactly as before (no new fields)', async () => {
    const { c } = await setup();
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, Array.from({ length: 5 }, randomDelta), [8, 8, 8, 8, 8]);
    await end;
    expect(Object.keys(sims[0].start!.secagg!).sort()).toEqual(['index', 'k', 'n', 't', 'tag']);
    const unmask = sims[0].sent.find((e) => e.event === 'secagg:unmask')!.m as object;
    expect(Object.keys(unmask).sort()).toEqual(['attempt', 'dropped', 'round', 'survivors']);
    expect(sims[0].sent.some((e) => e.event === 'secagg:survivors')).toBe(false);
  });
});

describe('Coordinator with differential privacy', () => {
  it('charges epsilon per round, exports it, and stops before the budget would be exceeded', async () => {
    const z = 0.9;
    const eps2 = epsilonFor(1, z, 2, 1e-5);
    const eps3 = epsilonFor(1, z, 3, 1e-5);
    const budget = (eps2 + eps3) / 2; // two rounds fit, the third would not
    const { c, metrics } = await setup({
      rounds: 0,
      dp: {
        noiseMultiplier: z,
        clipNorm: 0.05,
        epsilonBudget: budget,
        delta: 1e-5,
        population: 0,
        adaptive: { targetQuantile: 0.5, learningRate: 0.2, indicatorStd: 1 },
      },
    });
    const done = nextEvent(c, 'done');
    joinAll(c, Array.from({ length: 5 }, randomDelta), [8, 8, 8, 8, 8]);
    await done;
    const st = c.status();
    expect(st.history.length).toBe(2);
    expect(st.history[1].epsilon).toBeCloseTo(eps2, 10);
    expect(st.stopReason).toMatch(/privacy budget reached: round 3 would raise epsilon/);
    expect(st.privacy).toMatchObject({
      enabled: true,
      epsilonBudget: budget,
      rounds: 2,
      sampling: 'poisson-add-remove',
    });
    expect(await metricValue(metrics, 'aegis_dp_epsilon')).toBeCloseTo(eps2, 10);
    // Adaptive clipping moved C away from its start value, privately.
    expect(st.history[0].clipNorm).toBe(0.05);
    expect(st.history[1].clipNorm).not.toBe(0.05);
  });
});

/** Lets the in-memory clients (which answer on real zero-delay timers) run until `done` says so. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !done(); i++) await new Promise((r) => setTimeout(r, 1));
  if (!done()) throw new Error(`never happened: ${what}`);
}

describe('Coordinator with secure aggregation and a client that refuses the plan', () => {
  it('the refuser is a keys-phase dropout: the phase closes without its deadline and the rest complete', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const { c, metrics } = await setup({}, clock);
    const deltas = Array.from({ length: 5 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    const sims = deltas.map((d) => new SimClient(c, d, 8));
    sims[2].refuses = true;
    for (const s of sims) enter(c, s);
    // The manual clock never moves: only the refusal can let the keys phase close before its deadline.
    const s = await end;
    expect(s).toMatchObject({ clients: 4, secagg: true });
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 3, 4])).toBeLessThan(1e-6);
    expect(await metricValue(metrics, 'aegis_client_refusals_total', { reason: 'below_floor' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_secagg_dropouts_total', { phase: 'keys' })).toBe(1);
    // It is sent nothing more for the attempt it refused.
    expect(sims[2].sent.map((m) => m.event)).toEqual(['welcome', 'round:start', 'round:end']);
  });
});

describe('Coordinator with secure aggregation contains internal errors', () => {
  // R4 closes through prepareUnmask (the job handed to the runner); the runner's own failures are below.
  const closes = ['closeKeysLazily', 'closeSharesLazily', 'closeMasked', 'prepareUnmask'] as const;

  it.each(closes)(
    'an exception inside %s aborts the attempt (model unchanged, counted); the retry completes',
    async (close) => {
      const { c, metrics } = await setup();
      vi.spyOn(SecAggServerSession.prototype, close).mockImplementationOnce(() => {
        throw new Error(`injected failure in ${close}`);
      });
      const deltas = Array.from({ length: 5 }, randomDelta);
      const before = c.globalWeights.slice();
      const failed = nextEvent(c, 'roundFailed');
      const end = nextEvent(c, 'roundEnd');
      const sims = joinAll(c, deltas, [8, 8, 8, 8, 8]);
      expect(await failed).toMatchObject({ round: 1, attempt: 1, reason: 'internal_error' });
      expect(c.globalWeights).toEqual(before);
      // The last message of the phase triggered the close: its sender was told, and it was counted.
      expect(sims.flatMap((s) => s.rejected)).toContain('internal_error');
      expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'message' })).toBe(1);
      const s = await end;
      expect(s).toMatchObject({ round: 1, attempts: 2, clients: 5 });
      expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
    },
  );

  it('a failure while the masks are stripped (the in-process runner rejects) is contained the same way', async () => {
    const { c, metrics } = await setup({}, undefined, {
      unmask: vi
        .fn<UnmaskRunner>(unmaskInProcess)
        .mockImplementationOnce(() => Promise.reject(new Error('injected WebCrypto failure'))),
    });
    const deltas = Array.from({ length: 5 }, randomDelta);
    const before = c.globalWeights.slice();
    const failed = nextEvent(c, 'roundFailed');
    const end = nextEvent(c, 'roundEnd');
    joinAll(c, deltas, [8, 8, 8, 8, 8]);
    expect(await failed).toMatchObject({ round: 1, attempt: 1, reason: 'internal_error' });
    expect(c.globalWeights).toEqual(before);
    // No message is to blame: it surfaces where deferred work is contained.
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'timer' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'message' })).toBe(0);
    const s = await end;
    expect(s).toMatchObject({ round: 1, attempts: 2, clients: 5 });
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
  });

  it('an exception in a phase close run by its deadline timer (manual clock) is contained the same way', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const { c, metrics } = await setup({}, clock);
    const deltas = Array.from({ length: 5 }, randomDelta);
    const failed = nextEvent(c, 'roundFailed');
    const sims = joinAll(c, deltas, [8, 8, 8, 8, 8]);
    sims[3].silent = true; // online, but never sends its keys: only the deadline closes the phase
    // joinAll started the round; client 3 has not seen round:start yet (it reacts on a timer).
    await until(() => sims.filter((s) => s.session).length === 4, 'four clients advertise keys');
    expect(c.status().secagg.phase).toBe('keys');
    vi.spyOn(SecAggServerSession.prototype, 'closeKeysLazily').mockImplementationOnce(() => {
      throw new Error('injected failure at the keys deadline');
    });
    clock.advance(999);
    expect(c.status().phase).toBe('training');
    clock.advance(1);
    expect(await failed).toMatchObject({ attempt: 1, reason: 'internal_error' });
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'timer' })).toBe(1);
    sims[3].silent = false;
    const end = nextEvent(c, 'roundEnd');
    clock.advance(0); // the pause before the retry
    expect((await end).clients).toBe(5);
  });
});

/** Rounds (and attempts) whose round:start this client received. */
const startsOf = (s: SimClient): string[] =>
  s.sent.filter((e) => e.event === 'round:start').map((e) => `${(e.m as any).round}.${(e.m as any).attempt}`);

describe('Coordinator with secure aggregation: thresholds that say what they protect', () => {
  it('status and round:start carry t, the colluders it tolerates and the round-start log says it in words', async () => {
    const log: string[] = [];
    const { c } = await setup({}, undefined, { log: (m) => log.push(m) });
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, Array.from({ length: 5 }, randomDelta), [8, 8, 8, 8, 8]);
    await end;
    expect(c.status().secagg).toMatchObject({
      k: 4,
      t: 3,
      n: 5,
      complete: true,
      toleratedColluders: 2,
      toleratedColludersSplit: 1,
      bounds: null,
      maliciousServer: false,
      splitBound: null,
      description: expect.stringContaining('tolerates 2 colluding clients'),
    });
    expect(sims[0].start!.secagg).toMatchObject({ n: 5, k: 4, t: 3 });
    expect(log.find((l) => /round 1\.1: selected 5 of 5/.test(l))).toMatch(
      /complete graph of 5 clients, threshold 3: tolerates 2 colluding clients \(1 if the server splits/,
    );
  });

  it('--secagg-malicious-server raises t until split unmask requests expose no one, and reports the bound', async () => {
    // 30% colluders of 5 is 2 clients; with k = 4 a split request needs 2t - k of them, so t = 4 (not the
    // majority 3) leaves them short: the bound is 0.
    const plain = await setup({ secaggCorrupt: 0.3 });
    const e1 = nextEvent(plain.c, 'roundEnd');
    joinAll(plain.c, Array.from({ length: 5 }, randomDelta), [8, 8, 8, 8, 8]);
    await e1;
    expect(plain.c.status().secagg).toMatchObject({
      t: 3,
      toleratedColludersSplit: 1,
      maliciousServer: false,
    });
    plain.c.stop();

    const log: string[] = [];
    const { c } = await setup({ secaggCorrupt: 0.3, secaggMaliciousServer: true }, undefined, {
      log: (m) => log.push(m),
    });
    const deltas = Array.from({ length: 5 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, deltas, [8, 8, 8, 8, 8]);
    expect((await end).clients).toBe(5);
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
    expect(sims[0].start!.secagg).toMatchObject({ k: 4, t: 4 });
    expect(c.status().secagg).toMatchObject({
      t: 4,
      toleratedColluders: 3,
      toleratedColludersSplit: 3,
      maliciousServer: true,
      splitBound: 0,
    });
    expect(log.join('\n')).toMatch(
      /malicious-server mode: split unmask requests \(2 assumed colluders, 4 needed/,
    );
  });
});

describe('Coordinator with secure aggregation unmasking off the event loop', () => {
  const thread = new UnmaskThread();
  afterAll(() => thread.close());

  it("unmasks on the worker thread: the exact mean of the survivors, a dropout's masks stripped there", async () => {
    const { c, metrics } = await setup({}, undefined, { unmask: thread.run });
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 16, 24, 8, 40];
    const end = nextEvent(c, 'roundEnd');
    joinAll(c, deltas, examples, [null, null, 'masked', null, null]);
    const s = await end;
    expect(thread.started).toBe(true);
    expect(s).toMatchObject({ clients: 4, secagg: true, examples: 72 });
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 3, 4])).toBeLessThan(1e-6);
    expect(await metricValue(metrics, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(1);
  });

  it('culprits and aborts come back from the runner as from the in-process unmasking', async () => {
    const { c, metrics } = await setup({}, undefined, { unmask: thread.run });
    // As in the culprits test: client 4 alters every share, client 3 vanishes before unmask: abort, 4 named.
    const failed = nextEvent(c, 'roundFailed');
    const sims = joinAll(
      c,
      Array.from({ length: 5 }, randomDelta),
      [8, 8, 8, 8, 8],
      [null, null, null, 'unmask', null],
    );
    sims[4].alterReveal = () => true;
    expect(await failed).toMatchObject({ round: 1, attempt: 1, reason: 'secagg_aborted' });
    expect(await metricValue(metrics, 'aegis_secagg_culprits_total', { kind: 'altered_share' })).toBe(1);
  });

  it('a runner that fails (a dead worker) is an internal error: the attempt is retried, the model unchanged until then', async () => {
    let calls = 0;
    const unmask: UnmaskRunner = (job) =>
      ++calls === 1 ? Promise.reject(new Error('injected: worker died')) : unmaskInProcess(job);
    const { c, metrics } = await setup({}, undefined, { unmask });
    const deltas = Array.from({ length: 5 }, randomDelta);
    const before = c.globalWeights.slice();
    const failed = nextEvent(c, 'roundFailed');
    const end = nextEvent(c, 'roundEnd');
    joinAll(c, deltas, [8, 8, 8, 8, 8]);
    expect(await failed).toMatchObject({ round: 1, attempt: 1, reason: 'internal_error' });
    expect(c.globalWeights).toEqual(before);
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'timer' })).toBe(1);
    const s = await end;
    expect(s).toMatchObject({ round: 1, attempts: 2, clients: 5 });
    expect(maxError(c.globalWeights, deltas, [8, 8, 8, 8, 8], [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
  });
});

describe('Coordinator with secure aggregation: culprits', () => {
  it('are counted by kind, logged, and sit out the rest of the round only: they take part in the next', async () => {
    const log: string[] = [];
    const { c, metrics } = await setup({ rounds: 2 }, undefined, { log: (m) => log.push(m) });
    // Complete graph of 5, t = 3. Client 3 vanishes before unmask and client 4 alters every share it
    // reveals: some survivor's self-mask then has exactly t = 3 holders answering, one of them altered.
    // The signatures name client 4 and the attempt aborts (two valid shares are not enough).
    const failed = nextEvent(c, 'roundFailed');
    const sims = joinAll(
      c,
      Array.from({ length: 5 }, randomDelta),
      [8, 8, 8, 8, 8],
      [null, null, null, 'unmask', null],
    );
    sims[4].alterReveal = () => true;
    expect(await failed).toMatchObject({ round: 1, attempt: 1, reason: 'secagg_aborted' });
    expect(await metricValue(metrics, 'aegis_secagg_culprits_total', { kind: 'altered_share' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_secagg_culprits_total', { kind: 'inconsistent_dealer' })).toBe(
      0,
    );
    expect(log.join('\n')).toMatch(
      new RegExp(
        `round 1\\.1: 1 client proven to have cheated \\(altered_share x1\\): ${sims[4].id}; excluded until round 1 completes`,
      ),
    );
    // A fifth ready client arrives; the retry is drawn without the culprit, and completes.
    const end1 = nextEvent(c, 'roundEnd');
    const newcomer = enter(c, new SimClient(c, randomDelta(), 8));
    const s1 = await end1;
    expect(s1).toMatchObject({ round: 1, attempts: 2, clients: 4 });
    expect(startsOf(sims[4])).toEqual(['1.1']);
    expect(startsOf(newcomer)).toEqual(['1.2']);
    // Round 1 is complete: the culprit is eligible again. It still cheats, but with four holders answering
    // for every secret its shares can be set aside (it is named only where its share was among the first t).
    const end2 = nextEvent(c, 'roundEnd');
    const s2 = await end2;
    expect(s2).toMatchObject({ round: 2, clients: 5 });
    expect(startsOf(sims[4])).toEqual(['1.1', '2.1']);
  });
});

describe('Coordinator with secure aggregation and Poisson cohorts', () => {
  it('draws the cohort at q from every ready client and reports epsilon with q beside epsilon against the server', async () => {
    const z = 1;
    const seed = new Uint8Array(32).fill(2);
    const { c, metrics } = await setup(
      {
        minClients: 10,
        clientsPerRound: 5,
        dp: {
          noiseMultiplier: z,
          clipNorm: 0.05,
          epsilonBudget: 100,
          delta: 1e-5,
          population: 10,
          adaptive: null,
        },
      },
      undefined,
      { cohortRandom: createSecureRandom(seed) },
    );
    const replay = createSecureRandom(seed);
    const expected = Array.from({ length: 10 }, (_, i) => i).filter(() => replay.float() < 0.5);
    // The seed gives a usable draw that is not the target size (nothing is trimmed to 5).
    expect(expected.length).toBeGreaterThanOrEqual(3);
    expect(expected.length).not.toBe(5);
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, Array.from({ length: 10 }, randomDelta), Array(10).fill(8));
    expect((await end).clients).toBe(expected.length);
    expect(sims.flatMap((s, i) => (s.start ? [i] : []))).toEqual(expected);
    const p = c.status().privacy;
    if (!p.enabled) throw new Error('DP is on');
    expect(p.q).toBe(0.5);
    expect(p.epsilon).toBeCloseTo(epsilonFor(0.5, z, 1, 1e-5), 10);
    expect(p.epsilonAgainstServer).toBeCloseTo(epsilonFor(1, z, 1, 1e-5), 10);
    expect(p.epsilon).toBeLessThan(p.epsilonAgainstServer);
    expect(await metricValue(metrics, 'aegis_dp_epsilon')).toBeCloseTo(p.epsilon, 10);
    expect(await metricValue(metrics, 'aegis_dp_epsilon_against_server')).toBeCloseTo(
      p.epsilonAgainstServer,
      10,
    );
  });
});

describe('Coordinator with over-selection (the cohort is fixed at key advertising, R0)', () => {
  const over = { minClients: 7, clientsPerRound: 5, overSelect: 1.4 };
  const events = (s: SimClient): string[] => s.sent.map((e) => e.event).filter((e) => e !== 'welcome');
  /** Weights after rounds whose cohorts are `who` (FedAvg at server lr 1 from zero, equal examples). */
  const sumOfMeans = (deltas: Float32Array[], who: number[][]): Float32Array =>
    Float32Array.from({ length: P }, (_, j) =>
      who.reduce((acc, w) => acc + w.reduce((s, i) => s + deltas[i][j], 0) / w.length, 0),
    );
  const maxDiff = (a: Float32Array, b: Float32Array): number =>
    a.reduce((m, v, j) => Math.max(m, Math.abs(v - b[j])), 0);

  it('7 invited for 5: two slow clients are released before any shares exist; the 5 fastest complete without a deadline', async () => {
    const clock = new ManualClock(1_000);
    const { c, metrics } = await setup(over, clock);
    const deltas = Array.from({ length: 7 }, randomDelta);
    const end = nextEvent(c, 'roundEnd');
    const sims = deltas.map((d) => new SimClient(c, d, 8));
    sims[5].slowKeys = sims[6].slowKeys = () => true;
    sims.forEach((s) => enter(c, s));
    expect(c.status()).toMatchObject({ phase: 'training', selected: 7 });
    const s = await end; // the clock never moves: a round that waited for any deadline would never end
    expect(clock.now()).toBe(1_000);
    expect(s).toMatchObject({ clients: 5, stragglers: 0, secagg: true });
    expect(maxDiff(c.globalWeights, sumOfMeans(deltas, [[0, 1, 2, 3, 4]]))).toBeLessThan(1e-6);
    // k and t are those of a cohort of 5 (not of the 7 invited); n stays the highest index.
    expect(sims[0].start!.secagg).toMatchObject({ n: 7, cohort: 5, k: 4, t: 3 });
    expect(c.status().secagg).toMatchObject({ n: 5, k: 4, t: 3, complete: true });
    for (const slow of [sims[5], sims[6]]) {
      expect(events(slow)).toEqual(['round:start', 'round:release', 'round:end']);
      expect(slow.sent[2].m).toEqual({ round: 1, attempt: 1, step: 'keys' });
      expect(slow.rejected).toEqual(['not_selected']); // its keys came after the cohort was fixed
    }
    for (const fast of sims.slice(0, 5)) {
      expect(events(fast)).toEqual([
        'round:start',
        'secagg:roster',
        'secagg:inbox',
        'secagg:unmask',
        'round:end',
      ]);
      expect(fast.rejected).toEqual([]);
    }
    expect(await metricValue(metrics, 'aegis_clients_released_total', { step: 'keys' })).toBe(2);
    for (const phase of ['keys', 'shares', 'masked', 'unmask'])
      expect(await metricValue(metrics, 'aegis_secagg_dropouts_total', { phase })).toBe(0);
    expect(await metricValue(metrics, 'aegis_stragglers_dropped_total')).toBe(0);
    expect(
      await metricValue(metrics, 'aegis_round_attempts_failed_total', { reason: 'secagg_aborted' }),
    ).toBe(0);
  });

  it.each([2, 3])(
    '%i invitees vanishing before R0 do not stall the round: the rest form the cohort at once',
    async (vanished) => {
      const clock = new ManualClock(1_000);
      const { c, metrics } = await setup(over, clock);
      const deltas = Array.from({ length: 7 }, randomDelta);
      const end = nextEvent(c, 'roundEnd');
      const vanish = Array.from({ length: 7 }, (_, i) => (i < vanished ? ('keys' as const) : null));
      joinAll(c, deltas, Array(7).fill(8), vanish);
      const s = await end;
      expect(clock.now()).toBe(1_000);
      const who = [2, 3, 4, 5, 6].slice(vanished - 2);
      expect(s.clients).toBe(who.length);
      expect(maxDiff(c.globalWeights, sumOfMeans(deltas, [who]))).toBeLessThan(1e-6);
      // Short of the target, the shortfall are dropouts; the other invitees were released.
      const short = 5 - who.length;
      expect(await metricValue(metrics, 'aegis_secagg_dropouts_total', { phase: 'keys' })).toBe(short);
      expect(await metricValue(metrics, 'aegis_clients_released_total', { step: 'keys' })).toBe(
        vanished - short,
      );
      expect(s.stragglers).toBe(short);
    },
  );

  it('released clients take part in the next round', async () => {
    const { c } = await setup({ ...over, rounds: 2 });
    const deltas = Array.from({ length: 7 }, randomDelta);
    const sims = deltas.map((d) => new SimClient(c, d, 8));
    // Round 1: clients 5 and 6 are slow; round 2: clients 0 and 1.
    sims.forEach((s, i) => (s.slowKeys = (st) => (st.round === 1 ? i >= 5 : i <= 1)));
    const done = nextEvent(c, 'done');
    sims.forEach((s) => enter(c, s));
    const history = await done;
    expect(history.map((h) => h.clients)).toEqual([5, 5]);
    expect(
      maxDiff(
        c.globalWeights,
        sumOfMeans(deltas, [
          [0, 1, 2, 3, 4],
          [2, 3, 4, 5, 6],
        ]),
      ),
    ).toBeLessThan(1e-6);
    for (const i of [5, 6]) {
      const got = sims[i].sent.map((e) => `${e.event}:${(e.m as any)?.round ?? ''}`);
      expect(got).toContain('round:release:1');
      expect(got).toContain('secagg:unmask:2'); // in round 2's cohort, to the end
    }
  });

  it('a round:start without over-selection carries no cohort field', async () => {
    const { c } = await setup();
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, Array.from({ length: 5 }, randomDelta), [8, 8, 8, 8, 8]);
    await end;
    expect('cohort' in sims[0].start!.secagg!).toBe(false);
  });
});

/** A member's masked vector as a scale-out gateway holds it (the test plays the gateways). */
interface Held {
  sim: SimClient;
  y: Uint32Array;
  round: number;
  attempt: number;
}

/** Routes every client's masked vector to the test instead of update(); resolves once all are held. */
function heldByGateways(sims: SimClient[]): Promise<Held[]> {
  return new Promise((resolve) => {
    const held: Held[] = [];
    for (const sim of sims)
      sim.gateway = (y, ref) => {
        held.push({ sim, y, ...ref });
        if (held.length === sims.length) resolve(sims.map((s) => held.find((h) => h.sim === s)!));
      };
  });
}

const claimOf = (h: Held): UpdateClaim => ({
  round: h.round,
  attempt: h.attempt,
  digest: messageDigest(h.y),
});
/** A gateway's partial sum of `hs`, naming `members` (their cohort places unless a test says otherwise). */
function partialOf(hs: Held[], members = hs.map((h) => h.sim.start!.secagg!.index)): PartialSum {
  const sum = new Uint32Array(hs[0].y.length);
  for (const h of hs) addInto(sum, h.y);
  return { round: hs[0].round, attempt: hs[0].attempt, members, sum };
}

describe('Coordinator with secure aggregation, inputs summed by scale-out gateways (claims and partial sums)', () => {
  const refusal = (f: () => unknown): string => {
    try {
      f();
      return 'accepted';
    } catch (e) {
      if (e instanceof ProtocolError) return e.reason;
      throw e;
    }
  };

  it('claims and partial sums complete the round exactly; re-sends, full updates and stray sums never count twice', async () => {
    const { c, metrics } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 16, 24, 8, 40];
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, deltas, examples);
    const held = await heldByGateways(sims);
    const [a, b] = [held.slice(0, 3), held.slice(3)];
    const claim = (h: Held, g: string) => c.claimUpdate(h.sim.id, claimOf(h), g);
    for (const h of a)
      expect(claim(h, 'gw-a')).toEqual({ ack: { ok: true }, member: h.sim.start!.secagg!.index });
    for (const h of b)
      expect(claim(h, 'gw-b')).toEqual({ ack: { ok: true }, member: h.sim.start!.secagg!.index });
    // A claim is no input yet.
    expect(c.status().reported).toBe(0);

    // The same claim again (its ack lost), through any gateway: a duplicate, no member to sum.
    expect(claim(a[0], 'gw-a')).toEqual({ ack: { ok: true, duplicate: true } });
    expect(claim(a[0], 'gw-b')).toEqual({ ack: { ok: true, duplicate: true } });
    // Another vector for a claimed member is refused.
    const other = { ...claimOf(a[0]), digest: messageDigest(new Uint32Array(a[0].y.length)) };
    expect(refusal(() => c.claimUpdate(a[0].sim.id, other, 'gw-a'))).toBe('duplicate');
    // A whole update for a member whose input sits in a gateway's sum: the same one is a duplicate,
    // another is refused; neither is counted (the gateway's sum below would then be refused).
    const whole = (h: Held, y: Uint32Array) =>
      c.update(h.sim.id, { round: h.round, attempt: h.attempt, delta: y.slice().buffer });
    expect(whole(a[1], a[1].y)).toEqual({ ok: true, duplicate: true });
    expect(refusal(() => whole(a[1], new Uint32Array(a[1].y.length)))).toBe('duplicate');
    // A member whose input is claimed cannot refuse the plan any more.
    expect(refusal(() => c.roundRefuse(a[2].sim.id, { round: 1, attempt: 1, reason: 'below_floor' }))).toBe(
      'duplicate',
    );
    expect(c.status().reported).toBe(0);

    // Sums naming members that are not this gateway's unsummed claims are refused whole.
    expect(refusal(() => c.partialSum('gw-b', partialOf(a)))).toBe('not_selected');
    expect(refusal(() => c.partialSum('gw-x', partialOf(b)))).toBe('not_selected');
    expect(c.status().reported).toBe(0);
    // Those refusals touched no claim of gw-a: its sum counts.
    c.partialSum('gw-a', partialOf(a));
    expect(c.status().reported).toBe(3);
    expect(refusal(() => c.partialSum('gw-a', partialOf(a)))).toBe('not_selected'); // summed already
    expect(claim(a[0], 'gw-a')).toEqual({ ack: { ok: true, duplicate: true } });
    expect(c.status().reported).toBe(3);
    c.partialSum('gw-b', partialOf(b));

    const s = await end;
    expect(s).toMatchObject({ clients: 5, examples: 96, rejected: null });
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
    expect(await metricValue(metrics, 'aegis_updates_accepted_total')).toBe(5);
    // A sum for an attempt that is over is late.
    expect(refusal(() => c.partialSum('gw-b', partialOf(b)))).toBe('late');
    expect(refusal(() => claim(b[0], 'gw-b'))).toBe('late');
  });

  it('a sum naming one member of another gateway is refused whole and counts none of its members', async () => {
    const { c } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 8, 8, 8, 8];
    const end = nextEvent(c, 'roundEnd');
    const held = await heldByGateways(joinAll(c, deltas, examples));
    held.forEach((h, i) => c.claimUpdate(h.sim.id, claimOf(h), i < 3 ? 'gw-a' : 'gw-b'));
    // gw-b's sum with one of gw-a's members in it, and one naming a member twice.
    expect(refusal(() => c.partialSum('gw-b', partialOf([...held.slice(3), held[0]])))).toBe('not_selected');
    expect(c.status().reported).toBe(0);
    c.partialSum('gw-a', partialOf(held.slice(0, 3)));
    expect(c.status().reported).toBe(3);
    // That refusal let gw-b's vectors go with it: its claims are void, and the clients' re-sends count.
    for (const h of held.slice(3))
      expect(c.claimUpdate(h.sim.id, claimOf(h), 'gw-b').member).toBe(h.sim.start!.secagg!.index);
    c.partialSum('gw-b', partialOf(held.slice(3)));
    expect((await end).clients).toBe(5);
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
  });

  it("a broken gateway's bad sum (wrong length, a member named twice) voids its claims; re-sent elsewhere they count", async () => {
    const { c } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 8, 8, 8, 8];
    const end = nextEvent(c, 'roundEnd');
    const held = await heldByGateways(joinAll(c, deltas, examples));
    held.forEach((h, i) => c.claimUpdate(h.sim.id, claimOf(h), i < 2 ? 'gw-a' : 'gw-b'));
    const short = partialOf(held.slice(0, 2));
    expect(refusal(() => c.partialSum('gw-a', { ...short, sum: short.sum.subarray(1) }))).toBe(
      'wrong_length',
    );
    const twice = partialOf(held.slice(2));
    expect(
      refusal(() => c.partialSum('gw-b', { ...twice, members: [...twice.members, twice.members[0]] })),
    ).toBe('duplicate');
    expect(c.status().reported).toBe(0);
    for (const h of held) expect(c.claimUpdate(h.sim.id, claimOf(h), 'gw-c').member).toBeDefined();
    c.partialSum('gw-c', partialOf(held));
    expect((await end).clients).toBe(5);
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
  });

  it("a lost gateway's unsummed claims are void: its late sum is refused, the re-sends through another gateway count", async () => {
    const { c } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 16, 8, 16, 8];
    const end = nextEvent(c, 'roundEnd');
    const held = await heldByGateways(joinAll(c, deltas, examples));
    held.forEach((h, i) => c.claimUpdate(h.sim.id, claimOf(h), i < 2 ? 'gw-a' : 'gw-b'));
    c.partialSum('gw-b', partialOf(held.slice(2)));
    expect(c.status().reported).toBe(3);
    expect(c.gatewayLost('gw-b')).toBe(0); // summed: nothing left to void
    expect(c.gatewayLost('gw-a')).toBe(2);
    expect(c.gatewayLost('gw-a')).toBe(0);
    // gw-a was not dead after all: its sum arrives, and is refused (its claims are void).
    expect(refusal(() => c.partialSum('gw-a', partialOf(held.slice(0, 2))))).toBe('not_selected');
    expect(c.status().reported).toBe(3);
    // The summed ones stay summed: their re-sends are duplicates.
    expect(c.claimUpdate(held[2].sim.id, claimOf(held[2]), 'gw-c')).toEqual({
      ack: { ok: true, duplicate: true },
    });
    for (const h of held.slice(0, 2))
      expect(c.claimUpdate(h.sim.id, claimOf(h), 'gw-c').member).toBeDefined();
    c.partialSum('gw-c', partialOf(held.slice(0, 2)));
    const s = await end;
    expect(s.clients).toBe(5);
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
  });

  it('a client gone right after its claim still counts: the phase waits for its gateway, not for the deadline', async () => {
    const { c } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 8, 8, 8, 8];
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, deltas, examples);
    const held = await heldByGateways(sims);
    held.forEach((h) => c.claimUpdate(h.sim.id, claimOf(h), 'gw-a'));
    c.partialSum('gw-a', partialOf(held.slice(0, 4)));
    // The last one waited for leaves; its input is in gw-a's next sum.
    c.disconnect(sims[4]);
    expect(c.status().secagg?.phase).toBe('masked');
    c.partialSum('gw-a', partialOf(held.slice(4)));
    const s = await end;
    expect(s.clients).toBe(5);
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3, 4])).toBeLessThan(1e-6);
  });

  it('a lost gateway holding the only inputs waited for: the phase closes at once without them', async () => {
    const { c } = await setup();
    const deltas = Array.from({ length: 5 }, randomDelta);
    const examples = [8, 8, 8, 8, 8];
    const end = nextEvent(c, 'roundEnd');
    const sims = joinAll(c, deltas, examples);
    const held = await heldByGateways(sims);
    held.forEach((h, i) => c.claimUpdate(h.sim.id, claimOf(h), i < 4 ? 'gw-a' : 'gw-b'));
    c.partialSum('gw-a', partialOf(held.slice(0, 4)));
    c.disconnect(sims[4]);
    expect(c.status().secagg?.phase).toBe('masked');
    expect(c.gatewayLost('gw-b')).toBe(1);
    expect(c.status().secagg?.phase).not.toBe('masked');
    const s = await end;
    expect(s.clients).toBe(4);
    expect(maxError(c.globalWeights, deltas, examples, [0, 1, 2, 3])).toBeLessThan(1e-6);
  });
});
