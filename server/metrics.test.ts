import { describe, expect, it } from 'vitest';
import { REJECT_REASONS } from '../shared/base/errors.ts';
import { createMetrics, EXPENSIVE_DEFAULT_METRICS } from './metrics.ts';
import { REJECT_EVENTS } from './reject-events.ts';
import { EVENT_LABELS } from './socket.ts';

describe('metrics', () => {
  it('names process metrics aegis_process_* and aegis_nodejs_*, without a doubled prefix', async () => {
    const text = await createMetrics().registry.metrics();
    expect(text).toMatch(/^aegis_process_cpu_seconds_total /m);
    expect(text).toMatch(/^aegis_nodejs_heap_size_used_bytes /m);
    expect(text).not.toContain('aegis_process_process_');
    expect(text).not.toContain('aegis_process_nodejs_');
  });

  it('leaves out the defaults that walk every open handle per scrape (O(connections)); keeps the cheap ones', async () => {
    const names = createMetrics()
      .registry.getMetricsAsArray()
      .map((m) => m.name);
    for (const name of EXPENSIVE_DEFAULT_METRICS) expect(names).not.toContain(`aegis_${name}`);
    expect(names).toContain('aegis_nodejs_heap_size_used_bytes');
  });

  it('zero-initialises rejections on the events each reason can come on', async () => {
    const m = createMetrics();
    const series = (await m.registry.getSingleMetric('aegis_messages_rejected_total')!.get()).values;
    const pairs = new Set(series.map((v) => `${v.labels.reason} ${v.labels.event}`));
    expect(pairs).toContain('both_shares secagg:reveal');
    expect(pairs).toContain('bad_key secagg:keys');
    expect(pairs).toContain('wrong_length update');
    expect(pairs).toContain('rate_limited connect');
    expect(pairs).toContain('too_large transport');
    expect(pairs).not.toContain('both_shares update');
    expect(pairs).not.toContain('bad_key update');
    expect(pairs).not.toContain('protocol_version update');
    expect(series.every((v) => v.value === 0)).toBe(true);
    const expected = REJECT_REASONS.flatMap((r) => REJECT_EVENTS[r].map((e) => `${r} ${e}`));
    expect(pairs).toEqual(new Set(expected));
    for (const v of series) expect(EVENT_LABELS).toContain(v.labels.event);
  });

  it('exports no DP gauges until privacy is enabled', async () => {
    const m = createMetrics();
    expect(await m.registry.metrics()).not.toContain('aegis_dp_');
    m.enablePrivacy();
    expect(await m.registry.metrics()).toContain('aegis_dp_epsilon_budget');
  });

  it('exports the event-loop delay since the previous scrape (p50, p99, max): a stall shows in max', async () => {
    const m = createMetrics();
    const delay = async (): Promise<Record<string, number>> => {
      const values = (await m.registry.getSingleMetric('aegis_event_loop_delay_seconds')!.get()).values;
      return Object.fromEntries(values.map((v) => [v.labels.stat, v.value]));
    };
    await new Promise((r) => setTimeout(r, 50)); // let the sampler tick
    const busyUntil = performance.now() + 300;
    while (performance.now() < busyUntil); // the main thread blocked for 300 ms
    await new Promise((r) => setTimeout(r, 30)); // the late tick is recorded
    const stalled = await delay();
    expect(Object.keys(stalled).sort()).toEqual(['max', 'p50', 'p99']);
    expect(stalled.max).toBeGreaterThanOrEqual(0.25);
    expect(stalled.p50).toBeLessThanOrEqual(stalled.p99);
    expect(stalled.p99).toBeLessThanOrEqual(stalled.max);
    // Each scrape starts a new window: the stall is not reported twice.
    expect((await delay()).max).toBeLessThan(stalled.max);
    expect(await m.registry.metrics()).toMatch(/^aegis_event_loop_delay_seconds\{stat="p99"\} /m);
  });
});
