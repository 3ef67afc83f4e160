import { io, type Socket } from 'socket.io-client';
import type { Ack, ClientToServerEvents, ServerToClientEvents, Update } from '../shared/protocol/messages.ts';

/** What the client hears: the server's events and socket.io's own connect/disconnect. */
export type ClientListenEvents = ServerToClientEvents & {
  connect: () => void;
  disconnect: (reason: string) => void;
  /** The handshake failed; a refusal by the server carries data { reason, message } (not retried). */
  connect_error: (err: Error & { data?: unknown }) => void;
};

/** What the client offers at the handshake: its join token and, on a reconnect, the session it holds. */
export interface HandshakeAuth {
  token: string;
  session?: { sessionId: string; resumeToken: string };
}

/** The part of a socket.io client socket the client uses: the seam through which tests drive it. */
export interface SocketLike {
  readonly connected: boolean;
  on<E extends keyof ClientListenEvents>(event: E, fn: ClientListenEvents[E]): unknown;
  emit<E extends keyof ClientToServerEvents>(event: E, ...args: Parameters<ClientToServerEvents[E]>): unknown;
  /** An emit whose promise settles with the server's answer, or rejects after ms. */
  timeout(ms: number): { emitWithAck(event: 'update', u: Update): Promise<Ack> };
  disconnect(): unknown;
}

export interface ConnectOptions {
  path?: string;
  transports: ['websocket'];
  reconnectionDelayMax: number;
  /** Called before every connection attempt, so a reconnect offers the session it holds by then. */
  auth?: (cb: (data: HandshakeAuth) => void) => void;
}

/**
 * The default connection: socket.io-client, typed with our event maps. All of SocketLike but `on`
 * type-checks against it; socket.io's listener types are generic conditionals TypeScript cannot match
 * against ours (the same maps), hence the one cast.
 */
export function socketIo(url: string, opts: ConnectOptions): SocketLike {
  const s: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, opts);
  return s as unknown as SocketLike;
}
