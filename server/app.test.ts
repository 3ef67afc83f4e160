import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { createApp } from './app.ts';
import { DEFAULTS } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { syntheticSource, type DataSource } from './datasets.ts';
import { Evaluator } from './evaluator.ts';
import { createMetrics } from './metrics.ts';

describe('HTTP routes', () => {
  let app: ReturnType<typeof createApp>;
  let data: DataSource;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    data = syntheticSource(1, 8, 10);
    const metrics = createMetrics();
    const ev = new Evaluator(MODELS.tiny, data.test);
    const coordinator = new Coordinator({
      config: { ...DEFAULTS, model: MODELS.tiny },
      metrics,
      evaluate: (w) => ev.evaluate(w),
      evalBackend: 'cpu',
      initialWeights: new Float32Array(numParams(MODELS.tiny)),
      dataFor: (i) => data.specFor(i),
      data: { kind: data.kind, description: data.description },
    });
    await coordinator.init();
    app = createApp({ coordinator, metrics, data, distDir: 'does-not-exist', startedAt: Date.now() });
  });

  it('GET /health', async () => {
    const r = await app.request('/health');
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ ok: true, phase: 'waiting', round: 1, roundsCompleted: 0 });
  });

  it('GET /api/samples: the first test images, as status.evaluation.samples lists them', async () => {
    const r = await app.request('/api/samples');
    expect(r.status).toBe(200);
    expect(r.headers.get('x-aegis-samples')).toBe('8');
    const bytes = new Uint8Array(await r.arrayBuffer());
    expect(bytes).toEqual(data.test.x.slice(0, 8 * 3072));
    const s = await (await app.request('/api/status')).json();
    expect(s.evaluation.samples.map((x: { label: number }) => x.label)).toEqual(
      Array.from(data.test.y.slice(0, 8)),
    );
  });

  it('GET /metrics exposes the Prometheus series', async () => {
    const r = await app.request('/metrics');
    expect(r.headers.get('content-type')).toMatch(/text\/plain/);
    const t = await r.text();
    for (const m of [
      'aegis_rounds_completed_total 0',
      'aegis_clients_connected 0',
      'aegis_messages_rejected_total{reason="wrong_length",event="update"} 0',
      'aegis_round_duration_seconds_bucket',
      'aegis_bytes_received_total',
      'aegis_test_accuracy',
      'aegis_stragglers_dropped_total',
    ])
      expect(t).toContain(m);
  });

  it('GET /api/status is CORS-readable JSON with the initial evaluation', async () => {
    const r = await app.request('/api/status');
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    const s = await r.json();
    expect(s).toMatchObject({ phase: 'waiting', model: { name: 'tiny' }, history: [], evalBackend: 'cpu' });
    expect(s.initial.accuracy).toBeGreaterThanOrEqual(0);
    expect(s).toMatchObject({ data: 'synthetic', roundsCompleted: 0 });
    expect(s.clients.needed).toBeGreaterThanOrEqual(DEFAULTS.minClients);
    expect(s.dataDescription).toBe(data.description);
    // Per-class results of the initial model: a 10 x 10 matrix over the 10 test examples.
    expect(s.evaluation).toMatchObject({ round: 0, numClasses: 10 });
    expect(s.evaluation.confusion.flat().reduce((a: number, b: number) => a + b, 0)).toBe(10);
  });

  it('unknown shards and paths are 404 with a reason', async () => {
    expect((await app.request('/api/data/shard/0')).status).toBe(404);
    const r = await app.request('/nope');
    expect(r.status).toBe(404);
    expect(await r.json()).toEqual({ error: 'not found: /nope' });
  });

  it('/ redirects to the demo', async () => {
    const r = await app.request('/');
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toBe('/demo/');
  });
});
