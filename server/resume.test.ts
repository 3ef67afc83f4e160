import { afterEach, describe, expect, it } from 'vitest';
import { createSecureRandom } from '../shared/dp/secure-random.ts';
import { encodeContribution, vectorLength } from '../shared/fl/encoding.ts';
import { SecAggClientSession } from '../shared/secagg/client-session.ts';
import { packReveal, packShares, unpackInbox, unpackRoster, unpackUnmask } from '../shared/secagg/wire.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type RoundStart, type ServerToClientEvents } from '../shared/protocol/messages.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { ManualClock } from './clock.ts';
import { DEFAULTS, type ServerConfig } from './config.ts';
import { Coordinator, type ClientLink } from './coordinator.ts';
import type { EvalResult } from './evaluator.ts';
import { createMetrics } from './metrics.ts';
import { decodeLedger, RunState } from './run-state.ts';
import { newResumeKey, type ResumeKeys } from './sessions.ts';
import { MemoryStore } from './store.ts';
import { metricValue, nextEvent } from './test-fixtures.ts';

/**
 * The coordinator with a state store (resume after a restart, the ledger written before anything is
 * released) and with clients that reconnect (re-sent messages counted once, rejoining the attempt).
 */
const spec = MODELS.tiny;
const P = numParams(spec);
const rand = createSecureRandom();

class MemLink implements ClientLink {
  sent: { event: keyof ServerToClientEvents; m: any }[] = [];
  send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    this.sent.push({ event, m: args[0] });
  }
  all(event: string): any[] {
    return this.sent.filter((s) => s.event === event).map((s) => s.m);
  }
  last(event: string): any {
    return this.all(event).at(-1);
  }
}

const coords: Coordinator[] = [];
afterEach(() => {
  for (const c of coords.splice(0)) c.stop();
});

const meanLoss = async (w: Float32Array): Promise<EvalResult> => {
  let s = 0;
  for (const x of w) s += x;
  return { accuracy: 0.5, loss: s / w.length, examples: 10, ms: 1 };
};

const DP: ServerConfig['dp'] = {
  noiseMultiplier: 1,
  clipNorm: 0.1,
  epsilonBudget: 100,
  delta: 1e-5,
  population: 0,
  adaptive: null,
};

async function setup(
  o: {
    store?: MemoryStore;
    dp?: boolean;
    evaluate?: typeof meanLoss;
    resumeKeys?: ResumeKeys;
    firstClientIndex?: number;
  } = {},
) {
  const config: ServerConfig = {
    ...DEFAULTS,
    secagg: false,
    model: spec,
    minClients: 2,
    clientsPerRound: 2,
    minUpdates: 2,
    roundDeadlineMs: 5000,
    roundPauseMs: 0,
    maxLossIncrease: 0,
    dp: o.dp === false ? null : DP,
  };
  const logs: string[] = [];
  const runState = o.store ? await RunState.open(o.store) : undefined;
  const metrics = createMetrics();
  const clock = new ManualClock(1_700_000_000_000);
  const c = new Coordinator({
    config,
    metrics,
    evaluate: o.evaluate ?? meanLoss,
    evalBackend: 'cpu',
    initialWeights: new Float32Array(P).fill(0.01),
    dataFor: (i) => ({ kind: 'synthetic', seed: i, count: 8 }),
    clock,
    log: (m) => logs.push(m),
    runState,
    resumeKeys: o.resumeKeys,
    firstClientIndex: o.firstClientIndex,
  });
  coords.push(c);
  await c.init();
  return { c, logs, metrics, clock };
}

const HELLO = { protocolVersion: PROTOCOL_VERSION, source: 'node' };
function join(c: Coordinator): { link: MemLink; id: string } {
  const link = new MemLink();
  const id = c.hello(link, HELLO);
  c.ready(id, { backend: 'cpu' });
  return { link, id };
}

/** The update a client sends for the round:start it got last (a ring vector under DP, float32 otherwise). */
function updateFor(start: RoundStart, v = 0.01): Record<string, unknown> {
  const delta = new Float32Array(P).fill(v);
  const ref = { round: start.round, attempt: start.attempt };
  if (!start.encoding) return { ...ref, numExamples: 8, trainMs: 1, loss: 1, delta: delta.buffer };
  return { ...ref, delta: encodeContribution(delta, 8, start.encoding, rand, 1).ring.buffer };
}

const reason = (f: () => unknown): string => {
  try {
    f();
    return 'accepted';
  } catch (e) {
    return (e as ProtocolError).reason;
  }
};

