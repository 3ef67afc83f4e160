import { Hono, type Context } from 'hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Coordinator } from './coordinator.ts';
import type { DataSource } from './datasets.ts';
import type { Metrics } from './metrics.ts';
import { layersModelJson, MODEL_JSON, WEIGHTS_BIN } from './model-files.ts';

export interface AppDeps {
  coordinator: Coordinator;
  metrics: Metrics;
  data: DataSource;
  distDir: string;
  startedAt: number;
}

/** HTTP routes. socket.io shares the port but is attached to the Node server, not routed here. */
export function createApp({ coordinator, metrics, data, distDir, startedAt }: AppDeps): Hono {
  const app = new Hono();

  // The embed script runs on participating sites, so our bundle, its assets and the public status are CORS-readable.
  app.use('*', async (c, next) => {
    await next();
    const p = c.req.path;
    if (p.startsWith('/assets/') || p === '/aegis-embed.js' || p.startsWith('/api/'))
      c.header('Access-Control-Allow-Origin', '*');
  });

  app.get('/health', (c) => {
    const s = coordinator.status();
    return c.json({
      ok: true,
      phase: s.phase,
      round: s.round,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
    });
  });

  app.get('/metrics', async (c) => {
    const body = await metrics.registry.metrics();
    return c.body(body, 200, { 'Content-Type': metrics.registry.contentType });
  });

  app.get('/api/status', (c) => c.json({ ...coordinator.status(), data: data.description }));

  // The current global model (the aggregate is public by design): little-endian float32, in layer order.
  app.get('/api/model/weights', (c) => {
    const w = coordinator.globalWeights;
    const bytes = new Uint8Array(w.buffer, w.byteOffset, w.byteLength).slice();
    return c.body(bytes, 200, {
      'Content-Type': 'application/octet-stream',
      'X-Aegis-Round': String(coordinator.status().history.length),
      'Cache-Control': 'no-store',
    });
  });

  // The same model as TensorFlow.js Layers files: tf.loadLayersModel(origin + '/api/model/model.json').
  // Both files change only when a round completes, so their ETag is the round: revalidation is a 304.
  const modelFile = (c: Context, body: () => { bytes: Uint8Array | string; type: string }): Response => {
    const round = coordinator.roundsCompleted;
    const etag = `"${coordinator.modelSpec.name}-r${round}"`;
    const headers = { ETag: etag, 'Cache-Control': 'no-cache', 'X-Aegis-Round': String(round) };
    if (c.req.header('If-None-Match') === etag) return c.body(null, 304, headers);
    const { bytes, type } = body();
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { ...headers, 'Content-Type': type });
  };
  app.get(`/api/model/${MODEL_JSON}`, (c) =>
    modelFile(c, () => ({
      bytes: JSON.stringify(layersModelJson(coordinator.modelSpec, coordinator.roundsCompleted)),
      type: 'application/json',
    })),
  );
  app.get(`/api/model/${WEIGHTS_BIN}`, (c) =>
    modelFile(c, () => {
      const w = coordinator.globalWeights;
      return {
        bytes: new Uint8Array(w.buffer, w.byteOffset, w.byteLength).slice(),
        type: 'application/octet-stream',
      };
    }),
  );

  app.get('/api/data/shard/:n', (c) => {
    const bytes = data.shard(Number(c.req.param('n')));
    if (!bytes) return c.json({ error: 'no such shard' }, 404);
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
      'Content-Type': 'application/octet-stream',
      'Cache-Control': 'public, max-age=3600',
    });
  });

  app.get('/', (c) => c.redirect('/demo/'));
  app.use('/*', serveStatic({ root: distDir }));
  app.notFound((c) => c.json({ error: `not found: ${c.req.path}` }, 404));
  return app;
}
