import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Http2SecureServer, Http2Server } from 'node:http2';
import { Server, type Socket } from 'socket.io';
import type { Ack, ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/messages.ts';
import { ProtocolError, type RejectReason } from '../shared/base/errors.ts';
import { clientAddress, type TrustedProxy } from './address.ts';
import type { ClientLink } from './clients.ts';
import { systemClock, type Clock } from './clock.ts';
import type { Coordinator } from './coordinator.ts';
import { KeyedLimiter, TokenBucket, type Rate } from './limits.ts';
import type { Metrics } from './metrics.ts';
import type { ClientEvent, EventLabel } from './reject-events.ts';
import { boundedParser, PendingAttachments } from './socket-parser.ts';
import { admit, type HandshakePolicy } from './handshake.ts';
import { STATUS_ROOM, StatusPush } from './status-push.ts';
import { Outbox } from './outbox.ts';

/** What one connection knows about itself. */
interface Connection {
  clientId: string | null;
  readonly link: ClientLink;
  /** Let in without a join token to resume this session (a reconnect): its hello must resume it. */
  readonly resumes: string | null;
  /** Let in without a join token to watch the status: it may not say hello. */
  readonly observerOnly: boolean;
}

type Handler = (coordinator: Coordinator, conn: Connection, raw: unknown) => Ack | void;

/**
 * One handler per client event. The mapped type makes this table the event map's own list: an event
 * added to ClientToServerEvents without a handler here does not compile.
 */
const HANDLERS: { [E in keyof ClientToServerEvents]: Handler } = {
  hello: (c, conn, raw) => {
    if (conn.observerOnly)
      throw new ProtocolError(
        'bad_token',
        'this connection was let in to observe; joining needs a join token',
      );
    if (conn.resumes !== null && resumedId(raw) !== conn.resumes)
      throw new ProtocolError(
        'bad_token',
        'this connection was let in to resume its session; a new session needs a new join token',
      );
    conn.clientId = c.hello(conn.link, raw);
  },
  ready: (c, conn, raw) => c.ready(conn.clientId, raw),
  update: (c, conn, raw) => c.update(conn.clientId, raw),
  'secagg:keys': (c, conn, raw) => c.secagg('keys', conn.clientId, raw),
  'secagg:shares': (c, conn, raw) => c.secagg('shares', conn.clientId, raw),
  'secagg:signature': (c, conn, raw) => c.secagg('signature', conn.clientId, raw),
  'secagg:reveal': (c, conn, raw) => c.secagg('reveal', conn.clientId, raw),
  'secagg:refuse': (c, conn, raw) => c.secaggRefuse(conn.clientId, raw),
  'round:refuse': (c, conn, raw) => c.roundRefuse(conn.clientId, raw),
};

/** The session id a hello asks to resume, if any (the registry checks the rest). */
function resumedId(raw: unknown): string | undefined {
  const r = (raw as { resume?: { sessionId?: unknown } } | null)?.resume?.sessionId;
  return typeof r === 'string' ? r : undefined;
}

export type { EventLabel };
export const EVENT_LABELS: readonly EventLabel[] = [
  ...(Object.keys(HANDLERS) as ClientEvent[]),
  'unknown',
  'transport',
  'connect',
];
const KNOWN_EVENTS: ReadonlySet<string> = new Set(Object.keys(HANDLERS));

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
export type SocketAccess = Pick<HandshakePolicy, 'allowedOrigins' | 'tokens'>;
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
  coordinator: Coordinator,
  metrics: Metrics,
  maxMessageBytes: number,
  limits: SocketLimits,
  access: SocketAccess = OPEN,
): Server<ClientToServerEvents, ServerToClientEvents> {
  const clock = limits.clock ?? systemClock;
  const perAddress = new KeyedLimiter(limits.address, clock, limits.maxAddresses);
  const io = new Server<ClientToServerEvents, ServerToClientEvents>(http as HttpServer, {
    maxHttpBufferSize: maxMessageBytes,
    parser: boundedParser,
    // Long-polling only (the client uses websockets, which CORS does not govern; the handshake checks Origin).
    cors: { origin: access.allowedOrigins ? [...access.allowedOrigins] : '*' },
    pingInterval: 10_000,
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
    sessionOf: (c) => coordinator.sessionOf(c),
    now: () => clock.now(),
  };
  // Runs once per connection, before 'connection': a refusal reaches the client as connect_error with
  // data { reason, message }, and socket.io does not retry it.
  io.use((socket, next) => {
    const h = socket.handshake;
    const a = admit({ origin: h.headers.origin, host: h.headers.host, auth: h.auth }, policy, metrics);
    if (a.ok) {
      Object.assign(socket.data as object, { resumes: a.resumes, observerOnly: a.observerOnly });
      return next();
    }
    next(Object.assign(new Error(a.message), { data: { reason: a.reason, message: a.message } }));
  });
  // Status is pushed to observers when the round state changes, and after any message or connection
  // change (reports, secure-aggregation phases, client counts), coalesced.
  const push = new StatusPush({
    status: () => coordinator.status(),
    emit: (s) => io.to(STATUS_ROOM).emit('status', s),
    clock,
  });
  const kick = (): void => push.kick();
  coordinator.on('changed', kick);
  http.once('close', () => {
    push.stop();
    coordinator.off('changed', kick);
  });
  // One FIFO for every message to clients, sent in slices (outbox.ts): a phase closing for thousands of
  // clients must not write all their sockets in one turn of the event loop.
  const outbox = new Outbox({ onError: () => metrics.internalErrors.inc({ where: 'send' }) });
  io.on('connection', (socket) => {
    if ((socket.handshake.auth as { observe?: unknown } | undefined)?.observe === true) {
      void socket.join(STATUS_ROOM);
      push.observerJoined();
      socket.emit('status', push.current());
      socket.on('disconnect', () => push.observerLeft());
    }
    socket.on('disconnect', kick);
    socket.onAny(kick);
    kick();
    serve(socket, coordinator, metrics, new TokenBucket(limits.socket, clock), maxMessageBytes, outbox);
  });
  return io;
}

function serve(
  socket: Socket<ClientToServerEvents, ServerToClientEvents>,
  coordinator: Coordinator,
  metrics: Metrics,
  bucket: TokenBucket,
  maxMessageBytes: number,
  outbox: Outbox,
): void {
  const conn: Connection = {
    clientId: null,
    link: { send: (event, ...args) => outbox.push(() => socket.emit(event, ...args)) },
    resumes: (socket.data as { resumes?: string | null }).resumes ?? null,
    observerOnly: (socket.data as { observerOnly?: boolean }).observerOnly === true,
  };
  const pending = new PendingAttachments(maxMessageBytes);
  socket.conn.on('packet', (p: { type?: string; data?: unknown }) => {
    metrics.bytesIn.inc(byteSize(p.data));
    if (p.type === 'message' && !pending.add(p.data)) {
      metrics.updatesRejected.inc({ reason: 'too_large', event: 'transport' });
      socket.disconnect(true);
    }
  });
  socket.conn.on('packetCreate', (p: { data?: unknown }) => metrics.bytesOut.inc(byteSize(p.data)));

  const reject = (event: EventLabel, name: string, e: unknown): Ack => {
    if (!(e instanceof ProtocolError)) metrics.internalErrors.inc({ where: 'message' });
    const reason: RejectReason = e instanceof ProtocolError ? e.reason : 'internal_error';
    const message = e instanceof Error ? e.message : String(e);
    metrics.updatesRejected.inc({ reason, event });
    outbox.push(() => socket.emit('rejected', { event: name, reason, message }));
    return { ok: false, reason, message };
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

  // Every event goes through this one wrapper: the answer is the ack (if the client asked for one) and a
  // `rejected` event on failure; no exception leaves it.
  const on = (event: ClientEvent, handler: Handler): void => {
    (socket.on as (e: string, l: (raw: unknown, ack?: unknown) => void) => void)(event, (raw, ack) => {
      let res: Ack | null = overLimit(event);
      if (!res) {
        try {
          res = handler(coordinator, conn, raw) ?? { ok: true };
        } catch (e) {
          res = reject(event, event, e);
        }
      }
      if (typeof ack === 'function') ack(res);
      // A reconnect whose session is gone has no token for a new one: close, rather than hear it hello again.
      if (
        event === 'hello' &&
        !res.ok &&
        res.reason === 'bad_token' &&
        (conn.resumes !== null || conn.observerOnly)
      )
        outbox.push(() => socket.disconnect(true)); // after the `rejected` queued before it
    });
  };
  for (const [event, handler] of Object.entries(HANDLERS)) on(event as ClientEvent, handler);

  socket.onAny((event: unknown) => {
    if (KNOWN_EVENTS.has(event as string) || overLimit('unknown')) return;
    // The name goes back to its sender only; labels and logs see 'unknown'.
    const name = String(event).slice(0, 40);
    reject('unknown', name, new ProtocolError('malformed', `unknown event "${name}"`));
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
    coordinator.disconnect(conn.link);
  });
}
