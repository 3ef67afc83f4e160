import type { AdvertiseKeys, Reveal, SecAggActivePhase } from '../shared/secagg/types.ts';
import { io, type Socket } from 'socket.io-client';
import { createSecureRandom } from '../shared/dp/secure-random.ts';
import { encodeContribution, vectorLength } from '../shared/fl/encoding.ts';
import { checkTask } from '../shared/model/task.ts';
import { asBytes } from '../shared/base/bytes.ts';
import {
  PROTOCOL_VERSION,
  type Ack,
  type ClientToServerEvents,
  type RoundStart,
  type ServerToClientEvents,
} from '../shared/protocol/messages.ts';
import { SecAggClientSession } from '../shared/secagg/client-session.ts';
import { packReveal, packShares, unpackInbox, unpackRoster } from '../shared/secagg/wire.ts';

export type SecPhase = SecAggActivePhase;

/** What a scripted client does just before it answers a phase (e.g. send something hostile first). */
export type Hook = (c: ScriptedClient, m: any) => Promise<void> | void;

/**
 * What a scripted client changes in its own answers (an attacker's deviations): each gets the honest
 * value and the server's message, and returns what is sent instead.
 */
export interface Tamper {
  /** The keys advertised at R0. */
  keys?: (k: AdvertiseKeys, m: RoundStart) => AdvertiseKeys;
  /** The plaintext ring vector, before it is masked (what the sum will hold for this client). */
  plain?: (ring: Uint32Array, m: any) => Uint32Array;
  /** The shares revealed at R4. */
  reveal?: (r: Reveal, m: any) => Reveal;
}

/**
 * A protocol-level client without a trainer: it speaks the real secure-aggregation protocol over
 * socket.io with a fixed update, can vanish before any phase, and records every byte it sends (which is
 * exactly what the server receives from it).
 */
export class ScriptedClient {
  readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  session: SecAggClientSession | null = null;
  start: RoundStart | null = null;
  readonly starts: RoundStart[] = [];
  /** The encoded (unmasked) ring vector of each round: the secret the server must never see. */
  readonly plain = new Map<number, Uint32Array>();
  /** Every message sent, with the server's answer once it came. */
  readonly sent: { event: string; payload: any; ack?: Ack }[] = [];
  readonly hooks: Partial<Record<SecPhase, Hook>> = {};
  readonly tamper: Tamper = {};
  /** The session the server issued at welcome (`id` is only this test's name for the client). */
  sessionId: string | null = null;
  /** Its resume token (what a thief of this session would need). */
  resumeToken: string | null = null;
  /** Stay silent (connected, not answering) for a phase when this says so. */
  silentIf: ((phase: SecPhase, m: any) => boolean) | null = null;
  private readonly rand = createSecureRandom();

  constructor(
    url: string,
    readonly id: string,
    readonly delta: Float32Array,
    readonly examples: number,
    public vanishBefore: SecPhase | null = null,
    /** The training loss it reports, inside its vector. */
    readonly loss = 1,
  ) {
    this.socket = io(url, { transports: ['websocket'], reconnection: false });
    this.socket.on('connect', () =>
      this.socket.emit('hello', { protocolVersion: PROTOCOL_VERSION, source: 'node' }),
    );
    this.socket.on('welcome', (w) => {
      this.sessionId = w.sessionId;
      this.resumeToken = w.resumeToken;
      this.socket.emit('ready', { backend: 'cpu' }); // the example count travels only inside the vector
    });
    this.socket.on('disconnect', (r, d) => {
      this.disconnectReason ??= r;
      if (process.env.DEBUG_E2E) console.log('DISCONNECT', id, r, String((d as any)?.message ?? d ?? ''));
    });
    this.socket.on('round:start', (m) => this.handle('keys', m, () => this.onStart(m)));
    this.socket.on('secagg:roster', (m) =>
      this.handle('shares', m, () =>
        this.emit('secagg:shares', {
          round: m.round,
          attempt: m.attempt,
          ...packShares(this.session!.receiveRoster(this.roster(m))),
        }),
      ),
    );
    this.socket.on('secagg:inbox', (m) => this.handle('masked', m, () => this.onInbox(m)));
    this.socket.on('secagg:unmask', (m) =>
      this.handle('unmask', m, () =>
        this.emit('secagg:reveal', {
          round: m.round,
          attempt: m.attempt,
          ...packReveal(this.reveal(m)),
        }),
      ),
    );
  }

