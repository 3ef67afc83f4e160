import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { buildTaskModel } from '../shared/model/task-build.ts';
import { isImageTask } from '../shared/model/task.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import { createApp, type AppDeps } from './app.ts';
import { serverTask, type ServerConfig } from './config.ts';
import { Coordinator, type CoordinatorDeps } from './coordinator.ts';
import { cifarDirOrDefault, cifarSource, pageSource, syntheticSource, type DataSource } from './datasets.ts';
import { Evaluator, evalBackendNote, initEvalBackend } from './evaluator.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { RunState, StateError } from './run-state.ts';
import { FileStore } from './store.ts';
import { attachSocketIo, type SocketAccess, type SocketBackend, type SocketLimits } from './socket.ts';
import type { Server, ServerOptions } from 'socket.io';
import type { ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/messages.ts';
import { saveModelEachRound } from './model-files.ts';
import { readTaskEval } from './task-file.ts';
import { UnmaskThread } from './unmask-thread.ts';
import { JoinTokenVerifier, mintJoinToken, parseTokenKey } from './join-token.ts';

/** Join tokens are remembered (for replay detection) up to this many live at once. */
const REPLAY_CAPACITY = 200_000;

export interface RunningServer {
  url: string;
  port: number;
  coordinator: Coordinator;
  evalBackend: string;
  close(): Promise<void>;
  /**
   * A clean stop (SIGTERM): the attempt in training is abandoned, one being evaluated finished and
   * checkpointed, every state write landed; then the connections close without a disconnect packet, so
   * clients take it as a lost connection and come back on their own.
   */
  shutdown(): Promise<void>;
}

/** A start-up failure the operator can fix (a port in use, an unreadable certificate): one line, no stack. */
export class StartupError extends Error {}

export type Tls = { cert: Buffer; key: Buffer };

/** The PEM files, read before anything is built so a wrong path fails at once. */
export async function readTls(cfg: ServerConfig): Promise<Tls | null> {
  if (!cfg.tlsCert || !cfg.tlsKey) return null;
  const read = (flag: string, path: string): Promise<Buffer> =>
    readFile(path).catch((e: NodeJS.ErrnoException) => {
      throw new StartupError(`${flag} ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
  return { cert: await read('--tls-cert', cfg.tlsCert), key: await read('--tls-key', cfg.tlsKey) };
}

export interface Secrets {
  tokenKey: Buffer | null;
  previousTokenKey: Buffer | null;
  operatorKey: Buffer | null;
}

/** The key files: read and checked before anything is built. */
export async function readSecrets(cfg: ServerConfig): Promise<Secrets> {
  const read = async (flag: string, path: string | undefined): Promise<Buffer | null> => {
    if (path === undefined) return null;
    const text = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new StartupError(`${flag} ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    try {
      return parseTokenKey(text, `${flag} ${path}`);
    } catch (e) {
      throw new StartupError((e as Error).message);
    }
  };
  return {
    tokenKey: await read('--join-token-key', cfg.joinTokenKey),
    previousTokenKey: await read('--join-token-key-previous', cfg.joinTokenKeyPrevious),
    operatorKey: await read('--operator-key', cfg.operatorKey),
  };
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

/** The run in --state-dir, or null without one; a refused state file stops the start with its one line. */
async function openRunState(cfg: ServerConfig): Promise<RunState | null> {
  if (cfg.stateDir === undefined) return null;
  try {
    return await RunState.open(await FileStore.open(cfg.stateDir));
  } catch (e) {
    if (e instanceof StateError) throw new StartupError(`--state-dir ${cfg.stateDir}: ${e.message}`);
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw new StartupError(`--state-dir ${cfg.stateDir}: ${(e as Error).message}`);
    throw e;
  }
}

/** The round engine and what it needs, built from a validated config (every role that runs rounds). */
export interface Core {
  coordinator: Coordinator;
  metrics: Metrics;
  data: DataSource;
  evalBackend: string;
  /** Stops the coordinator and frees the evaluator and the unmask thread. */
  dispose(): Promise<void>;
}

/** The data the clients train on and the server evaluates on (also what gateways serve as shards). */
export async function loadData(cfg: ServerConfig, log: (m: string) => void): Promise<DataSource> {
  const task = serverTask(cfg);
  // --task-eval: the operator's held-out set (needed where the data is the visitors' own, not images).
  const heldOut = cfg.taskEval ? readTaskEval(cfg.taskEval, task.task) : null;
  let data: DataSource;
  if (!isImageTask(task.task)) data = pageSource(heldOut!, cfg.taskEval!);
  else {
    const cifarDir = cifarDirOrDefault(cfg.cifarDir);
    data = cifarDir
      ? await cifarSource(cifarDir, cfg.seed, cfg.examplesPerClient, cfg.testExamples, cfg.partition)
      : syntheticSource(cfg.seed, cfg.examplesPerClient, cfg.testExamples, cfg.partition);
    if (heldOut)
      data = { ...data, test: heldOut, description: `${data.description}; evaluated on ${cfg.taskEval}` };
  }
  log(`task: ${task.task.name} (${task.numParams} parameters, hash ${task.hash})`);
  log(`data: ${data.description}`);
  return data;
}

/**
 * Builds the coordinator (resumed from `runState` when given) and evaluates the initial model. A
 * checkpoint that does not fit this config fails here, with everything built so far freed.
 */
export async function buildCore(
  cfg: ServerConfig,
  log: (m: string) => void,
  runState: RunState | null,
  extra: Partial<Pick<CoordinatorDeps, 'resumeKeys' | 'firstClientIndex'>> = {},
  /** The data, when the caller loaded it already (a coordinator's standby page serves it while it waits). */
  loaded?: DataSource,
): Promise<Core> {
  const { backend: evalBackend, tried } = await initEvalBackend();
  log(`evaluation backend: ${evalBackend}${tried.length ? ` (${evalBackendNote(tried)})` : ''}`);
  const task = serverTask(cfg);
  const data = loaded ?? (await loadData(cfg, log));
  const metrics = createMetrics();
  metrics.evalBackend.set({ backend: evalBackend }, 1);
  const evaluator = new Evaluator(await buildTaskModel(task), data.test);
  const init = await buildTaskModel(task, cfg.seed);
  const initialWeights = await getFlatWeights(init.model);
  init.model.dispose();
  // Test-only: AEGISFL_TEST_HOLD_PHASE names a phase the server never leaves, from round
  // AEGISFL_TEST_HOLD_ROUND (default 1) on: keys, shares, masked, unmask (secure-aggregation phases) or
  // evaluation (of a released round), so that a test can kill it there. Only e2e tests set it.
  const testHold = process.env.AEGISFL_TEST_HOLD_PHASE
    ? { phase: process.env.AEGISFL_TEST_HOLD_PHASE, round: Number(process.env.AEGISFL_TEST_HOLD_ROUND ?? 1) }
    : undefined;
  if (testHold)
    log(`TEST HOOK: holding phase ${testHold.phase} from round ${testHold.round} (never in production)`);
  let evaluations = 0;
  const evaluate = (w: Float32Array): ReturnType<Evaluator['evaluate']> => {
    // The first evaluation is the initial model's; the n-th after it is round n's.
    if (testHold?.phase === 'evaluation' && evaluations++ >= testHold.round) {
      log('test hold: phase evaluation held open');
      return new Promise(() => {});
    }
    return evaluator.evaluate(w);
  };
  // Secure rounds unmask on a worker thread: seconds of CPU at thousands of clients, off the event loop.
  const unmaskThread = new UnmaskThread();
  const coordinator = new Coordinator({
    config: cfg,
    metrics,
    evaluate,
    evalBackend,
    data: { kind: data.kind, description: data.description },
    initialWeights,
    dataFor: (i) => data.specFor(i),
    log: cfg.logLevel === 'info' ? log : undefined,
    logError: log, // internal errors are logged even with --quiet
    runState: runState ?? undefined,
    testHold,
    unmask: unmaskThread.run,
    ...extra,
  });
  const dispose = async (): Promise<void> => {
    coordinator.stop();
    evaluator.dispose();
    await unmaskThread.close();
  };
  try {
    await coordinator.init();
  } catch (e) {
    await dispose();
    throw e;
  }
  // Load the unmasking's threads now rather than in the first round's unmask phase; a failure here is
  // only logged (the first job starts the worker again).
  if (cfg.secagg)
    unmaskThread.warm().catch((e: unknown) => log(`unmask thread warm-up failed: ${String(e)}`));
  return { coordinator, metrics, data, evalBackend, dispose };
}

/** The HTTP(S) server for `app`; a malformed certificate or key is a StartupError. */
export function httpServerFor(
  app: { fetch: (r: Request) => Response | Promise<Response> },
  tls: Tls | null,
): HttpServer {
  try {
    return createAdaptorServer(
      tls ? { fetch: app.fetch, createServer: createHttpsServer, serverOptions: tls } : { fetch: app.fetch },
    ) as HttpServer;
  } catch (e) {
    // node:tls refuses a malformed PEM or a key that does not match the certificate here.
    throw new StartupError(`--tls-cert/--tls-key: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** Listens on --host/--port; resolves with the URL clients use. */
export async function listen(
  http: HttpServer,
  cfg: ServerConfig,
  tls: boolean,
): Promise<{ url: string; port: number }> {
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(cfg.port, cfg.host, () => resolve());
  }).catch((e: NodeJS.ErrnoException) => {
    throw listenError(e, cfg);
  });
  const port = (http.address() as AddressInfo).port;
  const url = `${tls ? 'https' : 'http'}://${cfg.host === '0.0.0.0' ? 'localhost' : cfg.host}:${port}`;
  return { url, port };
}

/** Who may connect and where tokens are minted: the same on a gateway as in one process. */
export interface Access {
  allowedOrigins: Set<string> | null;
  tokens: JoinTokenVerifier | null;
  tokenRoute: AppDeps['tokenRoute'];
}

export function accessFor(
  cfg: ServerConfig,
  secrets: Secrets,
  metrics: Metrics,
  log: (m: string) => void,
): Access {
  const allowedOrigins = cfg.allowedOrigins ? new Set(cfg.allowedOrigins) : null;
  const { tokenKey, previousTokenKey, operatorKey } = secrets;
  const tokens = tokenKey
    ? new JoinTokenVerifier({
        key: tokenKey,
        previousKey: previousTokenKey,
        maxTtlSeconds: cfg.joinTokenMaxTtlS,
        replayCapacity: REPLAY_CAPACITY,
      })
    : null;
  if (!tokens) log('join tokens: off (any client may join); set --join-token-key in production');
  const tokenRoute =
    tokenKey && operatorKey
      ? {
          operatorKey,
          maxTtlSeconds: cfg.joinTokenMaxTtlS,
          mint: (o: Parameters<typeof mintJoinToken>[1]) => mintJoinToken(tokenKey, o),
          onIssued: () => metrics.joinTokensIssued.inc(),
        }
      : null;
  return { allowedOrigins, tokens, tokenRoute };
}

/** Builds everything from a validated config and starts listening (--role all: one process). */
export async function startServer(
  cfg: ServerConfig,
  log: (m: string) => void = console.log,
): Promise<RunningServer> {
  const startedAt = Date.now();
  const tls = await readTls(cfg);
  const secrets = await readSecrets(cfg);
  const runState = await openRunState(cfg);
  let core: Core;
  try {
    core = await buildCore(cfg, log, runState);
  } catch (e) {
    // A checkpoint that does not fit this config (another model, optimizer, DP off): one line.
    if (runState) throw new StartupError(`--state-dir ${cfg.stateDir}: ${(e as Error).message}`);
    throw e;
  }
  const { coordinator, metrics, data, evalBackend } = core;
  if (cfg.saveModel) saveModelEachRound(coordinator, cfg.saveModel, log);
  let served: ReturnType<typeof serveClients>;
  try {
    served = serveClients({
      cfg,
      tls,
      secrets,
      metrics,
      log,
      data,
      startedAt,
      routes: { coordinator },
      backend: coordinator,
    });
  } catch (e) {
    await core.dispose();
    throw e;
  }
  const { http, io } = served;
  const { url, port } = await listen(http, cfg, tls !== null).catch(async (e: unknown) => {
    await new Promise<void>((r) => io.close(() => r()));
    await core.dispose();
    throw e;
  });
  log(`AegisFL server on ${url} (task ${coordinator.task.task.name}, demo at ${url}/demo/)`);
  return {
    url,
    port,
    coordinator,
    evalBackend,
    close: async () => {
      coordinator.stop();
      await new Promise<void>((r) => io.close(() => r()));
      await core.dispose();
    },
    shutdown: async () => {
      await coordinator.shutdown();
      // io.close ends each transport without a disconnect packet: socket.io clients see a lost connection
      // and reconnect with backoff (after a disconnect packet they would not).
      await new Promise<void>((r) => io.close(() => r()));
      await core.dispose();
    },
  };
}

/** What serveClients builds from. */
export interface ClientServing {
  cfg: ServerConfig;
  tls: Tls | null;
  secrets: Secrets;
  metrics: Metrics;
  log: (m: string) => void;
  data: DataSource;
  startedAt: number;
  /** What the HTTP routes read: the coordinator here, or (a gateway) what the coordinator publishes. */
  routes: Pick<AppDeps, 'coordinator' | 'view'>;
  /** What the sockets talk to. */
  backend: Coordinator | SocketBackend;
  /** Cluster-wide join-token spending (a gateway). */
  spendToken?: SocketAccess['spendToken'];
  adapter?: ServerOptions['adapter'];
}

/**
 * What clients connect to, the same in one process and on a gateway: the page, API and model routes,
 * the HTTP(S) server, and socket.io with its handshake (origins, join tokens) and limits. Not listening
 * yet; a bad certificate or key is a StartupError.
 */
export function serveClients(o: ClientServing): {
  http: HttpServer;
  io: Server<ClientToServerEvents, ServerToClientEvents>;
} {
  const { cfg, metrics } = o;
  if (!existsSync(cfg.distDir))
    o.log(`warning: ${cfg.distDir}/ not found; run "npm run build" to serve the demo page and client bundle`);
  const access = accessFor(cfg, o.secrets, metrics, o.log);
  const app = createApp({
    ...o.routes,
    metrics,
    data: o.data,
    distDir: cfg.distDir,
    startedAt: o.startedAt,
    allowedOrigins: access.allowedOrigins,
    tokenRoute: access.tokenRoute,
  });
  const http = httpServerFor(app, o.tls);
  const io = attachSocketIo(
    http,
    o.backend,
    metrics,
    cfg.maxMessageBytes,
    socketLimits(cfg),
    { allowedOrigins: access.allowedOrigins, tokens: access.tokens, spendToken: o.spendToken },
    o.adapter,
  );
  return { http, io };
}

/** The socket limits of the flags. */
export function socketLimits(cfg: ServerConfig): SocketLimits {
  return {
    socket: { perSecond: cfg.socketRate, burst: cfg.socketBurst },
    address: { perSecond: cfg.addressRate, burst: cfg.addressBurst },
    trustedProxy: cfg.trustedProxy,
  };
}
