import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WeightedMean } from '../shared/fl/fedavg.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type ServerToClientEvents } from '../shared/protocol/messages.ts';
import { DEFAULTS, type ServerConfig } from './config.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { ManualClock } from './clock.ts';
import { createSecureRandom, type SecureRandom } from '../shared/dp/secure-random.ts';
import { Coordinator, SKIP_RETRY_MS, type ClientLink, type CoordinatorDeps } from './coordinator.ts';
import type { EvalResult, Evaluator } from './evaluator.ts';
import { GlobalModel } from './global-model.ts';
import { metricValue, nextEvent, testEvaluator } from './test-fixtures.ts';
import { createMetrics } from './metrics.ts';

const spec = MODELS.tiny;
const P = numParams(spec);
type Sent = { event: keyof ServerToClientEvents; args: unknown[] };

class MemLink implements ClientLink {
  sent: Sent[] = [];
  send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    this.sent.push({ event, args });
  }
  last(event: string): any {
    return [...this.sent].reverse().find((s) => s.event === event)?.args[0];
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

async function setup(over: Partial<ServerConfig> = {}, deps: Partial<CoordinatorDeps> = {}) {
  const config: ServerConfig = {
    ...DEFAULTS,
    secagg: false,
    model: spec,
    minClients: 2,
    clientsPerRound: 3,
    minUpdates: 2,
    roundDeadlineMs: 400,
    roundPauseMs: 0,
    ...over,
  };
  const metrics = createMetrics();
  // Deadlines and pauses run on this clock: a test moves time on instead of waiting for it.
  const clock = new ManualClock(1_700_000_000_000);
  const c = new Coordinator({
    config,
    metrics,
    evaluate: (w) => evaluator.evaluate(w),
    evalBackend: 'cpu',
    initialWeights: new Float32Array(P).fill(0.01),
    dataFor: (i) => ({ kind: 'synthetic', seed: i, count: 8 }),
    clock,
    ...deps,
  });
  coord = c;
  ids = [];
  links = [];
  await c.init();
  return { c, metrics, clock };
}

const HELLO = { protocolVersion: PROTOCOL_VERSION, source: 'node' };
/** Session ids the server issued to the test's clients, by the test's own client number. */
let ids: string[] = [];
let links: MemLink[] = [];
const id = (n: number): string => ids[n] ?? `never-joined-client-${n}`;
/** The resume token client n was welcomed with. */
const token = (n: number): string => links[n].last('welcome').resumeToken;
/** Client n says hello (a new session) without getting ready. */
function connect(c: Coordinator, n: number): MemLink {
  const l = new MemLink();
  ids[n] = c.hello(l, HELLO);
  links[n] = l;
  return l;
}
function join(c: Coordinator, n: number): MemLink {
  const l = connect(c, n);
  c.ready(id(n), { backend: 'cpu' });
  return l;
}
const delta = (v: number): ArrayBuffer => new Float32Array(P).fill(v).buffer;
const upd = (round: number, attempt: number, v: number, numExamples = 8) => ({
  round,
  attempt,
  numExamples,
  trainMs: 1,
  loss: 1,
  delta: delta(v),
});
const rejectReason = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    if (e instanceof ProtocolError) return e.reason;
    throw e;
  }
  return 'accepted';
};

