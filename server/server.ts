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
import { cifarDirOrDefault, cifarSource, syntheticSource, type DataSource } from './datasets.ts';
import { Evaluator, evalBackendNote, initEvalBackend } from './evaluator.ts';
import { createMetrics } from './metrics.ts';
import { attachSocketIo } from './socket.ts';
import { saveModelEachRound } from './model-files.ts';

export interface RunningServer {
  url: string;
  port: number;
  coordinator: Coordinator;
  evalBackend: string;
  close(): Promise<void>;
}

/** A start-up failure the operator can fix (a port in use, an unreadable certificate): one line, no stack. */
export class StartupError extends Error {}

/** The PEM files, read before anything is built so a wrong path fails at once. */
async function readTls(cfg: ServerConfig): Promise<{ cert: Buffer; key: Buffer } | null> {
  if (!cfg.tlsCert || !cfg.tlsKey) return null;
  const read = (flag: string, path: string): Promise<Buffer> =>
    readFile(path).catch((e: NodeJS.ErrnoException) => {
      throw new StartupError(`${flag} ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
  return { cert: await read('--tls-cert', cfg.tlsCert), key: await read('--tls-key', cfg.tlsKey) };
}

/** Why listening failed, in the operator's terms. */
function listenError(e: NodeJS.ErrnoException, cfg: ServerConfig): Error {
  const where = `${cfg.host}:${cfg.port}`;
  if (e.code === 'EADDRINUSE') return new StartupError(`port ${cfg.port} is in use (--port)`);
  if (e.code === 'EACCES') return new StartupError(`no permission to listen on ${where} (--port, --host)`);
  if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND')
    return new StartupError(`cannot listen on ${where}: no such local address (--host)`);
  return e;
}

/** Builds everything from a validated config and starts listening. */
export async function startServer(
  cfg: ServerConfig,
  log: (m: string) => void = console.log,
): Promise<RunningServer> {
  const startedAt = Date.now();
  const tls = await readTls(cfg);
  const { backend: evalBackend, tried } = await initEvalBackend();
  log(`evaluation backend: ${evalBackend}${tried.length ? ` (${evalBackendNote(tried)})` : ''}`);

  const cifarDir = cifarDirOrDefault(cfg.cifarDir);
  const data: DataSource = cifarDir
    ? await cifarSource(cifarDir, cfg.seed, cfg.examplesPerClient, cfg.testExamples, cfg.partition)
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
  if (cfg.saveModel) saveModelEachRound(coordinator, cfg.saveModel, log);

  if (!existsSync(cfg.distDir))
    log(`warning: ${cfg.distDir}/ not found; run "npm run build" to serve the demo page and client bundle`);
  const app = createApp({ coordinator, metrics, data, distDir: cfg.distDir, startedAt });
  let http: HttpServer;
  try {
    http = createAdaptorServer(
      tls ? { fetch: app.fetch, createServer: createHttpsServer, serverOptions: tls } : { fetch: app.fetch },
    ) as HttpServer;
  } catch (e) {
    // node:tls refuses a malformed PEM or a key that does not match the certificate here.
    coordinator.stop();
    evaluator.dispose();
    throw new StartupError(`--tls-cert/--tls-key: ${(e as Error).message.split('\n')[0]}`);
  }
  const io = attachSocketIo(http, coordinator, metrics, cfg.maxMessageBytes, {
    socket: { perSecond: cfg.socketRate, burst: cfg.socketBurst },
    address: { perSecond: cfg.addressRate, burst: cfg.addressBurst },
    trustedProxy: cfg.trustedProxy,
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(cfg.port, cfg.host, () => resolve());
  }).catch(async (e: NodeJS.ErrnoException) => {
    coordinator.stop();
    await new Promise<void>((r) => io.close(() => r()));
    evaluator.dispose();
    throw listenError(e, cfg);
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
