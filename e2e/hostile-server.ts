import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { createRng } from '../shared/data/rng.ts';
import { planEncoding, vectorLength, type EncodingPlan } from '../shared/fl/encoding.ts';
import { MODELS, numParams, type ModelSpec } from '../shared/model/spec.ts';
import { presetTask } from '../shared/model/task.ts';

const TRAIN = { epochs: 1, batchSize: 8, learningRate: 0.01, optimizer: 'sgd' } as const;
import {
  PROTOCOL_VERSION,
  type ClientToServerEvents,
  type RoundStart,
  type SecAggRoundInfo,
  type ServerToClientEvents,
} from '../shared/protocol/messages.ts';
import { SecAggClientSession } from '../shared/secagg/client-session.ts';
import type { Inbox, PeerKeys, Roster, UnmaskRequest } from '../shared/secagg/types.ts';
import { packInbox, packRoster, packUnmask, unpackShares } from '../shared/secagg/wire.ts';

/** One message a client sent to the hostile server. */
export interface Heard {
  event: string;
  payload: any;
}

/**
 * A malicious server for client-side tests: a bare socket.io server on 127.0.0.1 that speaks the
 * protocol to one real client at a time, with every message it sends chosen by the test. It records
 * everything the client sends (all a server could ever learn from it).
 */
export class HostileServer {
  readonly heard: Heard[] = [];
  private socket: Socket<ClientToServerEvents, ServerToClientEvents> | null = null;
  private waiters: { event: string; from: number; resolve: (h: Heard) => void }[] = [];

  private constructor(
    private readonly http: HttpServer,
    private readonly io: Server<ClientToServerEvents, ServerToClientEvents>,
    readonly url: string,
  ) {
    io.on('connection', (s) => {
      this.socket = s;
      s.onAny((event: string, payload: unknown, ack?: unknown) => {
        this.heard.push({ event, payload });
        if (typeof ack === 'function') (ack as (a: unknown) => void)({ ok: true });
        this.wake();
      });
    });
  }

  static async start(): Promise<HostileServer> {
    const http = createServer();
    const io = new Server<ClientToServerEvents, ServerToClientEvents>(http, {
      maxHttpBufferSize: 16 * 1024 * 1024,
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as AddressInfo).port;
    return new HostileServer(http, io, `http://127.0.0.1:${port}`);
  }

  /** Sends an event to the connected client. */
  send<E extends keyof ServerToClientEvents>(event: E, ...args: Parameters<ServerToClientEvents[E]>): void {
    if (!this.socket) throw new Error('no client connected');
    this.socket.emit(event, ...args);
  }

  /** Messages of this event heard so far. */
  all(event: string): Heard[] {
    return this.heard.filter((h) => h.event === event);
  }

  /** The first message of `event` heard at or after position `from` of the log (default: any). */
  next(event: string, timeoutMs = 30_000, from = 0): Promise<Heard> {
    const got = this.heard.slice(from).find((h) => h.event === event);
    if (got) return Promise.resolve(got);
    return new Promise((resolve, reject) => {
      const w = { event, from, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`the client sent no ${event} in ${timeoutMs} ms (heard: ${this.events()})`));
      }, timeoutMs).unref();
    });
  }

  /** The events heard, in order (for failure messages). */
  events(): string {
    return this.heard.map((h) => h.event).join(', ');
  }

  private wake(): void {
    for (const w of [...this.waiters]) {
      const got = this.heard.slice(w.from).find((h) => h.event === w.event);
      if (!got) continue;
      this.waiters = this.waiters.filter((x) => x !== w);
      w.resolve(got);
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.io.close(() => r()));
    this.http.closeAllConnections?.();
  }
}

/** A round as the hostile server plans it: the victim is client 1 of n; the rest are the server's own sessions. */
export interface HostileRound {
  start: RoundStart;
  info: SecAggRoundInfo;
  /** The other members, played by the server with real client sessions (their keys are genuine). */
  peers: Map<number, SecAggClientSession>;
}