describe('Coordinator', () => {
  it('welcomes clients with model and data, starts a round at minClients and sends binary weights', async () => {
    const { c } = await setup();
    const a = join(c, 1);
    expect(a.last('welcome')).toMatchObject({
      protocolVersion: PROTOCOL_VERSION,
      sessionId: id(1),
      resumeToken: expect.stringMatching(/^[A-Za-z0-9_-]{55}$/),
      task: { name: spec.name, model: { preset: spec.name }, inputShape: [32, 32, 3], numClasses: 10 },
      data: { kind: 'synthetic', seed: 0 },
    });
    expect(a.last('round:start')).toBeUndefined();
    const b = join(c, 2);
    const rs = a.last('round:start');
    expect(rs).toMatchObject({ round: 1, attempt: 1, deadlineMs: 400, train: { epochs: DEFAULTS.epochs } });
    expect(Buffer.isBuffer(rs.weights) && rs.weights.byteLength).toBe(P * 4);
    expect(b.last('round:start').round).toBe(1);
  });

  it('aggregates the example-weighted mean, evaluates, broadcasts round:end', async () => {
    const { c, metrics } = await setup();
    const a = join(c, 1),
      b = join(c, 2);
    const done = nextEvent(c, 'roundEnd');
    expect(c.update(id(1), upd(1, 1, 1, 8))).toEqual({ ok: true });
    expect(c.update(id(2), upd(1, 1, 4, 24))).toEqual({ ok: true });
    const summary = await done;
    // 0.01 + (8*1 + 24*4)/32 = 3.26
    expect(c.globalWeights[0]).toBeCloseTo(3.26, 5);
    // Float rounds: the server sees each update, its example count and loss (1 each here).
    expect(summary).toMatchObject({ round: 1, clients: 2, examples: 32, stragglers: 0, trainLoss: 1 });
    expect(a.last('round:end')).toEqual(summary);
    expect(b.last('round:end')).toEqual(summary);
    expect(await metricValue(metrics, 'aegis_rounds_completed_total')).toBe(1);
    expect(await metricValue(metrics, 'aegis_updates_accepted_total')).toBe(2);
    expect(c.status().history).toHaveLength(1);
  });

  it('applies the configured server optimizer (FedAdam) to the aggregate, and sends FedProx mu and augmentation to clients', async () => {
    const { c } = await setup({
      serverLearningRate: 0.1,
      serverOptimizer: { name: 'fedadam', momentum: 0.9, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
      proximalMu: 0.5,
      augment: true,
    });
    const a = join(c, 1);
    join(c, 2);
    expect(a.last('round:start').train.proximalMu).toBe(0.5);
    expect(a.last('round:start').train.augment).toBe(true);
    const done = nextEvent(c, 'roundEnd');
    c.update(id(1), upd(1, 1, 1, 8));
    c.update(id(2), upd(1, 1, 4, 24));
    await done;
    // mean delta 3.25: m = 0.325, v = 0.99e-6 + 0.01 * 3.25^2 = 0.10562599; w = 0.01 + 0.1 * m / (sqrt(v) + 1e-3)
    expect(c.globalWeights[0]).toBeCloseTo(0.01 + (0.1 * 0.325) / (Math.sqrt(0.10562599) + 1e-3), 5);
  });

  it('drops stragglers at the deadline and completes with those who reported', async () => {
    const { c, metrics, clock } = await setup({ minClients: 3 });
    join(c, 1);
    join(c, 2);
    join(c, 3);
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 1));
    const end = nextEvent(c, 'roundEnd');
    clock.advance(399);
    expect(c.status()).toMatchObject({ phase: 'training', reported: 2, deadlineAt: clock.now() + 1 });
    clock.advance(1);
    const s = await end;
    expect(s).toMatchObject({ clients: 2, stragglers: 1 });
    expect(await metricValue(metrics, 'aegis_stragglers_dropped_total')).toBe(1);
    // The straggler's late update is rejected and changes nothing.
    const w = c.globalWeights.slice();
    expect(rejectReason(() => c.update(id(3), upd(1, 1, 100)))).toBe('late');
    expect(c.globalWeights).toEqual(w);
  });

  it('retries a round that misses minUpdates, leaving the model unchanged', async () => {
    const { c, metrics, clock } = await setup({ roundPauseMs: 1000 });
    const a = join(c, 1);
    join(c, 2);
    const w0 = c.globalWeights.slice();
    c.update(id(1), upd(1, 1, 5));
    const failed = nextEvent(c, 'roundFailed');
    clock.advance(400);
    await failed;
    expect(await failed).toMatchObject({ round: 1, attempt: 1, updates: 1 });
    expect(c.globalWeights).toEqual(w0);
    expect(
      await metricValue(metrics, 'aegis_round_attempts_failed_total', { reason: 'too_few_updates' }),
    ).toBe(1);
    // The retry waits out the pause.
    const started = nextEvent(c, 'roundStart');
    clock.advance(999);
    expect(c.status().phase).toBe('waiting');
    clock.advance(1);
    await started;
    expect(a.last('round:start')).toMatchObject({ round: 1, attempt: 2 });
    // An update for the failed attempt is late; the new attempt accepts.
    expect(rejectReason(() => c.update(id(1), upd(1, 1, 5)))).toBe('late');
    expect(c.update(id(1), upd(1, 2, 1))).toEqual({ ok: true });
  });

  it('closes early when the only clients left to report are offline, and accepts a reconnect', async () => {
    const { c } = await setup({ minClients: 3, minUpdates: 2, roundDeadlineMs: 10_000 });
    join(c, 1);
    const l2 = join(c, 2);
    const l3 = join(c, 3);
    c.update(id(1), upd(1, 1, 1));
    // Client 2 drops and resumes its session on a new socket, with its token: it is still in the cohort.
    const { sessionId, resumeToken } = l2.last('welcome');
    c.disconnect(l2);
    const l2b = new MemLink();
    expect(c.hello(l2b, { ...HELLO, resume: { sessionId, resumeToken } })).toBe(id(2));
    // Welcomed back as the same session, with a token issued now (the same one within the same second).
    expect(l2b.last('welcome')).toMatchObject({
      sessionId,
      resumeToken: expect.stringMatching(/^[A-Za-z0-9_-]{55}$/),
    });
    expect(c.sessionOf(l2b.last('welcome'))).toBe(id(2));
    expect(c.update(id(2), upd(1, 1, 1))).toEqual({ ok: true });
    const done = nextEvent(c, 'roundEnd');
    c.disconnect(l3); // the manual clock never reaches the deadline: only the early close can end it
    expect((await done).stragglers).toBe(1);
  });

  it('keep-old-model guard: a round whose test loss jumps past the margin is recorded as rejected, the model kept, training goes on', async () => {
    // Stub evaluator: the test loss is the first weight.
    const stub = async (w: Float32Array): Promise<EvalResult> => ({
      accuracy: 0.5,
      loss: w[0],
      examples: 1,
      ms: 0,
    });
    const { c, metrics, clock } = await setup({ maxLossIncrease: 1, rounds: 3 }, { evaluate: stub });
    join(c, 1);
    join(c, 2);
    const round = async (r: number, v: number) => {
      const end = nextEvent(c, 'roundEnd');
      clock.advance(0);
      c.update(id(1), upd(r, 1, v));
      c.update(id(2), upd(r, 1, v));
      return end;
    };
    expect((await round(1, 0.5)).rejected).toBeNull(); // loss 0.01 -> 0.51
    const w1 = c.globalWeights.slice();
    const bad = await round(2, 10); // 10.51 > 0.51 + 1
    expect(c.globalWeights).toEqual(w1);
    expect(bad).toMatchObject({
      round: 2,
      loss: expect.closeTo(0.51, 6),
      rejected: { loss: expect.closeTo(10.51, 5) },
    });
    expect(bad.rejected!.reason).toMatch(/more than 1 above/);
    expect(links[1].last('round:end')).toEqual(bad);
    // Training goes on from the kept model.
    expect((await round(3, 0.25)).rejected).toBeNull();
    expect(c.globalWeights[0]).toBeCloseTo(0.76, 5);
    const st = c.status();
    expect(st.phase).toBe('done');
    expect(st.history.map((h) => h.rejected === null)).toEqual([true, false, true]);
    expect(st.defences).toEqual({
      aggregatesRejected: 0,
      lastAggregateRejection: null,
      modelsRejected: 1,
      maxLossIncrease: 1,
    });
    expect(await metricValue(metrics, 'aegis_models_rejected_total', { reason: 'loss_increase' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_rounds_completed_total')).toBe(2);
  });

  it('stops after the configured number of rounds', async () => {
    const { c } = await setup({ rounds: 1 });
    join(c, 1);
    join(c, 2);
    const done = nextEvent(c, 'done');
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 1));
    expect(await done).toHaveLength(1);
    expect(c.status().phase).toBe('done');
  });
});

