import { describe, expect, it } from 'vitest';
import { REJECT_REASONS } from '../shared/base/errors.ts';
import { createMetrics } from './metrics.ts';
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
});
