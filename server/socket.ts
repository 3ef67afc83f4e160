import type { Server as HttpServer } from 'node:http';
import type { Http2SecureServer, Http2Server } from 'node:http2';
import { Server } from 'socket.io';
import type { Ack, ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/messages.ts';
import { ProtocolError, type RejectReason } from '../shared/base/errors.ts';
import type { ClientLink, Coordinator } from './coordinator.ts';
import type { Metrics } from './metrics.ts';

const KNOWN_EVENTS = new Set([
  'hello',
  'ready',
  'update',
  'secagg:keys',
  'secagg:shares',
  'secagg:reveal',
  'secagg:refuse',
]);

function byteSize(data: unknown): number {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/**
 * Wires socket.io to the coordinator. Every message is validated by the coordinator; a bad one is
 * answered with `rejected` (and the ack, if any), counted by reason, and never disturbs other clients.
 */
export function attachSocketIo(
  http: HttpServer | Http2Server | Http2SecureServer,
  coordinator: Coordinator,
  metrics: Metrics,
  maxMessageBytes: number,
): Server<ClientToServerEvents, ServerToClientEvents> {
  const io = new Server<ClientToServerEvents, ServerToClientEvents>(http as HttpServer, {
    maxHttpBufferSize: maxMessageBytes,
    cors: { origin: '*' },
    pingInterval: 10_000,
    pingTimeout: 20_000,
  });

  io.on('connection', (socket) => {
    let clientId: string | null = null;
    const link: ClientLink = { send: (event, ...args) => socket.emit(event, ...args) };
    socket.conn.on('packet', (p: { data?: unknown }) => metrics.bytesIn.inc(byteSize(p.data)));
    socket.conn.on('packetCreate', (p: { data?: unknown }) => metrics.bytesOut.inc(byteSize(p.data)));

    const reject = (event: string, e: unknown): Ack => {
      const reason: RejectReason = e instanceof ProtocolError ? e.reason : 'malformed';
      const message = e instanceof Error ? e.message : String(e);
      metrics.updatesRejected.inc({ reason, event });
      socket.emit('rejected', { event, reason, message });
      return { ok: false, reason, message };
    };

    socket.on('hello', (raw) => {
      try {
        clientId = coordinator.hello(link, raw);
      } catch (e) {
        reject('hello', e);
      }
    });
    socket.on('ready', (raw) => {
      try {
        coordinator.ready(clientId, raw);
      } catch (e) {
        reject('ready', e);
      }
    });
    socket.on('update', (raw, ack) => {
      let res: Ack;
      try {
        res = coordinator.update(clientId, raw);
      } catch (e) {
        res = reject('update', e);
      }
      if (typeof ack === 'function') ack(res);
    });
    for (const kind of ['keys', 'shares', 'reveal'] as const) {
      socket.on(`secagg:${kind}`, (raw: unknown, ack?: (a: Ack) => void) => {
        let res: Ack;
        try {
          res = coordinator.secagg(kind, clientId, raw);
        } catch (e) {
          res = reject(`secagg:${kind}`, e);
        }
        if (typeof ack === 'function') ack(res);
      });
    }
    socket.on('secagg:refuse', (raw) => coordinator.secaggRefuse(clientId, raw));
    socket.onAny((event: string) => {
      if (!KNOWN_EVENTS.has(event))
        reject(
          String(event).slice(0, 40),
          new ProtocolError('malformed', `unknown event "${String(event).slice(0, 40)}"`),
        );
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
      if (clientId) coordinator.disconnect(clientId, link);
    });
  });
  return io;
}