describe('Coordinator rejects every kind of bad message with its reason, and the round still completes', () => {
  type Case = [string, string, (c: Coordinator) => unknown];
  const cases: Case[] = [
    ['an update on a socket that never said hello', 'unknown_client', (c) => c.update(null, upd(1, 1, 1))],
    ['an update from an unknown id', 'unknown_client', (c) => c.update('never-said-hello-123', upd(1, 1, 1))],
    [
      'a resume of a live session (taking over a cohort member)',
      'session_taken',
      (c) => {
        const last = c.status(); // the round is on; client 1 is in it
        expect(last.phase).toBe('training');
        return c.hello(new MemLink(), { ...HELLO, resume: { sessionId: id(1), resumeToken: token(1) } });
      },
    ],
    [
      "a resume of a member's session with a guessed token",
      'bad_token',
      (c) =>
        c.hello(new MemLink(), {
          ...HELLO,
          resume: { sessionId: id(1), resumeToken: token(1).slice(0, 12) + 'A'.repeat(43) },
        }),
    ],
    ['an update from a client outside the cohort', 'not_selected', (c) => c.update(id(9), upd(1, 1, 1))],
    [
      'a delta one value short',
      'wrong_length',
      (c) => c.update(id(1), { ...upd(1, 1, 1), delta: new Float32Array(P - 1).buffer }),
    ],
    [
      'a NaN in the delta',
      'not_finite',
      (c) => c.update(id(1), { ...upd(1, 1, 1), delta: new Float32Array(P).fill(NaN).buffer }),
    ],
    [
      'a delta as a JSON array',
      'malformed',
      (c) => c.update(id(1), { ...upd(1, 1, 1), delta: Array.from({ length: P }, () => 0) }),
    ],
    ['an update for a future round', 'wrong_round', (c) => c.update(id(1), upd(2, 1, 1))],
    ['an update for a future attempt', 'wrong_round', (c) => c.update(id(1), upd(1, 7, 1))],
    ['an absurd example count', 'malformed', (c) => c.update(id(1), { ...upd(1, 1, 1), numExamples: 1e9 })],
    [
      'a second, different update from the same client',
      'duplicate',
      (c) => {
        expect(c.update(id(1), upd(1, 1, 1))).toEqual({ ok: true });
        return c.update(id(1), upd(1, 1, 5));
      },
    ],
    [
      'a hello in another protocol version',
      'protocol_version',
      (c) => c.hello(new MemLink(), { ...HELLO, protocolVersion: 1 }),
    ],
  ];

  it.each(cases)('%s: %s', async (_what, reason, send) => {
    const { c } = await setup({ clientsPerRound: 2, minClients: 2, roundDeadlineMs: 5000 });
    join(c, 1);
    join(c, 2);
    connect(c, 9); // connected, not ready
    expect(rejectReason(() => send(c))).toBe(reason);
    // The honest clients finish the round as if nothing happened.
    const done = nextEvent(c, 'roundEnd');
    if (c.status().reported === 0) expect(c.update(id(1), upd(1, 1, 1))).toEqual({ ok: true });
    expect(c.update(id(2), upd(1, 1, 3))).toEqual({ ok: true });
    expect((await done).clients).toBe(2);
    expect(c.globalWeights[0]).toBeCloseTo(2.01, 5);
  });
});

