import type { Redis } from 'ioredis';
import type { Ack } from '../../shared/protocol/messages.ts';
import type { ServerStatus } from '../../shared/protocol/status.ts';
import type { ClientLink } from '../clients.ts';
import type { Clock, Timer } from '../clock.ts';
import type { Metrics } from '../metrics.ts';
import type { ClientEvent } from '../reject-events.ts';
import type { BackendConnection, SocketBackend, StatusFeed } from '../socket.ts';
import { FENCE_KEY } from '../redis/lease.ts';
import {
  decodeDown,
  downStream,
  encodeFrame,
  gatewayKey,
  GATEWAY_TTL_MS,
  HEARTBEAT_MS,
  STATUS_KEY,
  STREAM_MAXLEN,
  UP_STREAM,
  type ConnMeta,
  type DownFrame,
  type UpFrame,
} from './frames.ts';

export interface GatewayBusOptions {
  /** This gateway's id: unique per process start (a restarted gateway is a new one). */
  id: string;
  redis: Redis;
  /** A connection of its own for the blocking reads of this gateway's stream. */
  reader: Redis;
  metrics: Metrics;
  clock: Clock;
  /** Resume credentials checked here, with the shared key: a reconnect is let in on any gateway. */
  sessionOf: (credentials: unknown) => string | null;
  log: (m: string) => void;
  /** How long a message waits for the coordinator's answer before it is refused. */
  answerTimeoutMs?: number;
}

interface Local {
  link: ClientLink;
  drop: () => void;
  meta: ConnMeta;
}

interface Waiting {
  resolve: (a: Ack) => void;
  timer: Timer;
}

/**
 * A gateway's end of the cluster bus: the sockets of this process talk to the coordinator through it
 * (a SocketBackend, like the coordinator in one process). Each message goes to UP_STREAM with the
 * connection it came on; the coordinator's frames for this gateway (messages to clients, answers) come
 * back on its own stream, in the order the coordinator produced them.
 *
 * When the coordinator changes (a new fencing token: the standby took over) every socket here is
 * closed at the transport: the clients reconnect, resume their sessions with their tokens, and the new
 * coordinator hears them from the start, as after a restart of one process.
 */
export class GatewayBus implements SocketBackend {
  private readonly locals = new Map<string, Local>();
  private readonly waiting = new Map<number, Waiting>();
  private nextConn = 0;
  private nextAnswer = 0;
  private lastId = '0';
  private fence: string | null | undefined = undefined;
  private stopped = false;
  private timers: Timer[] = [];

  constructor(private readonly o: GatewayBusOptions) {}

  get id(): string {
    return this.o.id;
  }

  /** Connections held. */
  get size(): number {
    return this.locals.size;
  }

  async start(): Promise<void> {
    await this.heartbeat();
    this.fence = await this.o.redis.get(FENCE_KEY);
    void this.readLoop();
    const every = (ms: number, fn: () => Promise<void>): void => {
      const tick = (): void => {
        void fn()
          .catch(() => {})
          .finally(() => {
            if (!this.stopped) this.timers.push(this.o.clock.setTimeout(tick, ms));
          });
      };
      this.timers.push(this.o.clock.setTimeout(tick, ms));
    };
    every(HEARTBEAT_MS, () => this.heartbeat());
    every(HEARTBEAT_MS, () => this.watchFence());
  }

  /** Stops reading and says goodbye (the coordinator then closes this gateway's connections at once). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) this.o.clock.clearTimeout(t);
    await this.o.redis.del(gatewayKey(this.o.id)).catch(() => {});
  }

  sessionOf(credentials: unknown): string | null {
    return this.o.sessionOf(credentials);
  }

  connect(meta: ConnMeta, link: ClientLink, drop: () => void): BackendConnection {
    const c = (++this.nextConn).toString(36);
    this.locals.set(c, { link, drop, meta });
    this.o.metrics.clientsConnected.set(this.locals.size);
    this.up({ t: 'open', g: this.o.id, c, m: meta });
    return {
      message: (event, raw) => this.message(c, meta, event, raw),
      close: () => {
        this.locals.delete(c);
        this.o.metrics.clientsConnected.set(this.locals.size);
        this.up({ t: 'close', g: this.o.id, c });
      },
    };
  }

  /** Observers here are pushed by the coordinator (the adapter's broadcast); a new one gets the last status it published. */
  statusFeed(): StatusFeed {
    return {
      current: async () => this.status(),
      observerJoined: () => {},
      observerLeft: () => {},
      kick: () => {},
      stop: () => {},
    };
  }

