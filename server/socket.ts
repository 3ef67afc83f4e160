import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Http2SecureServer, Http2Server } from 'node:http2';
import { Server, type ServerOptions, type Socket } from 'socket.io';
import type { Ack, ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/messages.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { clientAddress, type TrustedProxy } from './address.ts';
import type { ClientLink } from './clients.ts';
import { systemClock, type Clock } from './clock.ts';
import { Coordinator } from './coordinator.ts';
import {
  CLIENT_EVENTS,
  closesAfter,
  dispatch,
  isClientEvent,
  type Connection,
  type ConnectionMeta,
} from './dispatch.ts';
import { KeyedLimiter, TokenBucket, type Rate } from './limits.ts';
import type { Metrics } from './metrics.ts';
import type { ClientEvent, EventLabel } from './reject-events.ts';
import { boundedParser, PendingAttachments } from './socket-parser.ts';
import { admit, type HandshakePolicy } from './handshake.ts';
import type { JoinTokenPayload } from './join-token.ts';
import { STATUS_ROOM, StatusPush } from './status-push.ts';
import { Outbox } from './outbox.ts';

export type { EventLabel };
export const EVENT_LABELS: readonly EventLabel[] = [...CLIENT_EVENTS, 'unknown', 'transport', 'connect'];

/** One connection as the backend sees it. */
export interface BackendConnection {
  /** The answer to one client message: at once (this process) or when the coordinator replies (a gateway). */
  message(event: ClientEvent, raw: unknown): Ack | Promise<Ack>;
  /** The socket closed. */
  close(): void;
}

/** The status observers see, and when it may have changed. */
export interface StatusFeed {
  /** The status a new observer is sent first. */
  current(): ServerStatus | Promise<ServerStatus | null>;
  observerJoined(): void;
  observerLeft(): void;
  /** Something may have changed (a message, a connection). */
  kick(): void;
  stop(): void;
}

/**
 * What the sockets talk to: the coordinator in this process (role all: localBackend), or the cluster's
 * coordinator over Redis (role gateway: server/cluster/gateway-bus.ts). The transport's defences (rate
 * limits, bounded parser, handshake) are the same either way.
 */
export interface SocketBackend {
  /** The session valid resume credentials name, or null (the handshake lets such a reconnect in). */
  sessionOf(credentials: unknown): string | null;
  /**
   * A socket was let in. `link` sends to it (through the outbox, in order); `drop` closes its transport
   * without a disconnect packet, so the client reconnects.
   */
  connect(meta: ConnectionMeta & { observe: boolean }, link: ClientLink, drop: () => void): BackendConnection;
  /** Status for this process's observers; `emit` sends to all of them. */
  statusFeed(emit: (s: ServerStatus) => void, clock: Clock): StatusFeed;
}

/** The coordinator in this process: every message is dispatched at once. */
export function localBackend(coordinator: Coordinator, metrics: Metrics): SocketBackend {
  return {
    sessionOf: (c) => coordinator.sessionOf(c),
    connect(meta, link) {
      const conn: Connection = {
        clientId: null,
        link,
        resumes: meta.resumes,
        observerOnly: meta.observerOnly,
      };
      return {
        message: (event, raw) => dispatch(coordinator, metrics, conn, event, raw),
        close: () => coordinator.disconnect(link),
      };
    },
    statusFeed(emit, clock) {
      const push = new StatusPush({ status: () => coordinator.status(), emit, clock });
      const kick = (): void => push.kick();
      coordinator.on('changed', kick);
      return {
        current: () => push.current(),
        observerJoined: () => push.observerJoined(),
        observerLeft: () => push.observerLeft(),
        kick,
        stop: () => {
          push.stop();
          coordinator.off('changed', kick);
        },
      };
    },
  };
}

export interface SocketLimits {
  /** Messages per socket. */
  socket: Rate;
  /** New connections per client address. */
  address: Rate;
  trustedProxy: TrustedProxy;
  /** Distinct addresses tracked at once (least recently seen dropped first). */
  maxAddresses?: number;
  clock?: Clock;
}

/** Who may connect (server/handshake.ts): an Origin allow-list and join tokens; both off by default. */
export type SocketAccess = Pick<HandshakePolicy, 'allowedOrigins' | 'tokens'> & {
  /**
   * Spends a join token where every gateway sees it (Redis SET NX): false if another gateway already
   * admitted it. Each process's verifier remembers only its own, so without this a token would be
   * single-use per gateway.
   */
  spendToken?: (token: JoinTokenPayload) => Promise<boolean>;
};
const OPEN: SocketAccess = { allowedOrigins: null, tokens: null };

function byteSize(data: unknown): number {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/**
 * Wires socket.io to the coordinator. Every message is validated by the coordinator; a bad one is
 * answered with `rejected` (and the ack, if any), counted by reason, and never disturbs other clients.
 * Connections are rate-limited per client address, messages per socket; what goes over is counted and
 * dropped, and the sender told once per burst.
 */
export function attachSocketIo(
  http: HttpServer | Http2Server | Http2SecureServer,
  coordinatorOrBackend: Coordinator | SocketBackend,
  metrics: Metrics,
  maxMessageBytes: number,
  limits: SocketLimits,
  access: SocketAccess = OPEN,
  /** socket.io's adapter (a gateway: the Redis streams adapter, so that the coordinator's status broadcast reaches its observers). */
  adapter?: ServerOptions['adapter'],
): Server<ClientToServerEvents, ServerToClientEvents> {
  const backend =
    coordinatorOrBackend instanceof Coordinator
      ? localBackend(coordinatorOrBackend, metrics)
      : coordinatorOrBackend;
  const clock = limits.clock ?? systemClock;
  const perAddress = new KeyedLimiter(limits.address, clock, limits.maxAddresses);
  const io = new Server<ClientToServerEvents, ServerToClientEvents>(http as HttpServer, {
    maxHttpBufferSize: maxMessageBytes,
    parser: boundedParser,
    ...(adapter ? { adapter } : {}),
    // Long-polling only (the client uses websockets, which CORS does not govern; the handshake checks Origin).
    cors: { origin: access.allowedOrigins ? [...access.allowedOrigins] : '*' },
    // socket.io's defaults. Every ping is a timer, a frame each way and garbage on the main thread: at
    // 10 000 connections a 10 s interval is 1 000 round trips a second. Clients that close say so at
    // once; these only find silent losses (45 s at worst), and phase deadlines bound the round anyway.
    pingInterval: 25_000,
    pingTimeout: 20_000,
    // Called for new connections only (engine.io handshakes), before any per-connection state exists.
    allowRequest: (req: IncomingMessage, cb: (err: string | null | undefined, ok: boolean) => void) => {
      const addr = clientAddress(
        req.socket.remoteAddress,
        req.headers['x-forwarded-for'],
        limits.trustedProxy,
      );
      if (perAddress.take(addr)) return cb(null, true);
      metrics.updatesRejected.inc({ reason: 'rate_limited', event: 'connect' });
      cb('rate_limited', false);
    },
  });
  const policy: HandshakePolicy = {
    ...access,
    sessionOf: (c) => backend.sessionOf(c),
    now: () => clock.now(),
  };
  // Runs once per connection, before 'connection': a refusal reaches the client as connect_error with
  // data { reason, message }, and socket.io does not retry it.
  io.use((socket, next) => {
    const h = socket.handshake;
    const a = admit({ origin: h.headers.origin, host: h.headers.host, auth: h.auth }, policy, metrics);
    const refuse = (reason: string, message: string): void =>
      next(Object.assign(new Error(message), { data: { reason, message } }));
    if (!a.ok) return refuse(a.reason, a.message);
    const admitted = (): void => {
      Object.assign(socket.data as object, { resumes: a.resumes, observerOnly: a.observerOnly });
      next();
    };
    if (!a.token || !access.spendToken) return admitted();
    access.spendToken(a.token).then(
      (fresh) => {
        if (fresh) return admitted();
        metrics.joinTokensRefused.inc({ problem: 'replayed' });
        metrics.updatesRejected.inc({ reason: 'bad_token', event: 'connect' });
        refuse('bad_token', 'the join token was already used: reload the page');
      },
      () => {
        metrics.updatesRejected.inc({ reason: 'server_full', event: 'connect' });
        refuse('server_full', 'cannot check the join token right now: try again later');
      },
    );
  });
  // Status is pushed to observers when the round state changes, and after any message or connection
  // change (reports, secure-aggregation phases, client counts), coalesced.
  const push = backend.statusFeed((s) => io.to(STATUS_ROOM).emit('status', s), clock);
  const kick = (): void => push.kick();
  http.once('close', () => push.stop());
  // One FIFO for every message to clients, sent in slices (outbox.ts): a phase closing for thousands of
  // clients must not write all their sockets in one turn of the event loop.
  const outbox = new Outbox({ onError: () => metrics.internalErrors.inc({ where: 'send' }) });
  io.on('connection', (socket) => {
    if ((socket.handshake.auth as { observe?: unknown } | undefined)?.observe === true) {
      void socket.join(STATUS_ROOM);
      push.observerJoined();
      void Promise.resolve(push.current()).then((s) => s && socket.emit('status', s));
      socket.on('disconnect', () => push.observerLeft());
    }
    socket.on('disconnect', kick);
    socket.onAny(kick);
    kick();
    serve(socket, backend, metrics, new TokenBucket(limits.socket, clock), maxMessageBytes, outbox);
  });
  return io;
}

function serve(
  socket: Socket<ClientToServerEvents, ServerToClientEvents>,
  backend: SocketBackend,
  metrics: Metrics,
  bucket: TokenBucket,
  maxMessageBytes: number,
  outbox: Outbox,
): void {
  const meta = {
    resumes: (socket.data as { resumes?: string | null }).resumes ?? null,
    observerOnly: (socket.data as { observerOnly?: boolean }).observerOnly === true,
    observe: (socket.handshake.auth as { observe?: unknown } | undefined)?.observe === true,
  };
  const link: ClientLink = { send: (event, ...args) => outbox.push(() => socket.emit(event, ...args)) };
  // Closing the engine transport (no disconnect packet): the client takes it as a lost connection and
  // comes back, e.g. to another gateway or a new coordinator.
  const conn = backend.connect(meta, link, () => socket.conn.close());
  const pending = new PendingAttachments(maxMessageBytes);
  socket.conn.on('packet', (p: { type?: string; data?: unknown }) => {
    metrics.bytesIn.inc(byteSize(p.data));
    if (p.type === 'message' && !pending.add(p.data)) {
      metrics.updatesRejected.inc({ reason: 'too_large', event: 'transport' });
      socket.disconnect(true);
    }
  });
  socket.conn.on('packetCreate', (p: { data?: unknown }) => metrics.bytesOut.inc(byteSize(p.data)));

  /** A refusal: counted by reason, told to the sender as `rejected` (after anything queued before it). */
  const refused = (event: EventLabel, name: string, res: Extract<Ack, { ok: false }>): void => {
    metrics.updatesRejected.inc({ reason: res.reason, event });
    outbox.push(() => socket.emit('rejected', { event: name, reason: res.reason, message: res.message }));
  };

  /** Spends one of the socket's tokens; over the limit, the answer for a dropped message (told once per burst). */
  let limited = false;
  const overLimit = (event: EventLabel): Ack | null => {
    if (bucket.take()) {
      limited = false;
      return null;
    }
    const message = 'too many messages: slow down';
    metrics.updatesRejected.inc({ reason: 'rate_limited', event });
    if (!limited) outbox.push(() => socket.emit('rejected', { event, reason: 'rate_limited', message }));
    limited = true;
    return { ok: false, reason: 'rate_limited', message };
  };

  /** The backend's answer: the ack (if the client asked for one) and `rejected` on failure. */
  const answer = (event: ClientEvent, res: Ack, ack: unknown): void => {
    if (!res.ok) refused(event, event, res);
    // Through the outbox too: the ack follows what the handler sent before it (a welcome before the hello's ack).
    if (typeof ack === 'function') outbox.push(() => (ack as (r: Ack) => void)(res));
    if (closesAfter(event, res, meta)) outbox.push(() => socket.disconnect(true)); // after its `rejected`
  };

  // Every event goes through this one wrapper; no exception leaves it.
  for (const event of CLIENT_EVENTS) {
    (socket.on as (e: string, l: (raw: unknown, ack?: unknown) => void) => void)(event, (raw, ack) => {
      const limit = overLimit(event);
      if (limit) {
        if (typeof ack === 'function') ack(limit);
        return;
      }
      let res: Ack | Promise<Ack>;
      try {
        res = conn.message(event, raw);
      } catch (e) {
        metrics.internalErrors.inc({ where: 'message' });
        res = { ok: false, reason: 'internal_error', message: (e as Error)?.message ?? String(e) };
      }
      if (res instanceof Promise)
        res.then(
          (r) => answer(event, r, ack),
          (e: unknown) => {
            metrics.internalErrors.inc({ where: 'message' });
            answer(event, { ok: false, reason: 'internal_error', message: String(e) }, ack);
          },
        );
      else answer(event, res, ack);
    });
  }

  socket.onAny((event: unknown) => {
    if (isClientEvent(event) || overLimit('unknown')) return;
    // The name goes back to its sender only; labels and logs see 'unknown'.
    const name = String(event).slice(0, 40);
    refused('unknown', name, { ok: false, reason: 'malformed', message: `unknown event "${name}"` });
  });
  socket.on('disconnect', (_reason, desc) => {
    // engine.io closes the transport on a message over maxHttpBufferSize; count it as what it is.
    const msg = String(
      (desc as { message?: string } | undefined)?.message ??
        (desc as { description?: { message?: string } } | undefined)?.description?.message ??
        '',
    );
    if (/payload|too large|max.*size/i.test(msg))
      metrics.updatesRejected.inc({ reason: 'too_large', event: 'transport' });
    conn.close();
  });
}