describe('Coordinator counts clients that refuse a round plan (their page floors)', () => {
  const refuse = (c: Coordinator, n: number, m: unknown) => rejectReason(() => c.roundRefuse(id(n), m));

  it('counts the refusal by reason, once, and treats the client as a dropout of that attempt', async () => {
    const lines: string[] = [];
    const { c, metrics } = await setup({ minClients: 3 }, { log: (m) => lines.push(m) });
    join(c, 1);
    join(c, 2);
    const l3 = join(c, 3);
    expect(l3.last('round:start')).toMatchObject({ round: 1, attempt: 1 });
    expect(refuse(c, 3, { round: 1, attempt: 1, reason: 'below_floor' })).toBe('accepted');
    expect(refuse(c, 3, { round: 1, attempt: 1, reason: 'below_floor' })).toBe('accepted');
    expect(await metricValue(metrics, 'aegis_client_refusals_total', { reason: 'below_floor' })).toBe(1);
    const end = nextEvent(c, 'roundEnd');
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 3));
    // The manual clock stands still, so no deadline closed this attempt: the refusal let it close without 3.
    expect(await end).toMatchObject({ round: 1, clients: 2, stragglers: 1 });
    expect(c.globalWeights[0]).toBeCloseTo(2.01, 5);
    expect(lines.filter((l) => l.includes('refused the round plan (below_floor)'))).toHaveLength(1);
  });

  it('without the refusal the same attempt waits for the third client until the deadline', async () => {
    const { c, clock } = await setup({ minClients: 3 });
    for (const n of [1, 2, 3]) join(c, n);
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 3));
    expect(c.status().phase).toBe('training');
    const end = nextEvent(c, 'roundEnd');
    clock.advance(400);
    expect(await end).toMatchObject({ clients: 2, stragglers: 1 });
  });

  it('rejects refusals that are malformed, from strangers, duplicates of an update, or for another attempt', async () => {
    const { c, metrics } = await setup({ minClients: 3, clientsPerRound: 3 });
    for (const n of [1, 2, 3, 4]) join(c, n);
    const outsider = [1, 2, 3, 4].find((n) => !links[n].last('round:start'))!;
    const member = [1, 2, 3, 4].find((n) => n !== outsider)!;
    const ok = { round: 1, attempt: 1, reason: 'below_floor' };
    expect(refuse(c, member, { ...ok, reason: 'my own words <script>' })).toBe('malformed');
    expect(refuse(c, member, 'no')).toBe('malformed');
    expect(rejectReason(() => c.roundRefuse('never-said-hello', ok))).toBe('unknown_client');
    expect(refuse(c, outsider, ok)).toBe('not_selected');
    expect(refuse(c, member, { ...ok, attempt: 2 })).toBe('wrong_round');
    expect(refuse(c, member, { ...ok, round: 0 })).toBe('late');
    c.update(id(member), upd(1, 1, 1));
    expect(refuse(c, member, ok)).toBe('duplicate');
    const values = (await metrics.registry.getSingleMetric('aegis_client_refusals_total')!.get()).values;
    expect(values.every((v) => v.labels.reason === 'below_floor' && v.value === 0)).toBe(true);
  });

  it('log lines about refusals are rate-limited; every refusal is still counted', async () => {
    const lines: string[] = [];
    const n = 30;
    const { c, metrics } = await setup({ minClients: n, clientsPerRound: n }, { log: (m) => lines.push(m) });
    for (let i = 1; i <= n; i++) join(c, i);
    for (let i = 1; i <= n; i++) refuse(c, i, { round: 1, attempt: 1, reason: 'malformed' });
    expect(await metricValue(metrics, 'aegis_client_refusals_total', { reason: 'malformed' })).toBe(n);
    const logged = lines.filter((l) => l.includes('refused the round plan')).length;
    expect(logged).toBeGreaterThan(0);
    expect(logged).toBeLessThan(n);
  });
});