describe('Coordinator with a state store', () => {
  it('charges the ledger before the aggregate is released, checkpoints each round, and resumes from it', async () => {
    const store = new MemoryStore();
    const seen: number[] = [];
    const { c, logs, clock } = await setup({
      store,
      evaluate: async (w) => {
        const l = await store.get('ledger');
        seen.push(l ? decodeLedger(l, c.runIdentity).length : 0);
        return meanLoss(w);
      },
    });
    expect(logs.some((l) => /^new run [0-9a-f]{16} \(state in memory\)$/.test(l))).toBe(true);
    const a = join(c);
    const b = join(c);
    for (let round = 1; round <= 2; round++) {
      const end = nextEvent(c, 'roundEnd');
      for (const x of [a, b])
        expect(c.update(x.id, updateFor(x.link.last('round:start')))).toEqual({ ok: true });
      await end;
      clock.advance(0); // the pause before the next round
    }
    // The initial evaluation saw no entry; the evaluations of rounds 1 and 2 saw their charge already written.
    expect(seen).toEqual([0, 1, 2]);
    const before = c.status();
    const epsBefore = (before.privacy as { epsilon: number }).epsilon;
    expect(epsBefore).toBeGreaterThan(0);
    const weights = c.globalWeights.slice();

    // "Restart": a new coordinator on the same store.
    const again = await setup({ store });
    const s = again.c.status();
    expect(s.round).toBe(3);
    expect(s.history.map((h) => h.round)).toEqual([1, 2]);
    expect(again.c.globalWeights).toEqual(weights);
    expect((s.privacy as { epsilon: number }).epsilon).toBe(epsBefore);
    expect(again.logs).toContain(`resumed run ${c.runIdentity} at round 3, ε spent ${epsBefore.toFixed(3)}`);
    expect(again.c.runIdentity).toBe(c.runIdentity);
  });

  it('a crash after the charge (nothing checkpointed) resumes the same round, ε counted, attempt numbers not reused', async () => {
    const store = new MemoryStore();
    const rs = await RunState.open(store);
    await rs.charge({ round: 1, attempt: 1 }, 1, 1); // written before unmasking, then the process died
    const { c, logs } = await setup({ store });
    const s = c.status();
    expect(s.round).toBe(1);
    expect((s.privacy as { epsilon: number; rounds: number }).rounds).toBe(1); // over-counted, never under
    expect(logs.some((l) => l.startsWith(`resumed run ${rs.runId} at round 1, ε spent `))).toBe(true);
    const a = join(c);
    join(c);
    expect(a.link.last('round:start')).toMatchObject({ round: 1, attempt: 2 });
  });

  it('an attempt that fails before anything is released charges nothing', async () => {
    const store = new MemoryStore();
    const { c, clock } = await setup({ store });
    const a = join(c);
    join(c);
    const rs = await RunState.open(store); // reads what the coordinator wrote (and counts a start)
    expect(rs.ledger).toEqual([]);
    // Only one of two reports, then the deadline: too few updates, nothing released, nothing charged.
    const failed = nextEvent(c, 'roundFailed');
    c.update(a.id, updateFor(a.link.last('round:start')));
    clock.advance(5000);
    expect((await failed).reason).toBe('too_few_updates');
    expect((await RunState.open(store)).ledger).toEqual([]);
  });
});

describe('Sessions across coordinators', () => {
  it('a coordinator taking over with the same resume key welcomes the old sessions back on their shards', async () => {
    const keys = { key: newResumeKey() };
    const { c } = await setup({ dp: false, resumeKeys: keys });
    join(c);
    const a = join(c);
    const w = a.link.last('welcome');
    expect(w.data).toMatchObject({ seed: 1 });
    c.stop();
    // The standby: nothing of the old one's sessions, the same key; its own sessions start at 100.
    const next = (await setup({ dp: false, resumeKeys: keys, firstClientIndex: 100 })).c;
    const credentials = { sessionId: w.sessionId, resumeToken: w.resumeToken };
    expect(next.sessionOf(credentials)).toBe(a.id);
    const back = new MemLink();
    expect(next.hello(back, { ...HELLO, resume: credentials })).toBe(a.id);
    expect(back.last('welcome')).toMatchObject({ sessionId: a.id, data: { seed: 1 } });
    expect(join(next).link.last('welcome').data).toMatchObject({ seed: 100 });
    // A restart without the key (each process draws its own) knows none of them: a new session is needed.
    const stranger = (await setup({ dp: false })).c;
    expect(stranger.sessionOf(credentials)).toBeNull();
    expect(reason(() => stranger.hello(new MemLink(), { ...HELLO, resume: credentials }))).toBe('bad_token');
  });
});

