import { getPriority } from 'node:os';
import { describe, expect, it } from 'vitest';
import { MODELS } from '../shared/model/spec.ts';
import { benchDelta, dropPlan, gcSoFar, runSwarmBench, type SwarmBenchOptions } from './bench-swarm-lib.ts';

/** One secure round of 12 protocol clients, 10% dropping after keys and 10% after shares. */
const SMALL_RUN: SwarmBenchOptions = {
  clients: 12,
  dropAfterKeys: 0.1,
  dropAfterShares: 0.1,
  processes: 2,
  model: MODELS.tiny,
  phaseDeadlineMs: 20_000,
  connectPerSecond: 200,
  secaggDropout: 0.1,
};

describe('gcSoFar', () => {
  it("reads prom-client's GC histogram: seconds over every kind, collections above the 0.1 s bucket", () => {
    const text = [
      '# TYPE aegis_nodejs_gc_duration_seconds histogram',
      'aegis_nodejs_gc_duration_seconds_bucket{le="0.01",kind="minor"} 40',
      'aegis_nodejs_gc_duration_seconds_bucket{le="0.1",kind="minor"} 42',
      'aegis_nodejs_gc_duration_seconds_sum{kind="minor"} 0.25',
      'aegis_nodejs_gc_duration_seconds_count{kind="minor"} 42',
      'aegis_nodejs_gc_duration_seconds_bucket{le="0.1",kind="major"} 3',
      'aegis_nodejs_gc_duration_seconds_bucket{le="1",kind="major"} 4',
      'aegis_nodejs_gc_duration_seconds_bucket{le="+Inf",kind="major"} 5',
      'aegis_nodejs_gc_duration_seconds_sum{kind="major"} 1.5',
      'aegis_nodejs_gc_duration_seconds_count{kind="major"} 5',
    ].join('\n');
    expect(gcSoFar(text)).toEqual({ seconds: 1.75, over100ms: 2 });
    expect(gcSoFar('')).toEqual({ seconds: 0, over100ms: 0 });
  });
});

describe('bench:swarm machinery', () => {
  it('drops the fractions asked for, disjointly, the same way every run; updates are deterministic', () => {
    const plan = dropPlan(1000, 0.1, 0.1);
    const where = [...plan.values()];
    expect(where.filter((w) => w === 'shares')).toHaveLength(100);
    expect(where.filter((w) => w === 'masked')).toHaveLength(100);
    expect([...dropPlan(1000, 0.1, 0.1)]).toEqual([...plan]);
    expect(benchDelta(7, 100)).toEqual(benchDelta(7, 100));
    expect(benchDelta(7, 100)).not.toEqual(benchDelta(8, 100));
  });

  it('runs one secure round of 12 protocol clients against the server process, 10% + 10% dropping, with the exact sum', async () => {
    const r = await runSwarmBench({ ...SMALL_RUN, clientNice: 7 });
    expect(r.why).toBe('one secure round, exact sum of the survivors');
    expect(r).toMatchObject({ ok: true, clients: 12, survivors: 10, expectedSurvivors: 10 });
    expect(r.examples).toBe(r.expectedExamples);
    // The figures the bench prints are all there.
    for (const p of ['keys', 'shares', 'masked', 'unmask'])
      expect(r.phaseSeconds[p]).toBeGreaterThanOrEqual(0);
    expect(r.unmaskSeconds).toBeGreaterThan(0);
    expect(r.serverCpuSeconds).toBeGreaterThan(0);
    expect(r.serverPeakRssMB).toBeGreaterThan(0);
    expect(r.loopDelay.p99).not.toBeNull();
    // Every window is kept with its phase, the last one at the round's end; the worst p99 is one of them.
    expect(r.loopWindows.at(-1)?.phase).toBe('round end');
    expect(Math.max(...r.loopWindows.map((w) => w.p99Ms))).toBe(Math.round(r.loopDelay.p99! * 1000));
    // Each window says how long the server's main thread spent collecting garbage in it (a round this
    // small may collect nothing: the figures' parsing is tested on its own above).
    for (const w of r.loopWindows) {
      expect(Number.isInteger(w.gcMs) && w.gcMs >= 0).toBe(true);
      expect(Number.isInteger(w.gcOver100ms) && w.gcOver100ms >= 0).toBe(true);
    }
    // The client processes ran below the server, as asked (or at this runner's own niceness, if higher).
    const expected = Math.max(7, getPriority());
    expect(r.clientNiceReported).toEqual([expected, expected]);
    expect(r.serverRunQueueSeconds).toBeGreaterThanOrEqual(0);
    // Memory by phase: sampled at least once, the server's own figures.
    const samples = Object.values(r.serverMemoryByPhase);
    expect(samples.length).toBeGreaterThan(0);
    for (const m of samples) expect(m.rssMB).toBeGreaterThan(0);
    // hello, ready, keys, shares, update, reveal for survivors; fewer for those that dropped.
    expect(r.perClient.messagesSent).toBeGreaterThan(4);
    expect(r.perClient.bytesSent).toBeGreaterThan(r.numParams * 4 * 0.8);
  }, 120_000);

  it('a client process that cannot start (no nice(1) on the PATH) fails the run with the reason, at once', async () => {
    const path = process.env.PATH;
    let r: Awaited<ReturnType<typeof runSwarmBench>>;
    try {
      process.env.PATH = '/nonexistent';
      r = await runSwarmBench({ ...SMALL_RUN, clientNice: getPriority() + 1 });
    } finally {
      process.env.PATH = path;
    }
    expect(r.ok).toBe(false);
    expect(r.why).toMatch(/client process \d did not start: .*ENOENT/);
  }, 60_000);

  it.each([true, false])(
    'runs the same round over two gateways and Redis (the scale-out mode; gateways summing: %s), exact, with their figures',
    async (gatewaySum) => {
      const r = await runSwarmBench({ ...SMALL_RUN, gateways: 2, gatewaySum });
      expect(r.why).toBe('one secure round, exact sum of the survivors');
      expect(r).toMatchObject({ ok: true, clients: 12, survivors: 10, expectedSurvivors: 10 });
      const c = r.cluster!;
      expect(c).toMatchObject({ gateways: 2, gatewaySum });
      // Each client process used its own gateway: both did socket work.
      for (const cpu of c.gatewayCpuSeconds) expect(cpu).toBeGreaterThan(0);
      for (const rss of c.gatewayPeakRssMB) expect(rss).toBeGreaterThan(0);
      const vector = r.numParams * 4;
      if (gatewaySum) {
        // Updates stay on the gateways (a partial sum per flush) and the model goes once (a blob): per
        // client, less than one vector crosses Redis even at 12 clients.
        expect(c.redisBytesInPerClient).toBeLessThan(vector * 0.8);
      } else {
        // Every update crosses Redis (gateway -> coordinator) besides the model's blob.
        expect(c.redisBytesInPerClient).toBeGreaterThan(vector);
        expect(c.redisBytesOutPerClient).toBeGreaterThan(vector);
      }
      expect(r.serverCpuSeconds).toBeGreaterThan(0);
      expect(r.perClient.bytesSent).toBeGreaterThan(vector * 0.8);
    },
    120_000,
  );
});