  /** The coordinator's last published status, or null before there is one. */
  async status(): Promise<ServerStatus | null> {
    const json = await this.o.redis.get(STATUS_KEY).catch(() => null);
    return json ? (JSON.parse(json) as ServerStatus) : null;
  }

  private message(c: string, meta: ConnMeta, event: ClientEvent, raw: unknown): Promise<Ack> {
    const a = ++this.nextAnswer;
    return new Promise<Ack>((resolve) => {
      const timer = this.o.clock.setTimeout(() => {
        this.waiting.delete(a);
        resolve({ ok: false, reason: 'internal_error', message: 'the coordinator did not answer in time' });
      }, this.o.answerTimeoutMs ?? 30_000);
      this.waiting.set(a, { resolve, timer });
      this.up({ t: 'msg', g: this.o.id, c, m: meta, e: event, r: raw, a });
    });
  }

  private up(f: UpFrame): void {
    this.o.redis
      .xadd(UP_STREAM, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'f', encodeFrame(f))
      .catch(() => this.o.metrics.internalErrors.inc({ where: 'send' }));
  }

  private async heartbeat(): Promise<void> {
    await this.o.redis.set(gatewayKey(this.o.id), '1', 'PX', GATEWAY_TTL_MS);
  }

  /** A new leader: drop every transport here, so that the clients come back to it. */
  private async watchFence(): Promise<void> {
    const fence = await this.o.redis.get(FENCE_KEY);
    if (fence === this.fence) return;
    const before = this.fence;
    this.fence = fence;
    if (before === undefined) return;
    this.o.log(
      `gateway ${this.o.id}: coordinator changed (fence ${before ?? 'none'} -> ${fence}); ${this.locals.size} client(s) reconnect`,
    );
    for (const w of this.waiting.values()) {
      this.o.clock.clearTimeout(w.timer);
      w.resolve({
        ok: false,
        reason: 'internal_error',
        message: 'the coordinator changed: reconnect and resend',
      });
    }
    this.waiting.clear();
    for (const l of [...this.locals.values()]) l.drop();
  }

  private async readLoop(): Promise<void> {
    const stream = downStream(this.o.id);
    while (!this.stopped) {
      let res: [Buffer, [Buffer, Buffer[]][]][] | null;
      try {
        res = await this.o.reader.xreadBuffer('COUNT', 512, 'BLOCK', 1000, 'STREAMS', stream, this.lastId);
      } catch (e) {
        if (this.stopped) return;
        this.o.log(`gateway ${this.o.id}: reading its stream failed (${(e as Error).message}); retrying`);
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (!res) continue;
      for (const [id, fields] of res[0][1]) {
        this.lastId = id.toString();
        const f = fields.length >= 2 ? decodeDown(fields[1]) : null;
        if (f) this.deliver(f);
        else this.o.metrics.internalErrors.inc({ where: 'message' });
      }
      // Entries handled are not needed again: trim what this gateway has read.
      void this.o.redis.xtrim(stream, 'MINID', this.lastId).catch(() => {});
    }
  }

  private deliver(f: DownFrame): void {
    if (f.t === 'ack') {
      const w = this.waiting.get(f.a);
      if (!w) return; // answered already (timed out)
      this.waiting.delete(f.a);
      this.o.clock.clearTimeout(w.timer);
      w.resolve(f.r);
      return;
    }
    const l = this.locals.get(f.c);
    if (!l) return; // the socket closed meanwhile
    (l.link.send as (e: string, ...a: unknown[]) => void)(f.e, ...f.a);
  }
}
