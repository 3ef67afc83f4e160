import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Server as HttpServer } from 'node:http';
import type { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import { serverTask, type ServerConfig } from '../config.ts';
import { createApp, type AppView } from '../app.ts';
import { systemClock } from '../clock.ts';
import { createMetrics } from '../metrics.ts';
import { RunState, StateError } from '../run-state.ts';
import {
  buildCore,
  httpServerFor,
  listen,
  loadData,
  readSecrets,
  readTls,
  serveClients,
  StartupError,
  type Core,
} from '../server.ts';
import { ringLengthFor, roundMode } from '../aggregator/index.ts';
import { pushedStatus, STATUS_ROOM } from '../status-push.ts';
import { resumedSession, RESUME_KEY_BYTES } from '../sessions.ts';
import { connectRedis, KEY_PREFIX, ready, redactUrl } from '../redis/connect.ts';
import { LeaderLease } from '../redis/lease.ts';
import { RedisStore } from '../redis/store.ts';
import { CoordinatorBus } from './coordinator-bus.ts';
import { GatewayBus } from './gateway-bus.ts';
import { MODEL_KEY, RESUME_KEY, UP_STREAM } from './frames.ts';

/** A coordinator that stops renewing is replaced by the standby this long after its last renewal. */
export const LEASE_TTL_MS = 5000;
/** Client indices (data shards) of each leader's new sessions start at fence x this: terms never collide. */
const INDICES_PER_TERM = 2 ** 20;

/** A process of the cluster, as main.ts runs it. */
export interface RunningRole {
  url: string;
  port: number;
  close(): Promise<void>;
  shutdown(): Promise<void>;
}

async function connect(cfg: ServerConfig, name: string, log: (m: string) => void): Promise<Redis> {
  const redis = connectRedis(cfg.redis!, name, log);
  try {
    await ready(redis, 15_000);
  } catch (e) {
    redis.disconnect();
    throw new StartupError(`--redis ${redactUrl(cfg.redis!)}: ${(e as Error).message}`);
  }
  return redis;
}

/**
 * The key resume tokens are signed with, shared by every coordinator and gateway: the first process to
 * need it creates it (SET NX), everyone reads the same one. Redis is trusted with it as with the ledger.
 */
export async function sharedResumeKey(redis: Redis): Promise<Uint8Array> {
  await redis.set(RESUME_KEY, randomBytes(RESUME_KEY_BYTES), 'NX');
  const key = await redis.getBuffer(RESUME_KEY);
  if (!key || key.length !== RESUME_KEY_BYTES)
    throw new StartupError(`${RESUME_KEY} in Redis is not a ${RESUME_KEY_BYTES}-byte key`);
  return new Uint8Array(key);
}

/** The model as the coordinator publishes it for the gateways: round (u32 LE) then the float32 weights. */
export function packModel(round: number, weights: Float32Array): Buffer {
  const b = Buffer.alloc(4 + weights.byteLength);
  b.writeUInt32LE(round, 0);
  Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength).copy(b, 4);
  return b;
}

export function unpackModel(b: Buffer): { round: number; weights: Float32Array } | null {
  if (b.length < 4 || (b.length - 4) % 4 !== 0) return null;
  const copy = new Uint8Array(b.subarray(4));
  return { round: b.readUInt32LE(0), weights: new Float32Array(copy.buffer) };
}

/** Runs the process --role names (coordinator or gateway); role all is startServer. */
export function startRole(cfg: ServerConfig, log: (m: string) => void): Promise<RunningRole> {
  if (cfg.role === 'coordinator') return startCoordinator(cfg, log);
  if (cfg.role === 'gateway') return startGateway(cfg, log);
  throw new Error(`startRole: --role ${cfg.role} is one process (startServer)`);
}

/**
 * A coordinator: listens at once (a standby answers /health), waits for the leader lease, then resumes
 * the run from Redis (fenced by the lease's token), hears the gateways' clients over the bus and runs
 * the rounds exactly as one process does. A lost lease ends the process: only the leader may act.
 */
