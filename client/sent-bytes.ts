import type { SocketLike } from './socket.ts';

const isBinary = (v: unknown): v is ArrayBuffer | ArrayBufferView =>
  v instanceof ArrayBuffer || ArrayBuffer.isView(v);

/**
 * About what one message puts on the wire: its binary parts as they are, the rest as JSON (socket.io
 * sends binaries as attachments after a JSON header). Framing overhead (a few bytes) is left out.
 */
export function messageBytes(payload: unknown): number {
  let binary = 0;
  const json =
    JSON.stringify(payload ?? null, (_k, v: unknown) => {
      if (!isBinary(v)) return v;
      binary += v.byteLength;
      return { _placeholder: true, num: 0 };
    }) ?? '';
  return new TextEncoder().encode(json).byteLength + binary;
}

/** One message sent: its event, the round it belongs to (null for hello/ready) and its size. */
export interface SentMessage {
  event: string;
  round: number | null;
  bytes: number;
}

/** The socket, with every message it sends reported to `note` first. */
export function countingSocket(s: SocketLike, note: (m: SentMessage) => void): SocketLike {
  const report = (event: string, payload: unknown): void => {
    const round = (payload as { round?: unknown } | null)?.round;
    note({ event, round: typeof round === 'number' ? round : null, bytes: messageBytes(payload) });
  };
  return {
    get connected() {
      return s.connected;
    },
    on: (event, fn) => s.on(event, fn),
    emit: (event, ...args) => {
      report(event, args[0]);
      return s.emit(event, ...args);
    },
    timeout: (ms) => {
      const t = s.timeout(ms);
      return {
        emitWithAck: (event, u) => {
          report(event, u);
          return t.emitWithAck(event, u);
        },
      };
    },
    disconnect: () => s.disconnect(),
  };
}
