import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startRedis, type RedisProcess } from '../../e2e/redis-server.ts';
import type { Redis } from 'ioredis';
import { MODELS, numParams } from '../../shared/model/spec.ts';
import { PROTOCOL_VERSION, type Ack, type ServerToClientEvents } from '../../shared/protocol/messages.ts';
import type { ClientLink } from '../clients.ts';
import { ManualClock } from '../clock.ts';
import { DEFAULTS, type ServerConfig } from '../config.ts';
import { Coordinator } from '../coordinator.ts';
import type { EvalResult } from '../evaluator.ts';
import { createMetrics, type Metrics } from '../metrics.ts';
import { connectRedis, ready } from '../redis/connect.ts';
import type { ClientEvent } from '../reject-events.ts';
import type { UpdateLimits } from '../../shared/protocol/validate.ts';
import { resumedSession } from '../sessions.ts';
import type { BackendConnection } from '../socket.ts';
import { CoordinatorBus } from './coordinator-bus.ts';
import type { ConnMeta } from './frames.ts';
import { GatewayBus } from './gateway-bus.ts';

/** Helpers shared by the cluster bus tests (not a test file itself): real buses on a real Redis, links in memory. */
export const spec = MODELS.tiny;
export const P = numParams(spec);
export const HELLO = { protocolVersion: PROTOCOL_VERSION, source: 'node' };
export const META: ConnMeta = { resumes: null, observerOnly: false, observe: false };
export const RESUME_KEY = new Uint8Array(32).fill(7);

/** A client socket as the gateway sees it: records what it is sent, and whether it was dropped. */
export class MemLink implements ClientLink {
  sent: { event: keyof ServerToClientEvents; args: unknown[] }[] = [];
  dropped = 0;
  send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    this.sent.push({ event, args });
  }
  events(): string[] {
    return this.sent.map((s) => s.event);
  }
  last(event: string): any {
    return [...this.sent].reverse().find((s) => s.event === event)?.args[0];
  }
}

/** A connection on a gateway, with its link. */
export interface Client {
  link: MemLink;
  conn: BackendConnection;
  say(event: ClientEvent, raw: unknown): Promise<Ack>;
}

const meanLoss = async (w: Float32Array): Promise<EvalResult> => {
  let s = 0;
  for (const x of w) s += x;
  return { accuracy: 0.5, loss: s / w.length, examples: 10, ms: 1 };
};

export async function eventually<T>(
  fn: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * One Redis (already started), a real Coordinator behind a CoordinatorBus, and gateways made on demand.
 * Every bus's timers run on a ManualClock (heartbeats, fence checks, answer timeouts, gateway checks):
 * a test moves them on explicitly; the stream reads run on real time.
 */
export class Harness {
  readonly metrics: Metrics = createMetrics();
  readonly coordClock = new ManualClock(1_700_000_000_000);
  readonly busClock = new ManualClock(0);
  readonly logs: string[] = [];
  coordinator!: Coordinator;
  bus!: CoordinatorBus;
  private readonly redises: Redis[] = [];
  private readonly gateways: GatewayBus[] = [];
  /** Everything the coordinator broadcast to observers. */
  readonly broadcasts: unknown[] = [];

  constructor(
    readonly url: string,
    private readonly config: Partial<ServerConfig> = {},
  ) {}

  async redis(name: string): Promise<Redis> {
    const r = connectRedis(this.url, name, () => {});
    this.redises.push(r);
    await ready(r, 5000);
    return r;
  }

  async start(): Promise<this> {
    const config: ServerConfig = {
      ...DEFAULTS,
      secagg: false,
      dp: null,
      model: spec,
      minClients: 2,
      clientsPerRound: 2,
      minUpdates: 2,
      roundDeadlineMs: 60_000,
      roundPauseMs: 0,
      ...this.config,
    };
    this.coordinator = new Coordinator({
      config,
      metrics: this.metrics,
      evaluate: meanLoss,
      evalBackend: 'cpu',
      initialWeights: new Float32Array(P).fill(0.01),
      dataFor: (i) => ({ kind: 'synthetic', seed: i, count: 8 }),
      clock: this.coordClock,
      resumeKeys: { key: RESUME_KEY },
    });
    await this.coordinator.init();
    this.bus = new CoordinatorBus({
      coordinator: this.coordinator,
      metrics: this.metrics,
      redis: await this.redis('coord'),
      reader: await this.redis('coord-reader'),
      fromId: '0-0',
      clock: this.busClock,
      broadcastStatus: (s) => this.broadcasts.push(s),
      log: (m) => this.logs.push(m),
      checkGatewaysMs: 100,
    });
    this.bus.start();
    return this;
  }

  /** A started gateway; its timers run on `clock`. */
  async gateway(
    id: string,
    o: {
      clock?: ManualClock;
      answerTimeoutMs?: number;
      key?: Uint8Array;
      metrics?: Metrics;
      presum?: UpdateLimits;
    } = {},
  ): Promise<{ gw: GatewayBus; clock: ManualClock; metrics: Metrics }> {
    const clock = o.clock ?? new ManualClock(1_700_000_000_000);
    const metrics = o.metrics ?? createMetrics();
    const key = o.key ?? RESUME_KEY;
    const gw = new GatewayBus({
      id,
      redis: await this.redis(`${id}`),
      reader: await this.redis(`${id}-reader`),
      metrics,
      clock,
      sessionOf: (c) => resumedSession({ key }, c, clock.now()),
      log: (m) => this.logs.push(m),
      answerTimeoutMs: o.answerTimeoutMs,
      presum: o.presum,
    });
    await gw.start();
    this.gateways.push(gw);
    return { gw, clock, metrics };
  }

  /** A client connection on `gw`. */
  client(gw: GatewayBus, meta: ConnMeta = META, onDrop?: () => void): Client {
    const link = new MemLink();
    const conn = gw.connect(meta, link, () => {
      link.dropped++;
      onDrop?.();
    });
    return { link, conn, say: async (e, raw) => conn.message(e, raw) };
  }

  /** Runs the coordinator bus's gateway check once (its timer), then lets it finish. */
  checkGateways(): void {
    this.busClock.advance(100);
  }

  connected(): number {
    return this.coordinator.status().clients.connected;
  }

  async close(): Promise<void> {
    this.bus?.stop();
    this.coordinator?.stop();
    for (const g of this.gateways) await g.stop();
    for (const r of this.redises) r.disconnect();
  }
}

/**
 * One throw-away redis-server for a test file (started before its tests, stopped after), emptied before
 * each test; returns its URL.
 */
export function useRedis(): () => string {
  let server: RedisProcess;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    const r = connectRedis(server.url, 'flush', () => {});
    await ready(r, 5000);
    await r.flushall();
    r.disconnect();
  });
  return () => server.url;
}
