import type { Redis } from 'ioredis';
import type { ServerStatus } from '../../shared/protocol/status.ts';
import type { Ack } from '../../shared/protocol/messages.ts';
import { ProtocolError } from '../../shared/base/errors.ts';
import type { ClientLink } from '../clients.ts';
import type { Clock, Timer } from '../clock.ts';
import type { Coordinator } from '../coordinator.ts';
import { dispatch, type Connection } from '../dispatch.ts';
import type { Metrics } from '../metrics.ts';
import { Outbox } from '../outbox.ts';
import { readStream } from './stream-reader.ts';
import { StatusPush } from '../status-push.ts';
import { createHash } from 'node:crypto';
import type { ServerToClientEvents } from '../../shared/protocol/messages.ts';
import {
  BLOB_MIN_BYTES,
  BLOB_TTL_MS,
  blobKey,
  decodeUp,
  downStream,
  encodeFrame,
  gatewayKey,
  STATUS_KEY,
  STREAM_MAXLEN,
  UP_STREAM,
  type ConnMeta,
  type DownFrame,
  type UpFrame,
} from './frames.ts';

export interface CoordinatorBusOptions {
  coordinator: Coordinator;
  metrics: Metrics;
  /** Commands (writes to the gateways' streams, heartbeat checks). */
  redis: Redis;
  /** A connection of its own for the blocking reads of UP_STREAM. */
  reader: Redis;
  /** Read UP_STREAM after this entry id: the last one before this coordinator took the lease. */
  fromId: string;
  clock: Clock;
  /** Sends one status to every observer on every gateway (socket.io's Redis streams adapter). */
  broadcastStatus: (s: ServerStatus) => void;
  log: (m: string) => void;
  /** How often gateways' heartbeats are checked. */
  checkGatewaysMs?: number;
}

interface Remote {
  gateway: string;
  conn: Connection;
  observe: boolean;
}

/** Entries read per XREAD: a batch is handled in one turn, then the loop is served. */
const READ_COUNT = 256;

/**
 * The coordinator's end of the cluster bus. Each client connection on a gateway becomes a Connection
 * whose link writes to that gateway's stream; each message is dispatched to the coordinator exactly as
 * in one process (server/dispatch.ts) and its answer goes back as an ack frame, in order with the
 * messages the handler sent. A gateway whose heartbeat lapses is dead: its connections close, and the
 * round counts their clients as dropouts (secure aggregation recovers them).
 *
 * Exactly once: Redis streams deliver each entry once to this one reader, in order; a message a client
 * re-sends (its ack lost with a dead gateway) arrives as a new entry and is recognised by the intake by
 * round, attempt, client and content (server/resend.ts), acked as a duplicate and changes nothing.
 */
export class CoordinatorBus {
  private readonly remotes = new Map<string, Remote>();
  /** Bytes already stored as blobs (a round's model), by identity: the model keeps one Buffer per version. */
  private readonly blobs = new WeakMap<Uint8Array, string>();
  private readonly byGateway = new Map<string, Set<string>>();
  private readonly outbox: Outbox;
  private readonly push: StatusPush;
  private stopped = false;
  private checker: Timer | null = null;
  private publisher: Timer | null = null;
  private lastPublished = '';

  constructor(private readonly o: CoordinatorBusOptions) {
    this.outbox = new Outbox({ onError: () => o.metrics.internalErrors.inc({ where: 'send' }) });
    this.push = new StatusPush({
      status: () => o.coordinator.status(),
      emit: o.broadcastStatus,
      clock: o.clock,
    });
    o.coordinator.on('changed', this.kick);
  }

  private readonly kick = (): void => this.push.kick();

  /** Starts reading; resolves once the read loop runs. */
  start(): void {
    void this.readLoop();
    const every = this.o.checkGatewaysMs ?? 1000;
    const check = (): void => {
      void this.checkGateways().finally(() => {
        if (!this.stopped) this.checker = this.o.clock.setTimeout(check, every);
      });
    };
    this.checker = this.o.clock.setTimeout(check, every);
    const publish = (): void => {
      void this.publishStatus().finally(() => {
        if (!this.stopped) this.publisher = this.o.clock.setTimeout(publish, 500);
      });
    };
    publish();
  }