describe('Coordinator contains internal errors', () => {
  const boom = () => {
    throw new Error('injected failure');
  };

  it('an exception in the deadline close aborts that attempt (model unchanged, counted) and the retry completes', async () => {
    const { c, metrics, clock } = await setup({ minClients: 3 });
    join(c, 1);
    join(c, 2);
    join(c, 3);
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 1));
    const w0 = c.globalWeights.slice();
    vi.spyOn(WeightedMean.prototype, 'mean').mockImplementationOnce(boom);
    const failed = nextEvent(c, 'roundFailed');
    clock.advance(400); // the close runs inside the timer; without containment this would throw here
    expect(await failed).toMatchObject({ round: 1, attempt: 1, updates: 2, reason: 'internal_error' });
    expect(c.globalWeights).toEqual(w0);
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'timer' })).toBe(1);
    expect(
      await metricValue(metrics, 'aegis_round_attempts_failed_total', { reason: 'internal_error' }),
    ).toBe(1);
    const end = nextEvent(c, 'roundEnd');
    clock.advance(0);
    for (const n of [1, 2, 3]) expect(c.update(id(n), upd(1, 2, 1))).toEqual({ ok: true });
    expect(await end).toMatchObject({ round: 1, attempts: 2, clients: 3 });
    expect(c.globalWeights[0]).toBeCloseTo(1.01, 5);
  });

  it('an exception while handling a message is answered internal_error, counted, and the attempt is retried', async () => {
    const { c, metrics, clock } = await setup();
    join(c, 1);
    join(c, 2);
    c.update(id(1), upd(1, 1, 1));
    vi.spyOn(WeightedMean.prototype, 'mean').mockImplementationOnce(boom);
    const failed = nextEvent(c, 'roundFailed');
    expect(rejectReason(() => c.update(id(2), upd(1, 1, 1)))).toBe('internal_error'); // the last report closes
    expect((await failed).reason).toBe('internal_error');
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'message' })).toBe(1);
    expect(c.status().phase).toBe('waiting');
    clock.advance(0);
    expect(c.status()).toMatchObject({ phase: 'training', round: 1, attempt: 2 });
  });

  it("a stranger's message that throws before reaching the round is counted; the attempt goes on", async () => {
    // E.g. a crafted hello whose checks throw (a hostile review found a RangeError from a deep array).
    const { c, metrics } = await setup();
    join(c, 1);
    join(c, 2);
    expect(c.status()).toMatchObject({ phase: 'training', attempt: 1 });
    const registry = (c as unknown as { clients: { hello: (...a: unknown[]) => unknown } }).clients;
    vi.spyOn(registry, 'hello').mockImplementationOnce(boom);
    expect(rejectReason(() => c.hello(new MemLink(), HELLO))).toBe('internal_error');
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'message' })).toBe(1);
    expect(c.status()).toMatchObject({ phase: 'training', attempt: 1 }); // not aborted
    const end = nextEvent(c, 'roundEnd');
    for (const n of [1, 2]) expect(c.update(id(n), upd(1, 1, 1))).toEqual({ ok: true });
    expect(await end).toMatchObject({ round: 1, attempts: 1, clients: 2 });
  });

  it('a release that throws fails the attempt (finish) with the model unchanged', async () => {
    const { c, metrics, clock } = await setup();
    join(c, 1);
    join(c, 2);
    const w0 = c.globalWeights.slice();
    vi.spyOn(GlobalModel.prototype, 'release').mockRejectedValueOnce(new Error('injected failure'));
    const failed = nextEvent(c, 'roundFailed');
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 1));
    expect((await failed).reason).toBe('internal_error');
    expect(c.globalWeights).toEqual(w0);
    expect(c.status().history).toEqual([]);
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'finish' })).toBe(1);
    clock.advance(0);
    expect(c.status().attempt).toBe(2);
  });

  it('a listener that throws is counted and does not stop the round', async () => {
    const { c, metrics } = await setup();
    c.on('roundStart', boom);
    join(c, 1);
    join(c, 2);
    expect(c.status().phase).toBe('training');
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'listener' })).toBe(1);
    const end = nextEvent(c, 'roundEnd');
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 1));
    expect((await end).clients).toBe(2);
  });
});

