import { Hono } from 'hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Coordinator } from './coordinator.ts';
import type { DataSource } from './datasets.ts';
import { testSamples } from './evaluator.ts';
import type { Metrics } from './metrics.ts';
import { addTokenRoute, securityHeaders, type TokenRouteOptions } from './http-security.ts';

export interface AppDeps {
  coordinator: Coordinator;
  metrics: Metrics;
  data: DataSource;
  distDir: string;
  startedAt: number;
  /** Origins whose pages may read the embed bundle (CORS); null: any. */
  allowedOrigins?: ReadonlySet<string> | null;
  /** POST /api/join-token; absent: no such route. */
  tokenRoute?: Omit<TokenRouteOptions, 'allowedOrigins'> | null;
}

/** HTTP routes. socket.io shares the port but is attached to the Node server, not routed here. */
export function createApp(deps: AppDeps): Hono {
  const { coordinator, metrics, data, distDir, startedAt } = deps;
  const allowedOrigins = deps.allowedOrigins ?? null;
  const app = new Hono();

  // Security headers everywhere; CORS only on what the embed loads from participating sites.
  app.use('*', securityHeaders(allowedOrigins));
  if (deps.tokenRoute) addTokenRoute(app, { ...deps.tokenRoute, allowedOrigins });

  app.get('/health', (c) => {
    const s = coordinator.status();
    return c.json({
      ok: true,
      phase: s.phase,
      // The round as the page counts it: the one in progress (or next), never past the target; once done,
      // the last one completed (status.round is then one past it).
      round:
        s.phase === 'done'
          ? s.roundsCompleted
          : s.targetRounds > 0
            ? Math.min(s.round, s.targetRounds)
            : s.round,
      roundsCompleted: s.roundsCompleted,
      targetRounds: s.targetRounds,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
    });
  });

  app.get('/metrics', async (c) => {
    const body = await metrics.registry.metrics();
    return c.body(body, 200, { 'Content-Type': metrics.registry.contentType });
  });

  app.get('/api/status', (c) => c.json(coordinator.status()));

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

  // The test images of the page's prediction strip (status.evaluation.samples gives their labels and the
  // current model's predictions): SAMPLE_COUNT x 32 x 32 x 3 bytes, HWC, fixed for the run.
  const samples = testSamples(data.test);
  app.get('/api/samples', (c) =>
    c.body(samples.images as Uint8Array<ArrayBuffer>, 200, {
      'Content-Type': 'application/octet-stream',
      'X-Aegis-Samples': String(samples.labels.length),
      'Cache-Control': 'public, max-age=3600',
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