describe('Idempotent re-sends', () => {
  it('the same update again is acknowledged as a duplicate and counted once; a different one is refused', async () => {
    const { c, metrics } = await setup({ dp: false });
    const a = join(c);
    const b = join(c);
    const u = updateFor(a.link.last('round:start'));
    expect(c.update(a.id, u)).toEqual({ ok: true });
    expect(c.update(a.id, { ...u, delta: (u.delta as ArrayBuffer).slice(0) })).toEqual({
      ok: true,
      duplicate: true,
    });
    expect(reason(() => c.update(a.id, updateFor(a.link.last('round:start'), 0.02)))).toBe('duplicate');
    expect(await metricValue(metrics, 'aegis_updates_accepted_total')).toBe(1);
    expect(c.status().reported).toBe(1);
    const end = nextEvent(c, 'roundEnd');
    c.update(b.id, updateFor(b.link.last('round:start'), 0.03));
    const summary = await end;
    expect(summary.clients).toBe(2);
    // Counted once: the mean of 0.01 and 0.03 (a double count would give 0.0167).
    expect(c.globalWeights[0]).toBeCloseTo(0.01 + 0.02, 5);
  });

  it('after a reconnect (resumed session) the re-sent update is still the same member’s, counted once', async () => {
    const { c } = await setup({ dp: false });
    const a = join(c);
    join(c);
    const u = updateFor(a.link.last('round:start'));
    expect(c.update(a.id, u)).toEqual({ ok: true });
    const token = a.link.last('welcome').resumeToken;
    c.disconnect(a.link);
    const again = new MemLink();
    expect(c.hello(again, { ...HELLO, resume: { sessionId: a.id, resumeToken: token } })).toBe(a.id);
    expect(c.update(a.id, u)).toEqual({ ok: true, duplicate: true });
    expect(c.status().reported).toBe(1);
    // It had answered: nothing is re-sent to it.
    expect(again.all('round:start')).toEqual([]);
  });
});

describe('Rejoining the attempt after a reconnect', () => {
  it('a member that reconnects before it reported gets the same round:start again and completes the attempt', async () => {
    const { c } = await setup({ dp: false });
    const a = join(c);
    const b = join(c);
    const first = a.link.last('round:start');
    const token = a.link.last('welcome').resumeToken;
    c.disconnect(a.link); // b still online: the attempt waits
    expect(c.status().phase).toBe('training');
    const again = new MemLink();
    c.hello(again, { ...HELLO, resume: { sessionId: a.id, resumeToken: token } });
    const resent = again.last('round:start');
    expect(resent).toMatchObject({ round: first.round, attempt: first.attempt });
    expect(resent.weights).toEqual(first.weights);
    const end = nextEvent(c, 'roundEnd');
    expect(c.update(a.id, updateFor(resent))).toEqual({ ok: true });
    expect(c.update(b.id, updateFor(b.link.last('round:start')))).toEqual({ ok: true });
    expect((await end).attempts).toBe(1); // the same attempt, not a retry
  });

  it('a client outside the cohort that connects mid-attempt is sent nothing', async () => {
    const { c } = await setup({ dp: false });
    join(c);
    join(c);
    const other = join(c);
    expect(other.link.all('round:start')).toEqual([]);
  });
});

/** A protocol client through the coordinator's API (as socket.ts calls it); `pausedAt` stops it before a phase. */
class SecureSim extends MemLink {
  id = '';
  session: SecAggClientSession | null = null;
  start: RoundStart | null = null;
  pausedAt: string | null = null;
  constructor(
    readonly c: Coordinator,
    readonly events: string[],
  ) {
    super();
  }
  override send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    super.send(event, ...args);
    this.events.push(`${this.id}:${event}`);
    const m = args[0] as any;
    setTimeout(() => this.react(event, m), 0);
  }
  react(event: string, m: any): void {
    if (event === this.pausedAt) return;
    const ref = { round: m.round, attempt: m.attempt };
    if (event === 'round:start') {
      this.start = m;
      this.session = new SecAggClientSession({ ...m.secagg, vectorLength: vectorLength(P) });
      this.c.secagg('keys', this.id, { ...ref, ...this.session.advertise() });
    } else if (event === 'secagg:roster') {
      const shares = this.session!.receiveRoster(unpackRoster(m, 10));
      this.c.secagg('shares', this.id, { ...ref, ...packShares(shares) });
    } else if (event === 'secagg:inbox') {
      this.session!.receiveInbox(unpackInbox(m, 10));
      const enc = encodeContribution(new Float32Array(P).fill(0.01), 8, this.start!.encoding!, rand, 1);
      void this.session!.mask(enc.ring).then((masked) =>
        this.c.update(this.id, { ...ref, delta: masked.buffer }),
      );
    } else if (event === 'secagg:unmask') {
      const r = this.session!.receiveUnmask(unpackUnmask(m, 10));
      this.c.secagg('reveal', this.id, { ...ref, ...packReveal(r) });
    }
  }
}

