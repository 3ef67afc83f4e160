import type { Redis } from 'ioredis';
import type { Ack } from '../../shared/protocol/messages.ts';
import type { ServerStatus } from '../../shared/protocol/status.ts';
import type { ClientLink } from '../clients.ts';
import type { Clock, Timer } from '../clock.ts';
import type { Metrics } from '../metrics.ts';
import type { ClientEvent } from '../reject-events.ts';
import type { BackendConnection, SocketBackend, StatusFeed } from '../socket.ts';
import { FENCE_KEY } from '../redis/lease.ts';
import { readStream } from './stream-reader.ts';
import { checkUpdate, type UpdateLimits } from '../../shared/protocol/validate.ts';
import { addInto } from '../../shared/secagg/ring.ts';
import { messageDigest } from '../resend.ts';
import {
  blobKey,
  decodeDown,
  downStream,
  encodeFrame,
  gatewayKey,
  GATEWAY_TTL_MS,
  HEARTBEAT_MS,
  STATUS_KEY,
  STREAM_MAXLEN,
  UP_STREAM,
  withinDepth,
  MAX_MESSAGE_DEPTH,
  type ClaimedMember,
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
  /** Messages of one connection awaiting an answer at once; more are refused without being forwarded. */
  maxPendingPerConnection?: number;
  /**
   * Secure rounds: the update limits (the run's). Masked updates are then checked here and summed here;
   * the coordinator gets a small claim per update and one partial sum per flush, not every vector.
   */
  presum?: UpdateLimits;
}

/**
 * A partial sum is sent this long after its first input, or at once when it holds FLUSH_MEMBERS inputs.
 * Inputs trickle in over a phase (each client finishes training when it does): a short window would send
 * one whole vector per input, as forwarding does. The cost is that the masked phase may close up to this
 * much later than its last input arrived.
 */
export const PARTIAL_FLUSH_MS = 1000;
export const FLUSH_MEMBERS = 256;

/** The inputs this gateway summed for one attempt and not yet sent. */
interface Bucket {
  round: number;
  attempt: number;
  members: number[];
  sum: Uint32Array;
}

/**
 * A client never needs many answers outstanding (the protocol is one step at a time); the socket's rate
 * limit alone would let a flood pile up rate x answer timeout of them while the coordinator is slow.
 */
export const MAX_PENDING_PER_CONNECTION = 128;

interface Local {
  link: ClientLink;
  drop: () => void;
  meta: ConnMeta;
  /** Its messages awaiting an answer (keys of `waiting`). */
  pending: Set<number>;
}

interface Waiting {
  c: string;
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
  /** Claimed vectors by answer number, until the coordinator's answer (kept if their socket closes meanwhile). */
  private readonly claimed = new Map<number, { ring: Uint32Array; timer: Timer }>();
  private readonly buckets = new Map<string, Bucket>();
  /** Blobs (a round's model) by hash, the newest few. */
  private readonly blobCache = new Map<string, Buffer>();
  private flushTimer: Timer | null = null;
  private nextConn = 0;
  private nextAnswer = 0;
  private fence: string | null | undefined = undefined;
  private stopped = false;
  private beats = 0;
  private timers: Timer[] = [];

  constructor(private readonly o: GatewayBusOptions) {}

  get id(): string {
    return this.o.id;
  }

  /** Connections held. */
  get size(): number {
    return this.locals.size;
  }