/**
 * round:start for a victim at index 1, with honest-looking numbers unless `secagg` overrides them, and
 * sessions for the other members (built with the hard minimums, so a plan the victim must refuse can still
 * be played by the peers when the test asks for it).
 */
export function hostileRound(
  seed: number,
  opts: { model?: ModelSpec; secagg?: Partial<SecAggRoundInfo>; deadlineMs?: number; round?: number } = {},
): HostileRound {
  const model = opts.model ?? MODELS.tiny;
  const P = numParams(model);
  const rng = createRng(seed);
  const weights = Float32Array.from({ length: P }, () => rng.normal() * 0.05);
  const round = opts.round ?? 1;
  const info: SecAggRoundInfo = {
    tag: `hostile/${seed}/${round}.1`,
    index: 1,
    n: 4,
    t: 3,
    k: 3,
    ...opts.secagg,
  };
  const encoding: EncodingPlan = planEncoding({
    numParams: P,
    maxClients: info.n,
    clipNorm: null,
    coordClip: 0.5,
    weighting: 'examples',
    maxExamples: 8,
    noise: null,
  });
  const start: RoundStart = {
    round,
    attempt: 1,
    task: presetTask(model.name, TRAIN),
    train: TRAIN,
    deadlineMs: opts.deadlineMs ?? 30_000,
    weights: new Uint8Array(weights.buffer),
    encoding,
    secagg: info,
  };
  const peers = new Map<number, SecAggClientSession>();
  for (let i = 2; i <= info.n; i++) {
    try {
      peers.set(i, new SecAggClientSession({ ...info, index: i, vectorLength: vectorLength(P) }));
    } catch {
      // A plan below the hard minimums: the peers never get to play it.
    }
  }
  return { start, info, peers };
}

/** Each peer's keys as a roster entry. */
export function peerKeys(r: HostileRound, only?: number[]): PeerKeys[] {
  return [...r.peers]
    .filter(([i]) => !only || only.includes(i))
    .map(([index, s]) => ({ index, ...s.advertise() }));
}

/** A roster for the victim listing these peers (default: all). */
export function rosterFor(r: HostileRound, only?: number[]): Roster {
  return { peers: peerKeys(r, only) };
}

/**
 * Plays R1 for the peers: each gets a roster of everyone else (the victim with the keys it advertised)
 * and deals its shares. Returns the victim's inbox: the boxes addressed to it by `from` (default: all peers).
 */
export function inboxFor(r: HostileRound, victimKeys: Heard, from?: number[]): Inbox {
  const victim: PeerKeys = {
    index: 1,
    cPk: new Uint8Array(victimKeys.payload.cPk),
    sPk: new Uint8Array(victimKeys.payload.sPk),
    gPk: new Uint8Array(victimKeys.payload.gPk),
  };
  const shares: Inbox['shares'] = [];
  for (const [i, s] of r.peers) {
    const others = [victim, ...peerKeys(r).filter((p) => p.index !== i)];
    const dealt = s.receiveRoster({ peers: others.sort((a, b) => a.index - b.index) });
    const box = dealt.shares.find((x) => x.to === 1)!;
    if (!from || from.includes(i)) shares.push({ from: i, ct: box.ct });
  }
  return { shares };
}

export const wire = {
  roster: (r: HostileRound, roster: Roster) => ({ round: r.start.round, attempt: 1, ...packRoster(roster) }),
  inbox: (r: HostileRound, inbox: Inbox) => ({ round: r.start.round, attempt: 1, ...packInbox(inbox) }),
  unmask: (r: HostileRound, req: UnmaskRequest) => ({ round: r.start.round, attempt: 1, ...packUnmask(req) }),
};

/** The victim's shares as the hostile server received them (checks they are well-formed). */
export function sharesOf(h: Heard, n: number) {
  return unpackShares(h.payload, n);
}

export const welcome = (seed: number) => ({
  protocolVersion: PROTOCOL_VERSION,
  sessionId: `hostile-session-${seed}`.padEnd(16, '0'),
  resumeToken: 'hostile-token-0000000000',
  task: presetTask('tiny', TRAIN),
  data: { kind: 'synthetic' as const, seed, count: 8 },
});