export async function startCoordinator(cfg: ServerConfig, log: (m: string) => void): Promise<RunningRole> {
  const startedAt = Date.now();
  const tls = await readTls(cfg);
  const redis = await connect(cfg, 'aegisfl-coordinator', log);
  const reader = redis.duplicate();
  const holder = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const standby: AppView = { status: () => null, model: () => null };
  const data = await loadData(cfg, log);
  let app = createApp({
    view: standby,
    metrics: createMetrics(),
    data,
    distDir: cfg.distDir,
    startedAt,
  });
  const http: HttpServer = httpServerFor({ fetch: (r: Request) => app.fetch(r) }, tls);
  const { url, port } = await listen(http, cfg, tls !== null);
  log(`AegisFL server on ${url} (coordinator ${holder}; standby until it holds the lease)`);

  let core: Core | null = null;
  let bus: CoordinatorBus | null = null;
  let io: Server | null = null;
  let lease: LeaderLease | null = null;
  const abort = new AbortController();
  const close = async (): Promise<void> => {
    abort.abort();
    bus?.stop();
    if (io) await new Promise<void>((r) => io!.close(() => r()));
    await core?.dispose();
    await lease?.release().catch(() => false);
    await new Promise<void>((r) => http.close(() => r()));
    reader.disconnect();
    redis.disconnect();
  };

  const lead = async (): Promise<void> => {
    lease = await LeaderLease.acquire(redis, {
      holder,
      ttlMs: LEASE_TTL_MS,
      renewEveryMs: LEASE_TTL_MS / 5,
      signal: abort.signal,
      onLost: (why) => {
        // Another coordinator leads now (or Redis was unreachable for a whole lease): the fenced store
        // already refuses this one's writes; it stops sending too, and a supervisor restarts it as standby.
        log(`lost the coordinator lease (${why}): exiting`);
        process.exit(75);
      },
    });
    // Messages from now on are the new term's; earlier ones were for the leader before (its clients reconnect).
    const last = await redis.xrevrange(UP_STREAM, '+', '-', 'COUNT', 1);
    const fromId = last[0]?.[0] ?? '0-0';
    log(`leading (fence ${lease.token})`);
    let runState: RunState;
    try {
      runState = await RunState.open(new RedisStore(redis, lease.token));
    } catch (e) {
      if (e instanceof StateError) throw new StartupError(`--redis: ${e.message}`);
      throw e;
    }
    const resumeKey = await sharedResumeKey(redis);
    core = await buildCore(
      cfg,
      log,
      runState,
      { resumeKeys: { key: resumeKey }, firstClientIndex: lease.token * INDICES_PER_TERM },
      data,
    );
    const { coordinator, metrics } = core;
    const publishModel = (): void => {
      void redis
        .set(MODEL_KEY, packModel(coordinator.roundsCompleted, coordinator.globalWeights))
        .catch(() => metrics.internalErrors.inc({ where: 'send' }));
    };
    publishModel();
    coordinator.on('roundEnd', publishModel);
    // The status broadcast reaches observers on every gateway through socket.io's Redis streams adapter.
    io = new Server({ adapter: createAdapter(redis) });
    const statusIo = io;
    bus = new CoordinatorBus({
      coordinator,
      metrics,
      redis,
      reader,
      fromId,
      clock: systemClock,
      broadcastStatus: (s) => statusIo.to(STATUS_ROOM).emit('status', pushedStatus(s)),
      log,
    });
    bus.start();
    app = createApp({ coordinator, metrics, data, distDir: cfg.distDir, startedAt });
    log(`coordinating ${serverTask(cfg).task.name} over ${redactUrl(cfg.redis!)}`);
  };
  void lead().catch((e: unknown) => {
    if (abort.signal.aborted) return;
    log(`error: ${(e as Error).message}`);
    process.exit(2);
  });

  return {
    url,
    port,
    close,
    shutdown: async () => {
      await core?.coordinator.shutdown();
      await close();
    },
  };
}

/**
 * A gateway: terminates client sockets with every defence of one process (handshake, rate limits,
 * bounded parser), checks resume tokens with the shared key, and passes messages to the coordinator
 * over the bus. Pages, shards and model files are served from here; status and model come from what the
 * coordinator publishes.
 */
export async function startGateway(cfg: ServerConfig, log: (m: string) => void): Promise<RunningRole> {
  const startedAt = Date.now();
  const tls = await readTls(cfg);
  const secrets = await readSecrets(cfg);
  const redis = await connect(cfg, 'aegisfl-gateway', log);
  const reader = redis.duplicate();
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`.replace(
    /[^A-Za-z0-9._-]/g,
    '_',
  );
  const resumeKey = await sharedResumeKey(redis);
  const metrics = createMetrics();
  const data = await loadData(cfg, log);
  const task = serverTask(cfg);
  const bus = new GatewayBus({
    id,
    redis,
    reader,
    metrics,
    clock: systemClock,
    // Secure rounds: masked inputs are checked and summed here (one partial sum per flush to the coordinator).
    presum:
      cfg.gatewaySum && roundMode(cfg) === 'secure'
        ? {
            numParams: task.numParams,
            maxExamples: cfg.maxExamplesPerClient,
            ringLength: ringLengthFor('secure', task.numParams),
          }
        : undefined,
    sessionOf: (c) => resumedSession({ key: resumeKey }, c, Date.now()),
    log,
  });
  await bus.start();
  const view: AppView = {
    status: () => bus.status(),
    model: async () => {
      const b = await redis.getBuffer(MODEL_KEY).catch(() => null);
      const m = b ? unpackModel(b) : null;
      return m && m.weights.length === task.numParams ? { task, ...m } : null;
    },
  };
  const { http, io } = serveClients({
    cfg,
    tls,
    secrets,
    metrics,
    log,
    data,
    startedAt,
    routes: { view },
    backend: bus,
    // A join token is single-use across the gateways: its jti is recorded in Redis until it expires.
    spendToken: async (t) =>
      (await redis.set(`${KEY_PREFIX}jti:${t.jti}`, '1', 'EXAT', t.exp, 'NX')) === 'OK',
    // The coordinator's status broadcast reaches this gateway's observers through the Redis streams adapter.
    adapter: createAdapter(redis),
  });
  const { url, port } = await listen(http, cfg, tls !== null);
  log(`AegisFL server on ${url} (gateway ${id} over ${redactUrl(cfg.redis!)})`);
  const close = async (): Promise<void> => {
    await bus.stop();
    await new Promise<void>((r) => io.close(() => r()));
    reader.disconnect();
    redis.disconnect();
  };
  return { url, port, close, shutdown: close };
}