  /** Messages awaiting the coordinator's answer. */
  get pendingAnswers(): number {
    return this.waiting.size;
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
    const local: Local = { link, drop, meta, pending: new Set() };
    this.locals.set(c, local);
    this.o.metrics.clientsConnected.set(this.locals.size);
    this.up({ t: 'open', g: this.o.id, c, m: meta });
    return {
      message: (event, raw) => this.message(c, local, event, raw),
      close: () => {
        if (this.locals.get(c) !== local) return;
        this.locals.delete(c);
        // Answers nobody can receive any more: forgotten now rather than held until their timeout.
        for (const a of local.pending) {
          const w = this.waiting.get(a);
          if (w) this.o.clock.clearTimeout(w.timer);
          this.waiting.delete(a);
        }
        local.pending.clear();
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

  private message(c: string, local: Local, event: ClientEvent, raw: unknown): Promise<Ack> {
    if (this.locals.get(c) !== local)
      return Promise.resolve({ ok: false, reason: 'internal_error', message: 'the connection is closed' });
    if (local.pending.size >= (this.o.maxPendingPerConnection ?? MAX_PENDING_PER_CONNECTION))
      return Promise.resolve({
        ok: false,
        reason: 'rate_limited',
        message: 'too many messages awaiting an answer: slow down',
      });
    // What a client sends is JSON and binary (socket.io), which v8 serializes, except past its recursion limit.
    if (!withinDepth(raw))
      return Promise.resolve({
        ok: false,
        reason: 'malformed',
        message: `message nested deeper than ${MAX_MESSAGE_DEPTH} levels`,
      });
    const a = ++this.nextAnswer;
    let frame: Buffer;
    try {
      if (event === 'update' && this.o.presum) {
        // Checked here as the coordinator would (the same function); the vector stays here.
        const u = checkUpdate(raw, this.o.presum);
        if (!u.ok) return Promise.resolve({ ok: false, reason: u.reason, message: u.message });
        const ring = u.value.ring!;
        const claim = { round: u.value.round, attempt: u.value.attempt, digest: messageDigest(ring) };
        frame = encodeFrame({ t: 'claim', g: this.o.id, c, m: local.meta, r: claim, a });
        const timer = this.o.clock.setTimeout(
          () => this.claimed.delete(a),
          (this.o.answerTimeoutMs ?? 30_000) + PARTIAL_FLUSH_MS,
        );
        this.claimed.set(a, { ring, timer });
      } else frame = encodeFrame({ t: 'msg', g: this.o.id, c, m: local.meta, e: event, r: raw, a });
    } catch (e) {
      this.o.metrics.internalErrors.inc({ where: 'message' });
      return Promise.resolve({
        ok: false,
        reason: 'internal_error',
        message: `message could not be forwarded: ${(e as Error)?.message ?? String(e)}`.slice(0, 200),
      });
    }
    return new Promise<Ack>((resolve) => {
      const timer = this.o.clock.setTimeout(() => {
        this.forget(a);
        resolve({ ok: false, reason: 'internal_error', message: 'the coordinator did not answer in time' });
      }, this.o.answerTimeoutMs ?? 30_000);
      this.waiting.set(a, { c, resolve, timer });
      local.pending.add(a);
      this.send(frame);
    });
  }

  /** An accepted claim's vector joins its attempt's partial sum, sent within PARTIAL_FLUSH_MS. */
  private addToSum(c: ClaimedMember, ring: Uint32Array): void {
    const key = `${c.round}.${c.attempt}`;
    let b = this.buckets.get(key);
    if (!b)
      this.buckets.set(
        key,
        (b = { round: c.round, attempt: c.attempt, members: [], sum: new Uint32Array(ring.length) }),
      );
    if (b.sum.length !== ring.length) return; // checked against the same limits: cannot happen
    addInto(b.sum, ring);
    b.members.push(c.member);
    if (b.members.length >= FLUSH_MEMBERS) {
      if (this.flushTimer) this.o.clock.clearTimeout(this.flushTimer);
      this.flush();
    } else this.flushTimer ??= this.o.clock.setTimeout(() => this.flush(), PARTIAL_FLUSH_MS);
  }

  /** Sends every partial sum held (one frame per attempt). */
  private flush(): void {
    this.flushTimer = null;
    for (const b of this.buckets.values())
      this.send(
        encodeFrame({
          t: 'partial',
          g: this.o.id,
          r: { round: b.round, attempt: b.attempt, members: b.members, sum: b.sum },
        }),
      );
    this.buckets.clear();
  }

  /** Answer `a` is no longer awaited. */
  private forget(a: number): Waiting | undefined {
    const w = this.waiting.get(a);
    if (!w) return undefined;
    this.waiting.delete(a);
    this.locals.get(w.c)?.pending.delete(a);
    return w;
  }

  private up(f: UpFrame): void {
    this.send(encodeFrame(f));
  }

  private send(frame: Buffer): void {
    this.o.redis
      .xadd(UP_STREAM, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'f', frame)
      .catch(() => this.o.metrics.internalErrors.inc({ where: 'send' }));
  }

  /**
   * Renews this gateway's key. Finding it gone after the first beat means it lapsed (a long pause, Redis
   * unreachable): the coordinator may have closed this gateway's connections as dead, and would place
   * their next messages as new, unidentified ones. The transports are dropped, as after a change of
   * coordinator: the clients reconnect and resume their sessions.
   */
  private async heartbeat(): Promise<void> {
    const before = await this.o.redis.set(gatewayKey(this.o.id), '1', 'PX', GATEWAY_TTL_MS, 'GET');
    const first = this.beats++ === 0;
    if (before !== null || first || this.stopped || this.locals.size === 0) return;
    this.dropAll(`gateway ${this.o.id}: its heartbeat lapsed; ${this.locals.size} client(s) reconnect`, {
      ok: false,
      reason: 'internal_error',
      message: 'the gateway lost touch with the coordinator: reconnect and resend',
    });
  }

  /** A new leader: drop every transport here, so that the clients come back to it. */
  private async watchFence(): Promise<void> {
    const fence = await this.o.redis.get(FENCE_KEY);
    if (fence === this.fence) return;
    const before = this.fence;
    this.fence = fence;
    if (before === undefined) return;
    this.dropAll(
      `gateway ${this.o.id}: coordinator changed (fence ${before ?? 'none'} -> ${fence}); ${this.locals.size} client(s) reconnect`,
      { ok: false, reason: 'internal_error', message: 'the coordinator changed: reconnect and resend' },
    );
  }

  /** Answers every pending message with `answer` and drops every transport here. */
  private dropAll(why: string, answer: Ack): void {
    this.o.log(why);
    for (const w of this.waiting.values()) {
      this.o.clock.clearTimeout(w.timer);
      w.resolve(answer);
    }
    this.waiting.clear();
    for (const l of this.locals.values()) l.pending.clear();
    for (const l of [...this.locals.values()]) l.drop();
  }

  private readLoop(): Promise<void> {
    const stream = downStream(this.o.id);
    return readStream({
      reader: this.o.reader,
      stream,
      from: '0',
      count: 512,
      stopped: () => this.stopped,
      onError: (e) => this.o.log(`gateway ${this.o.id}: reading its stream failed (${e.message}); retrying`),
      onEntry: async (b) => {
        const f = b ? decodeDown(b) : null;
        if (!f) this.o.metrics.internalErrors.inc({ where: 'message' });
        else if (f.t === 'send' && f.blob) await this.withBlob(f);
        else this.deliver(f);
      },
      // Entries handled are not needed again: trim what this gateway has read.
      afterBatch: (lastId) => void this.o.redis.xtrim(stream, 'MINID', lastId).catch(() => {}),
    });
  }

  /** A frame whose weights are a blob: fetched once per model (then cached), put back, delivered in order. */
  private async withBlob(f: Extract<DownFrame, { t: 'send' }>): Promise<void> {
    const hash = f.blob!.weights;
    let bytes = this.blobCache.get(hash);
    if (!bytes) {
      const b = await this.o.redis.getBuffer(blobKey(hash)).catch(() => null);
      if (!b) {
        this.o.metrics.internalErrors.inc({ where: 'send' });
        this.o.log(`gateway ${this.o.id}: blob ${hash.slice(0, 12)} missing; a ${f.e} was not delivered`);
        return;
      }
      bytes = b;
      this.blobCache.set(hash, bytes);
      // A model or two are live at once (the round in flight, a late re-send); keep the newest few.
      while (this.blobCache.size > 4) this.blobCache.delete(this.blobCache.keys().next().value!);
    }
    const [first, ...rest] = f.a as [Record<string, unknown>, ...unknown[]];
    this.deliver({ t: 'send', c: f.c, e: f.e, a: [{ ...first, weights: bytes }, ...rest] });
  }

  private deliver(f: DownFrame): void {
    if (f.t === 'ack') {
      const v = this.claimed.get(f.a);
      const accepted = f.claim && f.r.ok && !f.r.duplicate ? f.claim : null;
      if (v) {
        this.claimed.delete(f.a);
        this.o.clock.clearTimeout(v.timer);
        if (accepted) this.addToSum(accepted, v.ring);
      } else if (accepted) {
        // Accepted after this gateway stopped waiting and let the vector go: tell the coordinator, so
        // that the claim does not hold the phase open and a re-send counts.
        const { round, attempt, member } = accepted;
        this.send(encodeFrame({ t: 'void', g: this.o.id, r: { round, attempt, members: [member] } }));
      }
      // Answered already (timed out), its connection closed, or an answer for another connection.
      if (this.waiting.get(f.a)?.c !== f.c) return;
      const w = this.forget(f.a)!;
      this.o.clock.clearTimeout(w.timer);
      w.resolve(f.r);
      return;
    }
    const l = this.locals.get(f.c);
    if (!l) return; // the socket closed meanwhile
    (l.link.send as (e: string, ...a: unknown[]) => void)(f.e, ...f.a);
  }
}