  stop(): void {
    this.stopped = true;
    this.push.stop();
    this.o.coordinator.off('changed', this.kick);
    if (this.checker) this.o.clock.clearTimeout(this.checker);
    if (this.publisher) this.o.clock.clearTimeout(this.publisher);
  }

  /** Connections held, per gateway (for logs and tests). */
  connections(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [g, set] of this.byGateway) out[g] = set.size;
    return out;
  }

  private readLoop(): Promise<void> {
    return readStream({
      reader: this.o.reader,
      stream: UP_STREAM,
      from: this.o.fromId,
      count: READ_COUNT,
      stopped: () => this.stopped,
      onError: (e) => this.o.log(`bus: reading ${UP_STREAM} failed (${e.message}); retrying`),
      onEntry: (f) => {
        const frame = f ? decodeUp(f) : null;
        if (!frame) return void this.o.metrics.internalErrors.inc({ where: 'message' });
        try {
          this.handle(frame);
        } catch (e) {
          this.o.metrics.internalErrors.inc({ where: 'message' });
          this.o.log(`bus: frame ${frame.t} failed: ${(e as Error).message}`);
        }
      },
      // One batch per turn: timers (deadlines) and the outbox run between batches.
      afterBatch: () => new Promise((r) => setImmediate(r)),
    });
  }

  private handle(f: UpFrame): void {
    if (f.t === 'void') {
      const n = this.o.coordinator.releaseClaims(f.g, f.r, f.r.members);
      if (n) this.o.log(`bus: gateway ${f.g} let ${n} claimed input(s) go before their answer came; void`);
      return;
    }
    if (f.t === 'partial') {
      try {
        this.o.coordinator.partialSum(f.g, f.r);
      } catch (e) {
        // A sum the coordinator cannot take (a late attempt, a claim voided when the gateway was
        // thought dead): its members count as dropouts. Counted and logged, never thrown further.
        this.o.metrics.updatesRejected.inc({
          reason: (e as ProtocolError).reason ?? 'internal_error',
          event: 'update',
        });
        this.o.log(
          `bus: partial sum of ${f.r.members.length} from gateway ${f.g} refused: ${(e as Error).message}`,
        );
      }
      this.push.kick();
      return;
    }
    const key = `${f.g}\u0000${f.c}`;
    if (f.t === 'close') {
      const r = this.remotes.get(key);
      if (r) this.closeRemote(key, r);
      return;
    }
    const r = this.remotes.get(key) ?? this.open(key, f.g, f.c, f.m);
    if (f.t === 'open') return;
    if (f.t === 'claim') {
      let res: Ack;
      let member: number | undefined;
      try {
        ({ ack: res, member } = this.o.coordinator.claimUpdate(r.conn.clientId, f.r, f.g));
      } catch (e) {
        if (!(e instanceof ProtocolError)) this.o.metrics.internalErrors.inc({ where: 'message' });
        const reason = e instanceof ProtocolError ? e.reason : 'internal_error';
        res = { ok: false, reason, message: (e as Error).message };
      }
      const claim = member !== undefined ? { round: f.r.round, attempt: f.r.attempt, member } : undefined;
      this.send(f.g, { t: 'ack', c: f.c, a: f.a, r: res, ...(claim ? { claim } : {}) });
      this.push.kick();
      return;
    }
    const res = dispatch(this.o.coordinator, this.o.metrics, r.conn, f.e, f.r);
    this.send(f.g, { t: 'ack', c: f.c, a: f.a, r: res });
    this.push.kick();
  }

  private open(key: string, gateway: string, c: string, m: ConnMeta): Remote {
    const link: ClientLink = {
      send: (event, ...args) => this.send(gateway, this.sendFrame(c, event, args)),
    };
    const r: Remote = {
      gateway,
      conn: { clientId: null, link, resumes: m.resumes, observerOnly: m.observerOnly },
      observe: m.observe,
    };
    this.remotes.set(key, r);
    let set = this.byGateway.get(gateway);
    if (!set) {
      set = new Set();
      this.byGateway.set(gateway, set);
      this.o.log(`bus: gateway ${gateway} joined`);
    }
    set.add(key);
    if (m.observe) {
      this.push.observerJoined();
      link.send('status', this.push.current());
    }
    this.push.kick();
    return r;
  }

  private closeRemote(key: string, r: Remote): void {
    this.remotes.delete(key);
    this.byGateway.get(r.gateway)?.delete(key);
    if (r.observe) this.push.observerLeft();
    this.o.coordinator.disconnect(r.conn.link);
    this.push.kick();
  }

  /**
   * A message to one client as a frame. A round's model (round:start's weights, the same bytes for every
   * member) is stored in Redis once and named by its hash: each gateway fetches it once, and Redis carries
   * the model once per round instead of once per client.
   */
  private sendFrame(c: string, event: keyof ServerToClientEvents, args: unknown[]): DownFrame {
    const first = args[0] as { weights?: unknown } | undefined;
    const w = first?.weights;
    if (event !== 'round:start' || !(w instanceof Uint8Array) || w.byteLength < BLOB_MIN_BYTES)
      return { t: 'send', c, e: event, a: args };
    const { weights: _, ...rest } = first as Record<string, unknown>;
    return { t: 'send', c, e: event, a: [rest, ...args.slice(1)], blob: { weights: this.blob(w) } };
  }

  /** The hash `bytes` are stored under (written the first time this Uint8Array is sent: before any frame naming it). */
  private blob(bytes: Uint8Array): string {
    let h = this.blobs.get(bytes);
    if (h) return h;
    h = createHash('sha256').update(bytes).digest('hex');
    this.blobs.set(bytes, h);
    this.o.redis
      .set(blobKey(h), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'PX', BLOB_TTL_MS)
      .catch(() => this.o.metrics.internalErrors.inc({ where: 'send' }));
    return h;
  }

  /** Frames keep their order per gateway: one FIFO, sent in slices so a phase closing for thousands does not stall the loop. */
  private send(gateway: string, f: DownFrame): void {
    this.outbox.push(() => {
      this.o.redis
        .xadd(downStream(gateway), 'MAXLEN', '~', STREAM_MAXLEN, '*', 'f', encodeFrame(f))
        .catch(() => this.o.metrics.internalErrors.inc({ where: 'send' }));
    });
  }

  /** A gateway whose heartbeat key has expired is gone: its connections close (dropouts), its stream is deleted. */
  private async checkGateways(): Promise<void> {
    const gateways = [...this.byGateway.keys()];
    if (gateways.length === 0) return;
    let alive: number[];
    try {
      alive = await Promise.all(gateways.map((g) => this.o.redis.exists(gatewayKey(g))));
    } catch {
      return; // Redis unreachable: nothing is concluded from silence we cannot check
    }
    gateways.forEach((g, i) => {
      if (alive[i]) return;
      const set = this.byGateway.get(g) ?? new Set<string>();
      const voided = this.o.coordinator.gatewayLost(g);
      this.o.log(
        `bus: gateway ${g} stopped answering; its ${set.size} connection(s) are closed` +
          (voided ? `, ${voided} unsummed input(s) void` : ''),
      );
      for (const key of [...set]) {
        const r = this.remotes.get(key);
        if (r) this.closeRemote(key, r);
      }
      this.byGateway.delete(g);
      void this.o.redis.del(downStream(g)).catch(() => {});
    });
  }

  /** The status every gateway serves on /api/status and /health, and sends a new observer first. */
  private async publishStatus(): Promise<void> {
    const json = JSON.stringify(this.o.coordinator.status());
    if (json === this.lastPublished) return;
    try {
      await this.o.redis.set(STATUS_KEY, json);
      this.lastPublished = json;
    } catch {
      // retried on the next tick
    }
  }
}