  /** Errors of the client's own handlers (e.g. a send cut short by the test closing the socket). */
  readonly errors: Error[] = [];
  /** Why the socket first closed (socket.io-client's reason: 'ping timeout', 'io server disconnect', ...). */
  disconnectReason: string | null = null;

  private handle(phase: SecPhase, m: any, answer: () => Promise<unknown> | void): void {
    this.step(phase, m, answer).catch((e: Error) => this.errors.push(e));
  }

  private async step(phase: SecPhase, m: any, answer: () => Promise<unknown> | void): Promise<void> {
    if (this.vanishBefore === phase && (phase !== 'keys' || m.round === 1)) {
      this.socket.disconnect();
      return;
    }
    if (phase === 'keys') {
      this.start = m;
      this.starts.push(m);
    }
    if (this.silentIf?.(phase, m)) return;
    await this.hooks[phase]?.(this, m);
    await answer();
  }

  async emit(event: string, payload: any): Promise<Ack> {
    const rec: (typeof this.sent)[number] = { event, payload };
    this.sent.push(rec);
    rec.ack = (await (this.socket.timeout(10_000) as any).emitWithAck(event, payload)) as Ack;
    return rec.ack;
  }

  private async onStart(m: RoundStart): Promise<void> {
    if (!m.secagg) return;
    this.session = new SecAggClientSession({
      ...m.secagg,
      vectorLength: vectorLength(checkTask(m.task).numParams),
    });
    const keys = this.session.advertise();
    await this.emit('secagg:keys', {
      round: m.round,
      attempt: m.attempt,
      ...(this.tamper.keys?.(keys, m) ?? keys),
    });
  }

  private async onInbox(m: any): Promise<void> {
    this.session!.receiveInbox(unpackInbox(m, this.start!.secagg!.n));
    const enc = encodeContribution(this.delta, this.examples, this.start!.encoding!, this.rand, this.loss);
    const x = this.tamper.plain?.(enc.ring, m) ?? enc.ring;
    this.plain.set(m.round, x);
    const y = await this.session!.mask(x);
    // Only the masked vector: the weight and the loss are inside it, nothing per client in the clear.
    await this.emit('update', { round: m.round, attempt: m.attempt, delta: y.buffer });
  }

  private reveal(m: any): Reveal {
    const r = this.session!.receiveUnmask(m);
    return this.tamper.reveal?.(r, m) ?? r;
  }

  roster(m: unknown) {
    return unpackRoster(m, this.start!.secagg!.n);
  }

  /** Global weights of the latest round:start. */
  weights(): Float32Array {
    const b = asBytes(this.start!.weights)!;
    return new Float32Array(b.slice().buffer);
  }

  close(): void {
    this.socket.disconnect();
  }
}

/**
 * How far the model step w1 - w0 is from `serverLr` times the exact example-weighted mean of these
 * clients' updates (err), and how far the model moved at all (moved): a round's exact-sum check.
 */
export function meanStepError(
  w0: Float32Array,
  w1: Float32Array,
  inputs: readonly ScriptedClient[],
  serverLr: number,
): { err: number; moved: number } {
  const W = inputs.reduce((s, c) => s + c.examples, 0);
  let err = 0;
  let moved = 0;
  for (let j = 0; j < w0.length; j++) {
    const mean = inputs.reduce((s, c) => s + c.examples * c.delta[j], 0) / W;
    err = Math.max(err, Math.abs(w1[j] - w0[j] - serverLr * mean));
    moved = Math.max(moved, Math.abs(w1[j] - w0[j]));
  }
  return { err, moved };
}
