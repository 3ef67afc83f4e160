import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { buildModel } from '../shared/model/build.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import { createApp } from './app.ts';
import type { ServerConfig } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { cifarSource, syntheticSource, type DataSource } from './datasets.ts';
import { Evaluator, initEvalBackend } from './evaluator.ts';
import { createMetrics } from './metrics.ts';
import { attachSocketIo } from './socket.ts';

export interface RunningServer {
  url: string;
  port: number;
  coordinator: Coordinator;
  evalBackend: string;
  close(): Promise<void>;
}

/** Builds everything from a validated config and starts listening. */
export async function startServer(
  cfg: ServerConfig,
  log: (m: string) => void = console.log,
): Promise<RunningServer> {
  const startedAt = Date.now();
  const { backend: evalBackend, tried } = await initEvalBackend();
  log(`evaluation backend: ${evalBackend}${tried.length ? ` (unavailable: ${tried.join('; ')})` : ''}`);

  const data: DataSource = cfg.cifarDir
    ? await cifarSource(cfg.cifarDir, cfg.seed, cfg.examplesPerClient, cfg.testExamples, cfg.partition)
    : syntheticSource(cfg.seed, cfg.examplesPerClient, cfg.testExamples, cfg.partition);
  log(`data: ${data.description}`);

  const metrics = createMetrics();
  metrics.evalBackend.set({ backend: evalBackend }, 1);
  const evaluator = new Evaluator(cfg.model, data.test);
  const init = buildModel(cfg.model, cfg.seed);
  const initialWeights = await getFlatWeights(init);
  init.dispose();
  const coordinator = new Coordinator({
    config: cfg,
    metrics,
    evaluate: (w) => evaluator.evaluate(w),
    evalBackend,
    initialWeights,
    dataFor: (i) => data.specFor(i),
    log: cfg.logLevel === 'info' ? log : undefined,
    logError: log, // internal errors are logged even with --quiet
  });
  await coordinator.init();

  if (!existsSync(cfg.distDir))
    log(`warning: ${cfg.distDir}/ not found; run "npm run build" to serve the demo page and client bundle`);
  const app = createApp({ coordinator, metrics, data, distDir: cfg.distDir, startedAt });
  const tls =
    cfg.tlsCert && cfg.tlsKey ? { cert: await readFile(cfg.tlsCert), key: await readFile(cfg.tlsKey) } : null;
  const http = createAdaptorServer(
    tls ? { fetch: app.fetch, createServer: createHttpsServer, serverOptions: tls } : { fetch: app.fetch },
  ) as HttpServer;
  const io = attachSocketIo(http, coordinator, metrics, cfg.maxMessageBytes, {
    socket: { perSecond: cfg.socketRate, burst: cfg.socketBurst },
    address: { perSecond: cfg.addressRate, burst: cfg.addressBurst },
    trustedProxy: cfg.trustedProxy,
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(cfg.port, cfg.host, () => resolve());
  });
  const port = (http.address() as AddressInfo).port;
  const url = `${tls ? 'https' : 'http'}://${cfg.host === '0.0.0.0' ? 'localhost' : cfg.host}:${port}`;
  log(`AegisFL server on ${url} (model ${cfg.model.name}, demo at ${url}/demo/)`);
  return {
    url,
    port,
    coordinator,
    evalBackend,
    close: async () => {
      coordinator.stop();
      await new Promise<void>((r) => io.close(() => r()));
      evaluator.dispose();
    },
  };
}