/** DP settings for these tests; population 0 means q = 1. */
const dpWith = (population: number): ServerConfig['dp'] => ({
  noiseMultiplier: 1,
  clipNorm: 0.1,
  epsilonBudget: 100,
  delta: 1e-5,
  population,
  adaptive: null,
});
const seeded = (b: number): SecureRandom => createSecureRandom(new Uint8Array(32).fill(b));
/** Which of `n` clients a Poisson draw at q from a fresh `seeded(b)` takes (the coordinator's draw, replayed). */
const replayPoisson = (b: number, n: number, q: number): number[] => {
  const r = seeded(b);
  return Array.from({ length: n }, (_, i) => i).filter(() => r.float() < q);
};
const selected = (ls: MemLink[], round = 1, attempt = 1): number[] =>
  ls.flatMap((l, i) =>
    l.sent.some(
      (s) =>
        s.event === 'round:start' &&
        (s.args[0] as any).round === round &&
        (s.args[0] as any).attempt === attempt,
    )
      ? [i]
      : [],
  );

describe('Coordinator: who takes part matches what the ledger charges', () => {
  it('with --dp-population: Poisson sampling at q from every ready client, by the injected CSPRNG', async () => {
    // q = 5 / 20; the draw happens once, when the 20th client is ready.
    const { c } = await setup(
      { minClients: 20, clientsPerRound: 5, dp: dpWith(20) },
      { cohortRandom: seeded(3) },
    );
    const ls = Array.from({ length: 20 }, (_, n) => join(c, n));
    const expected = replayPoisson(3, 20, 0.25);
    expect(expected.length).toBeGreaterThanOrEqual(2); // the seed gives a usable draw (min = --min-updates)
    expect(expected.length).not.toBe(5); // and not the target size: nothing is trimmed or topped up
    expect(selected(ls)).toEqual(expected);
    expect(c.status()).toMatchObject({ phase: 'training', selected: expected.length });
    expect(c.status().privacy).toMatchObject({ enabled: true, q: 0.25 });
  });

  it('without a population (q = 1) the cohort is a fixed-size draw and the CSPRNG is never used', async () => {
    const never: SecureRandom = {
      float: () => {
        throw new Error('Poisson draw without --dp-population');
      },
    } as unknown as SecureRandom;
    const { c } = await setup({ minClients: 5, clientsPerRound: 3, dp: dpWith(0) }, { cohortRandom: never });
    const ls = Array.from({ length: 5 }, (_, n) => join(c, n));
    expect(selected(ls)).toHaveLength(3);
    expect(c.status().privacy).toMatchObject({ q: 1 });
  });

  it('a draw below the minimum starts no attempt: counted, logged, drawn again after a pause, never topped up', async () => {
    const log: string[] = [];
    // q = 3 / 300 = 0.01 over 3 ready clients: the seeded draws take fewer than --min-updates = 2.
    const { c, metrics, clock } = await setup(
      { minClients: 3, clientsPerRound: 3, dp: dpWith(300) },
      { cohortRandom: seeded(5), log: (m) => log.push(m) },
    );
    const r = seeded(5);
    const sizes = [0, 1].map(() => [0, 1, 2].filter(() => r.float() < 0.01).length);
    expect(Math.max(...sizes)).toBeLessThan(2);
    const skipped = nextEvent(c, 'cohortSkipped');
    const ls = [1, 2, 3].map((n) => join(c, n));
    expect(await skipped).toEqual({ round: 1, drawn: sizes[0], eligible: 3, reason: 'too_few' });
    expect(c.status()).toMatchObject({ phase: 'waiting', attempt: 0, selected: 0 });
    expect(selected(ls)).toEqual([]);
    expect(await metricValue(metrics, 'aegis_cohort_draws_skipped_total', { reason: 'too_few' })).toBe(1);
    expect(log.some((l) => /Poisson sampling \(q = 0\.01\) drew \d of 3 eligible clients/.test(l))).toBe(
      true,
    );
    clock.advance(SKIP_RETRY_MS - 1);
    expect(await metricValue(metrics, 'aegis_cohort_draws_skipped_total', { reason: 'too_few' })).toBe(1);
    clock.advance(1);
    expect(await metricValue(metrics, 'aegis_cohort_draws_skipped_total', { reason: 'too_few' })).toBe(2);
    expect(await metricValue(metrics, 'aegis_cohort_draws_skipped_total', { reason: 'too_many' })).toBe(0);
  });

  it('DP gauges exist only with DP: absent without it rather than 0', async () => {
    const plain = await setup();
    const text = await plain.metrics.registry.metrics();
    expect(text).not.toMatch(/aegis_dp_/);
    expect(text).toMatch(/aegis_rounds_completed_total/);
    const dp = await setup({ dp: dpWith(30), clientsPerRound: 3 });
    const dpText = await dp.metrics.registry.metrics();
    for (const name of ['aegis_dp_epsilon', 'aegis_dp_epsilon_against_server'])
      expect(dpText).toMatch(new RegExp(`^${name} 0$`, 'm'));
    expect(dpText).toMatch(/^aegis_dp_epsilon_budget 100$/m);
    expect(dpText).toMatch(/^aegis_dp_sampling_rate 0\.1$/m);
  });
});