async function secureSetup(store: MemoryStore, events: string[]) {
  const config: ServerConfig = {
    ...DEFAULTS,
    model: spec,
    secagg: true,
    minClients: 3,
    clientsPerRound: 3,
    minUpdates: 2,
    roundPauseMs: 0,
    maxLossIncrease: 0,
    dp: DP,
  };
  const recording: MemoryStore = Object.assign(Object.create(MemoryStore.prototype), store, {
    put: async (k: 'run' | 'ledger' | 'checkpoint', v: Uint8Array) => {
      await store.put(k, v);
      events.push(`store:${k}`);
    },
    get: (k: 'run' | 'ledger' | 'checkpoint') => store.get(k),
  });
  const c = new Coordinator({
    config,
    metrics: createMetrics(),
    evaluate: meanLoss,
    evalBackend: 'cpu',
    initialWeights: new Float32Array(P).fill(0.01),
    dataFor: (i) => ({ kind: 'synthetic', seed: i, count: 8 }),
    runState: await RunState.open(recording),
  });
  coords.push(c);
  await c.init();
  const sims = [0, 1, 2].map(() => new SecureSim(c, events));
  return { c, sims };
}

describe('Secure rounds with a state store and reconnects', () => {
  it('the ledger charge is durable before the first unmask request goes out', async () => {
    const events: string[] = [];
    const { c, sims } = await secureSetup(new MemoryStore(), events);
    const end = nextEvent(c, 'roundEnd');
    for (const s of sims) {
      s.id = c.hello(s, HELLO);
      c.ready(s.id, { backend: 'cpu' });
    }
    await end;
    const ledger = events.indexOf('store:ledger');
    const unmask = events.findIndex((e) => e.endsWith(':secagg:unmask'));
    const inbox = events.findIndex((e) => e.endsWith(':secagg:inbox'));
    expect(inbox).toBeGreaterThanOrEqual(0);
    expect(ledger).toBeGreaterThan(inbox); // charged once the masked inputs are in...
    expect(unmask).toBeGreaterThan(ledger); // ...and before anyone is asked to reveal
    expect(events.indexOf('store:checkpoint')).toBeGreaterThan(unmask);
  });

  it('a member that reconnects in the masked-input phase is sent its inbox again and the attempt completes', async () => {
    const events: string[] = [];
    const { c, sims } = await secureSetup(new MemoryStore(), events);
    const [a, b] = sims;
    // a got its inbox, then its connection dropped before it answered; b is slow (online, not answered yet).
    a.pausedAt = 'secagg:inbox';
    b.pausedAt = 'secagg:inbox';
    for (const s of sims) {
      s.id = c.hello(s, HELLO);
      c.ready(s.id, { backend: 'cpu' });
    }
    await waitUntil(() => a.all('secagg:inbox').length === 1 && c.status().reported === 1);
    const token = a.last('welcome').resumeToken;
    c.disconnect(a);
    expect(c.status().phase).toBe('training'); // b still owes its input: the phase stays open
    const end = nextEvent(c, 'roundEnd');
    a.pausedAt = null;
    const inbox = a.last('secagg:inbox');
    a.id = c.hello(a, { ...HELLO, resume: { sessionId: a.id, resumeToken: token } });
    expect(a.all('secagg:inbox')).toHaveLength(2);
    expect(a.last('secagg:inbox')).toEqual(inbox);
    await waitUntil(() => c.status().reported === 2); // a answered the re-sent inbox
    b.pausedAt = null;
    b.react('secagg:inbox', b.last('secagg:inbox'));
    const summary = await end;
    expect(summary).toMatchObject({ clients: 3, attempts: 1 });
  });
});

async function waitUntil(f: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(f()).toBe(true);
}
