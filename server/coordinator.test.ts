import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type ServerToClientEvents } from '../shared/protocol/messages.ts';
import { DEFAULTS, type ServerConfig } from './config.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { Coordinator, type ClientLink } from './coordinator.ts';
import type { Evaluator } from './evaluator.ts';
import { clientId, metricValue, nextEvent, testEvaluator } from './test-fixtures.ts';
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
afterEach(() => coord?.stop());

async function setup(over: Partial<ServerConfig> = {}) {
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
  const c = new Coordinator({
    config,
    metrics,
    evaluate: (w) => evaluator.evaluate(w),
    evalBackend: 'cpu',
    initialWeights: new Float32Array(P).fill(0.01),
    dataFor: (i) => ({ kind: 'synthetic', seed: i, count: 8 }),
  });
  coord = c;
  await c.init();
  return { c, metrics };
}

const id = clientId;
function join(c: Coordinator, n: number, examples = 8): MemLink {
  const l = new MemLink();
  c.hello(l, { protocolVersion: PROTOCOL_VERSION, clientId: id(n), source: 'node' });
  c.ready(id(n), { backend: 'cpu', numExamples: examples });
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
      clientId: id(1),
      model: spec,
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
    expect(summary).toMatchObject({ round: 1, clients: 2, examples: 32, stragglers: 0 });
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
    const { c, metrics } = await setup({ minClients: 3 });
    join(c, 1);
    join(c, 2);
    join(c, 3);
    c.update(id(1), upd(1, 1, 1));
    c.update(id(2), upd(1, 1, 1));
    const s = await nextEvent(c, 'roundEnd');
    expect(s).toMatchObject({ clients: 2, stragglers: 1 });
    expect(await metricValue(metrics, 'aegis_stragglers_dropped_total')).toBe(1);
    // The straggler's late update is rejected and changes nothing.
    const w = c.globalWeights.slice();
    expect(rejectReason(() => c.update(id(3), upd(1, 1, 100)))).toBe('late');
    expect(c.globalWeights).toEqual(w);
  });

  it('retries a round that misses minUpdates, leaving the model unchanged', async () => {
    const { c, metrics } = await setup();
    const a = join(c, 1);
    join(c, 2);
    const w0 = c.globalWeights.slice();
    c.update(id(1), upd(1, 1, 5));
    const failed = await nextEvent(c, 'roundFailed');
    expect(failed).toMatchObject({ round: 1, attempt: 1, updates: 1 });
    expect(c.globalWeights).toEqual(w0);
    expect(
      await metricValue(metrics, 'aegis_round_attempts_failed_total', { reason: 'too_few_updates' }),
    ).toBe(1);
    await nextEvent(c, 'roundStart');
    expect(a.last('round:start')).toMatchObject({ round: 1, attempt: 2 });
    // An update for the failed attempt is late; the new attempt accepts.
    expect(rejectReason(() => c.update(id(1), upd(1, 1, 5)))).toBe('late');
    expect(c.update(id(1), upd(1, 2, 1))).toEqual({ ok: true });
  });

  it('rejects every kind of bad update with its reason and keeps the round going', async () => {
    const { c } = await setup({ clientsPerRound: 2, minClients: 2, roundDeadlineMs: 5000 });
    join(c, 1);
    join(c, 2);
    const outsider = new MemLink();
    c.hello(outsider, { protocolVersion: PROTOCOL_VERSION, clientId: id(9), source: 'node' }); // connected, not ready
    expect(rejectReason(() => c.update(null, upd(1, 1, 1)))).toBe('unknown_client');
    expect(rejectReason(() => c.update('never-said-hello-123', upd(1, 1, 1)))).toBe('unknown_client');
    expect(rejectReason(() => c.update(id(9), upd(1, 1, 1)))).toBe('not_selected');
    expect(
      rejectReason(() => c.update(id(1), { ...upd(1, 1, 1), delta: new Float32Array(P - 1).buffer })),
    ).toBe('wrong_length');
    expect(
      rejectReason(() => c.update(id(1), { ...upd(1, 1, 1), delta: new Float32Array(P).fill(NaN).buffer })),
    ).toBe('not_finite');
    expect(
      rejectReason(() => c.update(id(1), { ...upd(1, 1, 1), delta: Array.from({ length: P }, () => 0) })),
    ).toBe('malformed');
    expect(rejectReason(() => c.update(id(1), upd(2, 1, 1)))).toBe('wrong_round');
    expect(rejectReason(() => c.update(id(1), upd(1, 7, 1)))).toBe('wrong_round');
    expect(rejectReason(() => c.update(id(1), { ...upd(1, 1, 1), numExamples: 1e9 }))).toBe('malformed');
    expect(c.update(id(1), upd(1, 1, 1))).toEqual({ ok: true });
    expect(rejectReason(() => c.update(id(1), upd(1, 1, 1)))).toBe('duplicate');
    expect(
      rejectReason(() => c.hello(new MemLink(), { protocolVersion: 0, clientId: id(5), source: 'node' })),
    ).toBe('protocol_version');
    // None of that disturbed the honest client.
    const done = nextEvent(c, 'roundEnd');
    expect(c.update(id(2), upd(1, 1, 3))).toEqual({ ok: true });
    expect((await done).clients).toBe(2);
    expect(c.globalWeights[0]).toBeCloseTo(2.01, 5);
  });

  it('closes early when the only clients left to report are offline, and accepts a reconnect', async () => {
    const { c } = await setup({ minClients: 3, minUpdates: 2, roundDeadlineMs: 10_000 });
    join(c, 1);
    join(c, 2);
    const l3 = join(c, 3);
    c.update(id(1), upd(1, 1, 1));
    // Client 2 reconnects on a new socket: the old socket's disconnect must not count.
    const l2b = new MemLink();
    c.hello(l2b, { protocolVersion: PROTOCOL_VERSION, clientId: id(2), source: 'node' });
    expect(l2b.last('welcome').clientId).toBe(id(2));
    expect(c.update(id(2), upd(1, 1, 1))).toEqual({ ok: true });
    const t0 = Date.now();
    const done = nextEvent(c, 'roundEnd');
    c.disconnect(id(3), l3);
    expect((await done).stragglers).toBe(1);
    expect(Date.now() - t0).toBeLessThan(5000);
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
