import { Hono, type Context } from 'hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Coordinator } from './coordinator.ts';
import type { CheckedTask } from '../shared/model/task.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import type { DataSource } from './datasets.ts';
import { testSamples } from './evaluator.ts';
import type { Metrics } from './metrics.ts';
import { layersModelJson, MODEL_JSON, WEIGHTS_BIN } from './model-files.ts';
import { addTokenRoute, securityHeaders, type TokenRouteOptions } from './http-security.ts';

/**
 * What the HTTP routes read: the coordinator in this process, or (on a gateway of the cluster) the
 * status and model the coordinator publishes to Redis; null while there is none yet.
 */
export interface AppView {
  status(): ServerStatus | null | Promise<ServerStatus | null>;
  /** The global model: the task, its weights and the round they come from (0 = the initial model). */
  model(): ModelView | null | Promise<ModelView | null>;
}

export interface ModelView {
  task: CheckedTask;
  weights: Float32Array;
  round: number;
}

/** The view of a coordinator in this process. */
export function coordinatorView(coordinator: Coordinator): AppView {
  return {
    status: () => coordinator.status(),
    model: () => ({
      task: coordinator.task,
      weights: coordinator.globalWeights,
      round: coordinator.roundsCompleted,
    }),
  };
}

export interface AppDeps {
  /** The coordinator in this process; or give `view` (a gateway). */
  coordinator?: Coordinator;
  view?: AppView;
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
  const { metrics, data, distDir, startedAt } = deps;
  const view = deps.view ?? coordinatorView(deps.coordinator!);
  const unavailable = (c: Context): Response =>
    c.json({ error: 'no coordinator yet: the round state is not available' }, 503);
  const allowedOrigins = deps.allowedOrigins ?? null;
  const app = new Hono();

  // Security headers everywhere; CORS only on what the embed loads from participating sites.
  app.use('*', securityHeaders(allowedOrigins));
  if (deps.tokenRoute) addTokenRoute(app, { ...deps.tokenRoute, allowedOrigins });

  app.get('/health', async (c) => {
    const s = await view.status();
    // A gateway is healthy without a coordinator (its sockets and pages work); it says what it knows.
    if (!s)
      return c.json({ ok: true, phase: null, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000) });
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

  app.get('/api/status', async (c) => {
    const s = await view.status();
    return s ? c.json(s) : unavailable(c);
  });

  // The current global model (the aggregate is public by design): little-endian float32, in layer order.
  app.get('/api/model/weights', async (c) => {
    const m = await view.model();
    if (!m) return unavailable(c);
    const w = m.weights;
    const bytes = new Uint8Array(w.buffer, w.byteOffset, w.byteLength).slice();
    return c.body(bytes, 200, {
      'Content-Type': 'application/octet-stream',
      'X-Aegis-Round': String(m.round),
      'Cache-Control': 'no-store',
    });
  });

  // The same model as TensorFlow.js Layers files: tf.loadLayersModel(origin + '/api/model/model.json').
  // Both files change only when a round completes, so their ETag is the round: revalidation is a 304.
  const modelFile = async (
    c: Context,
    body: (m: ModelView) => { bytes: Uint8Array | string; type: string },
  ): Promise<Response> => {
    const m = await view.model();
    if (!m) return unavailable(c);
    const round = m.round;
    const etag = `"${m.task.hash.slice(0, 16)}-r${round}"`;
    const headers = { ETag: etag, 'Cache-Control': 'no-cache', 'X-Aegis-Round': String(round) };
    if (c.req.header('If-None-Match') === etag) return c.body(null, 304, headers);
    const { bytes, type } = body(m);
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { ...headers, 'Content-Type': type });
  };
  app.get(`/api/model/${MODEL_JSON}`, (c) =>
    modelFile(c, (m) => ({
      bytes: JSON.stringify(layersModelJson(m.task, m.round)),
      type: 'application/json',
    })),
  );
  app.get(`/api/model/${WEIGHTS_BIN}`, (c) =>
    modelFile(c, (m) => {
      const w = m.weights;
      return {
        bytes: new Uint8Array(w.buffer, w.byteOffset, w.byteLength).slice(),
        type: 'application/octet-stream',
      };
    }),
  );

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
