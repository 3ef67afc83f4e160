import type { Ack, ClientToServerEvents } from '../shared/protocol/messages.ts';
import { ProtocolError, type RejectReason } from '../shared/base/errors.ts';
import type { ClientLink } from './clients.ts';
import type { Coordinator } from './coordinator.ts';
import type { Metrics } from './metrics.ts';
import type { ClientEvent } from './reject-events.ts';

/**
 * What the coordinator knows about one connection, wherever its socket lives (this process, or a gateway
 * of the cluster: server/cluster/).
 */
export interface Connection {
  clientId: string | null;
  readonly link: ClientLink;
  /** Let in without a join token to resume this session (a reconnect): its hello must resume it. */
  readonly resumes: string | null;
  /** Let in without a join token to watch the status: it may not say hello. */
  readonly observerOnly: boolean;
}

/** How a connection was let in (server/handshake.ts), as its socket's owner tells the coordinator. */
export type ConnectionMeta = Pick<Connection, 'resumes' | 'observerOnly'>;

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

/** The client events, in the table's order. */
export const CLIENT_EVENTS = Object.keys(HANDLERS) as ClientEvent[];
const KNOWN: ReadonlySet<string> = new Set(CLIENT_EVENTS);

export function isClientEvent(e: unknown): e is ClientEvent {
  return typeof e === 'string' && KNOWN.has(e);
}

/** The session id a hello asks to resume, if any (the registry checks the rest). */
function resumedId(raw: unknown): string | undefined {
  const r = (raw as { resume?: { sessionId?: unknown } } | null)?.resume?.sessionId;
  return typeof r === 'string' ? r : undefined;
}

/**
 * Runs one client message through the coordinator and returns the answer; never throws. A ProtocolError
 * is the client's fault (its reason goes back); anything else is ours, counted as an internal error.
 */
export function dispatch(
  coordinator: Coordinator,
  metrics: Metrics,
  conn: Connection,
  event: ClientEvent,
  raw: unknown,
): Ack {
  try {
    return HANDLERS[event](coordinator, conn, raw) ?? { ok: true };
  } catch (e) {
    if (!(e instanceof ProtocolError)) metrics.internalErrors.inc({ where: 'message' });
    const reason: RejectReason = e instanceof ProtocolError ? e.reason : 'internal_error';
    return { ok: false, reason, message: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * A refused hello on a connection let in only to resume or observe: the socket is closed rather than
 * heard saying hello again (it has no join token for a new session).
 */
export function closesAfter(event: ClientEvent, res: Ack, conn: ConnectionMeta): boolean {
  return (
    event === 'hello' && !res.ok && res.reason === 'bad_token' && (conn.resumes !== null || conn.observerOnly)
  );
}