describe('Coordinator with over-selection (plain rounds: the cohort is fixed at the update)', () => {
  it('invites 7 for a cohort of 5: the first 5 updates close the attempt, the 2 slow are released, not stragglers', async () => {
    const { c, metrics, clock } = await setup({ minClients: 7, clientsPerRound: 5, overSelect: 1.4 });
    const start = clock.now();
    const ls = [0, 1, 2, 3, 4, 5, 6].map((n) => join(c, n));
    expect(ls.every((l) => l.last('round:start')?.round === 1)).toBe(true);
    expect(c.status()).toMatchObject({ phase: 'training', selected: 7 });
    const done = nextEvent(c, 'roundEnd');
    // Clients 5 and 6 are slow: the five others report, and the attempt closes on the fifth.
    for (const n of [0, 1, 2, 3, 4]) expect(c.update(id(n), upd(1, 1, n + 1))).toEqual({ ok: true });
    const s = await done;
    expect(clock.now()).toBe(start); // no deadline was waited for
    expect(s).toMatchObject({ round: 1, clients: 5, stragglers: 0, examples: 40 });
    expect(c.globalWeights[0]).toBeCloseTo(0.01 + (1 + 2 + 3 + 4 + 5) / 5, 5);
    for (const n of [5, 6])
      expect(ls[n].last('round:release')).toEqual({ round: 1, attempt: 1, step: 'update' });
    for (const n of [0, 1, 2, 3, 4]) expect(ls[n].last('round:release')).toBeUndefined();
    // A slow client's update after the cohort closed counts for nothing.
    expect(rejectReason(() => c.update(id(5), upd(1, 1, 100)))).toBe('late');
    expect(await metricValue(metrics, 'aegis_clients_released_total', { step: 'update' })).toBe(2);
    expect(await metricValue(metrics, 'aegis_clients_released_total', { step: 'keys' })).toBe(0);
    expect(await metricValue(metrics, 'aegis_stragglers_dropped_total')).toBe(0);
  });

  it('at the deadline short of the target, the shortfall are stragglers and the rest are released', async () => {
    const { c, metrics, clock } = await setup({
      minClients: 7,
      clientsPerRound: 5,
      overSelect: 1.4,
      minUpdates: 2,
    });
    const ls = [0, 1, 2, 3, 4, 5, 6].map((n) => join(c, n));
    const done = nextEvent(c, 'roundEnd');
    for (const n of [0, 1, 2]) c.update(id(n), upd(1, 1, 1));
    clock.advance(400);
    expect(await done).toMatchObject({ clients: 3, stragglers: 2 });
    expect([3, 4, 5, 6].map((n) => ls[n].last('round:release')?.step)).toEqual([
      'update',
      'update',
      'update',
      'update',
    ]);
    expect(await metricValue(metrics, 'aegis_stragglers_dropped_total')).toBe(2);
    expect(await metricValue(metrics, 'aegis_clients_released_total', { step: 'update' })).toBe(2);
  });

  it('without --over-select nothing is released and round:start is unchanged', async () => {
    const { c, metrics } = await setup({ minClients: 3, clientsPerRound: 3 });
    const ls = [0, 1, 2].map((n) => join(c, n));
    const done = nextEvent(c, 'roundEnd');
    for (const n of [0, 1, 2]) c.update(id(n), upd(1, 1, 1));
    await done;
    expect(ls.some((l) => l.last('round:release'))).toBe(false);
    expect(await metricValue(metrics, 'aegis_clients_released_total', { step: 'update' })).toBe(0);
  });
});
