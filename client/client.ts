import { io, type Socket } from 'socket.io-client';
import { createSecureRandom, type SecureRandom } from '../shared/dp/secure-random.ts';
import { encodeContribution, vectorLength } from '../shared/fl/encoding.ts';
import { numParams } from '../shared/model/spec.ts';
import { asBytes } from '../shared/base/bytes.ts';
import {
  checkClientAttestation,
  SecAggClientSession,
  type ClientAttestation,
} from '../shared/secagg/client-session.ts';
import { ProtocolError, type RejectReason } from '../shared/base/errors.ts';
import { packReveal, packShares, unpackInbox, unpackRoster, unpackUnmask } from '../shared/secagg/wire.ts';
import {
  checkRoundAgainstFloors,
  makeFloors,
  type FloorCheck,
  type Floors,
} from '../shared/protocol/floors.ts';
import {
  PROTOCOL_VERSION,
  type Ack,
  type BackendName,
  type ClientSource,
  type ClientToServerEvents,
  type Ready,
  type Rejection,
  type RoundRef,
  type RoundStart,
  type RoundSummary,
  type SecAggRoundInfo,
  type ServerToClientEvents,
  type SessionCredentials,
  type Update,
  type Welcome,
} from '../shared/protocol/messages.ts';
import type { SkippedBackend } from './backends.ts';
import { systemClock, type Clock } from './clock.ts';
import { Emitter } from './emitter.ts';
import type { TrainProgress } from './trainer.ts';
import type { TrainerPort } from './trainer-port.ts';
import { memoryStore, type IdentityStore, type Participation } from './profile.ts';

/** 'waiting': another tab of this browser profile takes part; this one waits for its turn (see profile.ts). */
export type ClientState =
  | 'waiting'
  | 'connecting'
  | 'preparing'
  | 'idle'
  | 'training'
  | 'uploading'
  | 'disconnected'
  | 'stopped'
  | 'failed';

export interface ClientEvents extends Record<string, unknown> {
  state: ClientState;
  backend: { backend: BackendName; skipped: SkippedBackend[]; where: TrainerPort['where']; data: string };
  progress: { round: number } & TrainProgress;
  trained: { round: number; loss: number; trainMs: number; numExamples: number };
  /** The update as sent: encoding/masking time, its L2 norm before clipping, and whether it was masked. */
  encoded: {
    round: number;
    encodeMs: number;
    maskMs: number;
    norm: number;
    clamped: number;
    masked: boolean;
    bytes: number;
  };
  secagg: {
    round: number;
    step: 'keys' | 'shares' | 'inbox' | 'signature' | 'reveal' | 'refused';
    detail?: string;
  };
  /** A round this client sat out: its plan is below the page's floors (the server was told the reason). */
  refused: { round: number; attempt: number; reason: RejectReason; message: string };
  ack: { round: number; ack: Ack };
  roundEnd: RoundSummary;
  rejected: Rejection;
  error: Error;
}

/** What the client hears: the server's events and socket.io's own connect/disconnect. */
export type ClientListenEvents = ServerToClientEvents & {
  connect: () => void;
  disconnect: (reason: string) => void;
};

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
}

export interface ClientOptions {
  serverUrl: string;
  source: ClientSource;
  /** Creates the trainer (a Web Worker in browsers, inline in Node). */
  spawnTrainer: () => Promise<TrainerPort>;
  /** Where the server-issued session (id + resume token) is kept between connections; default: memory. */
  identity?: IdentityStore;
  /** Backend preference override (default: webgpu, webgl, wasm, cpu). */
  backends?: BackendName[];
  /** socket.io path; default /socket.io. */
  path?: string;
  /** Opens the connection; default socket.io-client's io (which reconnects on its own). */
  connect?: (url: string, opts: ConnectOptions) => SocketLike;
  /** Deadlines and timings; default the system clock. */
  clock?: Clock;
  /** The embedding page's floors, which no round plan may go below (default: makeFloors()). */
  floors?: Partial<Floors>;
  /**
   * Takes the profile's participation slot before connecting (browsers: one tab of a profile at a time);
   * calls onWaiting if it must wait for another tab. Default: none (Node: every client takes part).
   */
  participation?: (onWaiting: () => void, signal: AbortSignal) => Promise<Participation>;
  /**
   * From the embedding page (never the server): the site's attestation key and this visitor's identity
   * with the site's signature on it. With it, the client takes part only in secure rounds that run the
   * consistency round (R3), and trusts only peers whose keys the site vouches for.
   */
  attestation?: ClientAttestation;
}

/**
 * The default connection: socket.io-client, typed with our event maps. All of SocketLike but `on`
 * type-checks against it; socket.io's listener types are generic conditionals TypeScript cannot match
 * against ours (the same maps), hence the one cast.
 */
function socketIo(url: string, opts: ConnectOptions): SocketLike {
  const s: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, opts);
  return s as unknown as SocketLike;
}

/** How long the server has to answer an update before we report it lost. */
const UPDATE_ACK_MS = 30_000;
/** Before saying hello again when the server asked us to wait (our old connection still holds the session). */
const HELLO_RETRY_MS = 5_000;

function parseCredentials(v: string | null): SessionCredentials | null {
  if (!v) return null;
  try {
    const c = JSON.parse(v) as Partial<SessionCredentials>;
    return typeof c.sessionId === 'string' && typeof c.resumeToken === 'string'
      ? { sessionId: c.sessionId, resumeToken: c.resumeToken }
      : null;
  } catch {
    return null;
  }
}

/** What preparation leaves: the trainer, and what we tell the server (in `ready`) after every welcome. */
interface Setup {
  trainer: TrainerPort;
  ready: Ready;
}

/** The secure-aggregation attempt we last joined. */
interface SecureRound {
  ref: RoundRef;
  n: number;
  session: SecAggClientSession;
  /** Settles once the inbox (the key shares we mask with) has been received; it may come while we train. */
  inbox: Promise<void>;
  gotInbox: () => void;
}

/**
 * The client's lifecycle, one state at a time; the public ClientState is derived from it (see `state`).
 * Every state that trains or uploads carries the setup, so no round can run without a trainer. Two things
 * live beside it, on purpose:
 * - the connection (`link`): socket.io drops and restores it at any moment, and a round goes on through a
 *   drop (its update is then held until the server welcomes us back), so it is orthogonal to the round;
 * - the secure attempt last joined (`secure`): the server asks for our unmask reveal after our masked
 *   update is in, while we are uploading or idle, so it outlives the round's phases until the next round.
 * A round's async steps move the client on only from the state they left it in: if that state has been
 * replaced (a retry took over, stop() ran), the old round ends without touching anything.
 */
type Life =
  /** Started; another tab of the profile takes part, so this one waits for the participation slot. */
  | { kind: 'waiting' }
  /** Started; no welcome yet. */
  | { kind: 'connecting' }
  /** First welcome: spawning the trainer, loading data, probing backends (reconnects await the same). */
  | { kind: 'preparing'; ready: Promise<Setup> }
  | { kind: 'idle'; setup: Setup }
  | { kind: 'training'; setup: Setup; ref: RoundRef }
  /** Trained and encoded, waiting for the inbox of a secure round until its deadline (or a retry). */
  | { kind: 'awaiting-inbox'; setup: Setup; ref: RoundRef; cancel: () => void }
  | { kind: 'uploading'; setup: Setup; round: number }
  /** An update finished while offline: sent after the next welcome. */
  | { kind: 'held'; setup: Setup; update: Update }
  | { kind: 'stopped' }
  | { kind: 'failed'; error: Error };

/** The states a round's own steps move through. */
type RoundLife = Extract<Life, { kind: 'training' | 'awaiting-inbox' }>;
/** The states that hold a trainer. */
type Joined = Extract<Life, { setup: Setup }>;

/** The connection: `new` until the first welcome, `lost` from a drop until the next welcome. */
type Link = 'new' | 'welcomed' | 'lost';

/** A contribution ready to mask or send: a ring vector (with how it was made), or a float delta as is. */
type Encoded =
  | { kind: 'float'; delta: ArrayBuffer }
  | { kind: 'ring'; ring: Uint32Array; encodeMs: number; norm: number; clamped: number };

/**
 * A federated-learning participant: joins the server, trains each round it is selected for, and uploads
 * its update as binary. socket.io reconnects on its own; on every (re)connect we say hello again, resuming
 * the session the server issued (its id and resume token are kept in the identity store), and an update
 * finished while offline is held and sent after the server welcomes us back.
 */
export class AegisClient extends Emitter<ClientEvents> {
  private readonly identity: IdentityStore;
  private readonly clock: Clock;
  private readonly floors: Floors;
  /** Set while (and after) asking for the participation slot; aborted by stop(). */
  private gate: AbortController | null = null;
  private slot: Participation | null = null;
  private cancelHelloRetry: (() => void) | null = null;
  private socket: SocketLike | null = null;
  private life: Life = { kind: 'connecting' };
  private link: Link = 'new';
  private secure: SecureRound | null = null;
  /** The state last announced by a 'state' event. */
  private shown: ClientState = 'connecting';
  private random: SecureRandom | null = null;

  constructor(private readonly opts: ClientOptions) {
    super();
    this.identity = opts.identity ?? memoryStore();
    this.clock = opts.clock ?? systemClock;
    this.floors = makeFloors(opts.floors); // throws on a bad floor: a typo must not weaken what the page asked
    if (opts.attestation) checkClientAttestation(opts.attestation); // a page's mistake shows at once
  }

  /** The server-issued session id, once welcomed (kept across reconnects and, with a stored identity, reloads). */
  get sessionId(): string | null {
    return parseCredentials(this.identity.get())?.sessionId ?? null;
  }

  get state(): ClientState {
    const l = this.life;
    if (l.kind === 'stopped' || l.kind === 'failed') return l.kind;
    if (this.link === 'lost') return 'disconnected';
    switch (l.kind) {
      case 'waiting':
      case 'connecting':
      case 'preparing':
      case 'idle':
      case 'training':
      case 'uploading':
        return l.kind;
      case 'awaiting-inbox':
        return 'training';
      case 'held':
        return 'disconnected';
    }
  }

  get backend(): BackendName | null {
    return 'setup' in this.life ? this.life.setup.ready.backend : null;
  }

  start(): void {
    if (this.life.kind === 'stopped' || this.life.kind === 'failed')
      throw new Error(`this client has ${this.life.kind}; create a new one to join again`);
    if (this.socket || this.gate) return;
    const take = this.opts.participation;
    if (!take) return this.connect();
    const gate = (this.gate = new AbortController());
    const waiting = (): void => {
      if (!gate.signal.aborted && this.life.kind === 'connecting') this.enter({ kind: 'waiting' });
    };
    take(waiting, gate.signal).then(
      (slot) => {
        if (gate.signal.aborted) return slot.release(); // stopped meanwhile
        this.slot = slot;
        if (this.life.kind === 'waiting') this.enter({ kind: 'connecting' });
        this.connect();
      },
      (e: unknown) => {
        if (!gate.signal.aborted) this.fail(e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  private connect(): void {
    const connect = this.opts.connect ?? socketIo;
    const s = connect(this.opts.serverUrl, {
      path: this.opts.path,
      transports: ['websocket'],
      reconnectionDelayMax: 5000,
    });
    this.socket = s;
    s.on('connect', () => this.hello());
    s.on('disconnect', () => {
      this.cancelHelloRetry?.();
      this.setLink('lost');
    });
    s.on('welcome', (w) => void this.onWelcome(w));
    s.on('round:start', (r) => this.onRound(r));
    s.on('round:end', (r) => this.emit('roundEnd', r));
    s.on('rejected', (r) => {
      this.emit('rejected', r);
      if (r.event === 'hello') this.onHelloRejected(r);
    });
    s.on('secagg:roster', (m) =>
      this.onSecure(m, 'shares', (sec) => {
        const shares = sec.session.receiveRoster(unpackRoster(m, sec.n));
        s.emit('secagg:shares', { round: m.round, attempt: m.attempt, ...packShares(shares) });
      }),
    );
    s.on('secagg:inbox', (m) =>
      this.onSecure(m, 'inbox', (sec) => {
        const peers = sec.session.receiveInbox(unpackInbox(m, sec.n));
        sec.gotInbox();
        const bad = sec.session.badBoxes.length;
        return `${peers.length} peers${bad ? `, ${bad} bad boxes` : ''}`;
      }),
    );
    s.on('secagg:survivors', (m) =>
      this.onSecure(m, 'signature', (sec) => {
        const { sig } = sec.session.receiveSurvivors(m);
        s.emit('secagg:signature', { round: m.round, attempt: m.attempt, sig });
        return `signed a survivor set of ${m.survivors.length}`;
      }),
    );
    s.on('secagg:unmask', (m) =>
      this.onSecure(m, 'reveal', (sec) => {
        const r = sec.session.receiveUnmask(unpackUnmask(m, sec.n));
        s.emit('secagg:reveal', { round: m.round, attempt: m.attempt, ...packReveal(r) });
        return `${r.b.length} self-mask shares, ${r.s.length} key shares`;
      }),
    );
  }

  stop(): void {
    this.end({ kind: 'stopped' });
  }

  // ---- state -------------------------------------------------------------------------------------------

  /** Enters `next` and announces the derived state if it changed. */
  private enter(next: Life): void {
    this.life = next;
    this.announce();
  }

  /** Enters `next` only if the client is still in `from` (nothing replaced it meanwhile); says whether. */
  private advance(from: Life, next: Life): boolean {
    if (this.life !== from) return false;
    this.enter(next);
    return true;
  }

  private setLink(l: Link): void {
    this.link = l;
    this.announce();
  }

  private announce(): void {
    const s = this.state;
    if (s === this.shown) return;
    this.shown = s;
    this.emit('state', s);
  }

  /** Stops or fails for good: gives up any wait, ends the trainer and the connection. */
  private end(last: Extract<Life, { kind: 'stopped' | 'failed' }>): void {
    const l = this.life;
    if (l.kind === 'stopped' || l.kind === 'failed') return;
    this.enter(last);
    this.gate?.abort();
    this.slot?.release(); // another tab of the profile may take part now
    this.slot = null;
    this.cancelHelloRetry?.();
    if (l.kind === 'awaiting-inbox') l.cancel();
    this.socket?.disconnect();
    this.socket = null;
    if ('setup' in l) l.setup.trainer.terminate();
  }

  private fail(e: Error): void {
    this.emit('error', e);
    this.end({ kind: 'failed', error: e });
  }

  // ---- joining -----------------------------------------------------------------------------------------

  /** Starts a session, or resumes the stored one. */
  private hello(): void {
    const resume = parseCredentials(this.identity.get());
    this.socket?.emit('hello', {
      protocolVersion: PROTOCOL_VERSION,
      source: this.opts.source,
      ...(resume ? { resume } : {}),
    });
  }

  private onHelloRejected(r: Rejection): void {
    if (r.reason === 'bad_token') {
      // The session expired (or was never valid): start a new one now.
      this.identity.clear();
      this.hello();
    } else if (r.reason === 'session_taken' || r.reason === 'rate_limited' || r.reason === 'server_full') {
      // Our previous connection may still hold the session until the server notices it is gone: wait, retry.
      this.cancelHelloRetry?.();
      this.cancelHelloRetry = this.clock.after(HELLO_RETRY_MS, () => {
        this.cancelHelloRetry = null;
        if (this.socket?.connected && this.link !== 'welcomed') this.hello();
      });
    }
  }

  private async onWelcome(w: Welcome): Promise<void> {
    if (w.protocolVersion !== PROTOCOL_VERSION) {
      this.fail(new Error(`server speaks protocol ${w.protocolVersion}, this client ${PROTOCOL_VERSION}`));
      return;
    }
    const l = this.life;
    // 'waiting' has no socket yet, so no welcome can come for it.
    if (l.kind === 'stopped' || l.kind === 'failed' || l.kind === 'waiting') return;
    this.identity.set(JSON.stringify({ sessionId: w.sessionId, resumeToken: w.resumeToken }));
    this.setLink('welcomed');
    let setup: Setup;
    if (l.kind === 'connecting') {
      // Prepare once (data + backend probe); reconnects reuse it.
      const preparing: Life = { kind: 'preparing', ready: this.prepare(w) };
      this.enter(preparing);
      try {
        setup = await preparing.ready;
      } catch (e) {
        if (this.life === preparing) this.fail(e as Error);
        return;
      }
      if (!this.advance(preparing, { kind: 'idle', setup })) {
        // Stopped (or failed) while preparing: the trainer it made is ours to end.
        if (this.life.kind === 'stopped' || this.life.kind === 'failed') setup.trainer.terminate();
        return;
      }
    } else if (l.kind === 'preparing') {
      try {
        setup = await l.ready;
      } catch {
        return; // the welcome that began preparing reports it
      }
    } else {
      setup = l.setup;
    }
    const s = this.socket;
    if (!s) return;
    s.emit('ready', setup.ready);
    const now = this.life;
    if (now.kind === 'held') this.upload(now, now.update);
  }

  private async prepare(w: Welcome): Promise<Setup> {
    const trainer = await this.opts.spawnTrainer();
    let r: Awaited<ReturnType<TrainerPort['init']>>;
    try {
      r = await trainer.init({
        type: 'init',
        model: w.model,
        data: w.data,
        serverUrl: this.opts.serverUrl,
        backends: this.opts.backends,
      });
    } catch (e) {
      trainer.terminate();
      throw e;
    }
    this.emit('backend', {
      backend: r.backend,
      skipped: r.skipped,
      where: trainer.where,
      data: r.dataDescription,
    });
    // The example count stays here: under secure aggregation it travels only inside the masked vector.
    return { trainer, ready: { backend: r.backend } };
  }

  // ---- a round -----------------------------------------------------------------------------------------

  private onRound(r: RoundStart): void {
    const l = this.life;
    switch (l.kind) {
      case 'training':
        return; // still training the last one: skip this one
      case 'awaiting-inbox':
        // A retry of an aborted round (or a newer round) while we only wait for the old round's key
        // shares: those will never come, so give up on them and take part in this one.
        l.cancel();
        break;
      case 'idle':
      case 'uploading':
        break;
      default:
        return; // not ready to train (or holding an update for the server first)
    }
    const check = this.checkFloors(r);
    if (!check.ok) {
      // The wait for the old round's inbox was cancelled above; nothing runs now.
      if (l.kind === 'awaiting-inbox') this.enter({ kind: 'idle', setup: l.setup });
      this.refuseRound(r, check.reason, check.message);
      return;
    }
    void this.runRound(l.setup, r);
  }

  /** The round's plan against the page's floors; a plan that cannot even be read is malformed. */
  private checkFloors(r: RoundStart): FloorCheck {
    try {
      return checkRoundAgainstFloors(r, this.floors);
    } catch (e) {
      return { ok: false, reason: 'malformed', message: `unreadable round plan (${(e as Error).message})` };
    }
  }

  /** Sits this attempt out: the page hears why in words, the server the reason only (it counts it). */
  private refuseRound(r: RoundStart, reason: RejectReason, message: string): void {
    this.socket?.emit('round:refuse', { round: r.round, attempt: r.attempt, reason });
    this.emit('refused', { round: r.round, attempt: r.attempt, reason, message });
  }

  /** Train, encode, (secure rounds:) wait for the inbox and mask, upload. */
  private async runRound(setup: Setup, r: RoundStart): Promise<void> {
    const bytes = asBytes(r.weights);
    if (!bytes) return this.fail(new Error('round:start carried no binary weights'));
    const ref: RoundRef = { round: r.round, attempt: r.attempt };
    const refusal = this.attestationRefusal(r);
    if (refusal) {
      // Not joined: a round we wait on for an inbox was cancelled by this newer round, so stop waiting.
      if (this.life.kind === 'awaiting-inbox') this.enter({ kind: 'idle', setup });
      if (r.secagg) this.socket?.emit('secagg:refuse', { ...ref, ...refusal });
      this.emit('secagg', {
        round: r.round,
        step: 'refused',
        detail: `${refusal.reason}: ${refusal.message}`,
      });
      return;
    }
    let at: RoundLife = { kind: 'training', setup, ref };
    this.enter(at);
    let secure: SecureRound | null = null;
    try {
      secure = r.secagg ? this.joinSecure(ref, r.secagg, r.model) : null;
    } catch (e) {
      // The session checks the plan again (same floors, plus its own rules): a refusal, not a crash.
      this.secure = null;
      this.advance(at, { kind: 'idle', setup });
      const reason = e instanceof ProtocolError ? e.reason : 'malformed';
      this.refuseRound(r, reason, (e as Error).message);
      return;
    }
    this.secure = secure;
    try {
      const weights = bytes.slice().buffer; // own copy: it is transferred to the worker
      const done = await setup.trainer.train(r.round, weights, r.train, (p) =>
        this.emit('progress', { round: r.round, ...p }),
      );
      if (this.life !== at) return;
      this.emit('trained', {
        round: r.round,
        loss: done.loss,
        trainMs: done.trainMs,
        numExamples: done.numExamples,
      });
      const enc = this.encodeStep(r, done.delta, done.numExamples, done.loss);
      let update: Update;
      if (enc.kind === 'float')
        update = {
          ...ref,
          numExamples: done.numExamples,
          trainMs: done.trainMs,
          loss: done.loss,
          delta: enc.delta,
        };
      else {
        let out = enc.ring;
        let maskMs = 0;
        if (secure) {
          const waiting = this.waitForInbox(at, secure, r.deadlineMs);
          at = waiting.state;
          const got = await waiting.got;
          if (this.life !== at) return; // a retry took over, or we stopped
          if (got === 'timeout') {
            this.emit(
              'error',
              new Error(`round ${r.round}: no key shares arrived before the deadline; update not sent`),
            );
            this.enter({ kind: 'idle', setup });
            return;
          }
          ({ masked: out, maskMs } = this.maskStep(secure, enc.ring));
        }
        this.emit('encoded', {
          round: r.round,
          encodeMs: enc.encodeMs,
          maskMs,
          norm: enc.norm,
          clamped: enc.clamped,
          masked: !!secure,
          bytes: out.byteLength,
        });
        // Nothing per client beside the ring vector: its weight and loss are inside it.
        update = { ...ref, delta: out.buffer as ArrayBuffer };
      }
      this.upload(at, update);
    } catch (e) {
      if (this.life !== at) return; // the round was given up already; its error is moot
      this.emit('error', e as Error);
      this.enter({ kind: 'idle', setup });
    }
  }

  /**
   * Why we do not take part in this round, if we do not: a client given a site key runs only secure rounds
   * with the consistency round (a floor the server cannot lower); a round with it needs that key.
   */
  private attestationRefusal(r: RoundStart): { reason: RejectReason; message: string } | null {
    const r3 = r.secagg?.consistency === true;
    if (this.opts.attestation && !r3)
      return {
        reason: 'below_floor',
        message:
          'this client takes part only in secure rounds with authenticated keys and the consistency round',
      };
    if (r3 && !this.opts.attestation)
      return {
        reason: 'unattested',
        message: 'the round needs an attested identity, and this client has none',
      };
    return null;
  }

  /** Opens the round's secure-aggregation session; its keys go out at once, so key exchange runs while we train. */
  private joinSecure(ref: RoundRef, info: SecAggRoundInfo, model: RoundStart['model']): SecureRound {
    const session = new SecAggClientSession({
      ...info,
      vectorLength: vectorLength(numParams(model)),
      floors: this.floors,
      consistency: info.consistency === true,
      attestation: this.opts.attestation,
    });
    let gotInbox!: () => void;
    const inbox = new Promise<void>((res) => (gotInbox = res));
    this.socket?.emit('secagg:keys', { ...ref, ...session.advertise() });
    this.emit('secagg', { round: ref.round, step: 'keys' });
    return { ref, n: info.n, session, inbox, gotInbox };
  }

  /** Float delta as is; or clipped, noised (per the plan) and ring-encoded with its weight and loss. */
  private encodeStep(r: RoundStart, delta: ArrayBuffer, numExamples: number, loss: number): Encoded {
    if (!r.encoding) return { kind: 'float', delta };
    const t0 = this.clock.now();
    this.random ??= createSecureRandom();
    const c = encodeContribution(new Float32Array(delta), numExamples, r.encoding, this.random, loss);
    return { kind: 'ring', ring: c.ring, encodeMs: this.clock.now() - t0, norm: c.norm, clamped: c.clamped };
  }

  /**
   * Waits for the inbox of a secure round, at most deadlineMs on the injected clock; a retry (onRound) or
   * stop() cancels the wait. Returns the waiting state it entered and how the wait ended.
   */
  private waitForInbox(
    from: RoundLife,
    sec: SecureRound,
    deadlineMs: number,
  ): { state: RoundLife; got: Promise<'inbox' | 'timeout' | 'cancelled'> } {
    let finish!: (how: 'inbox' | 'timeout' | 'cancelled') => void;
    const got = new Promise<'inbox' | 'timeout' | 'cancelled'>((res) => (finish = res));
    const stopTimer = this.clock.after(deadlineMs, () => finish('timeout'));
    void got.then(stopTimer);
    void sec.inbox.then(() => finish('inbox'));
    const state: RoundLife = {
      kind: 'awaiting-inbox',
      setup: from.setup,
      ref: sec.ref,
      cancel: () => finish('cancelled'),
    };
    if (!this.advance(from, state)) finish('cancelled');
    return { state, got };
  }

  /** Adds the round's masks; the server can strip them from the sum only. */
  private maskStep(sec: SecureRound, ring: Uint32Array): { masked: Uint32Array; maskMs: number } {
    const t0 = this.clock.now();
    const masked = sec.session.mask(ring);
    return { masked, maskMs: this.clock.now() - t0 };
  }

  /** Sends the update, or holds it until the next welcome when we are offline. */
  private upload(from: Joined, u: Update): void {
    const { setup } = from;
    const s = this.socket;
    if (!s?.connected) {
      this.advance(from, { kind: 'held', setup, update: u });
      return;
    }
    const uploading: Life = { kind: 'uploading', setup, round: u.round };
    if (!this.advance(from, uploading)) return;
    s.timeout(UPDATE_ACK_MS)
      .emitWithAck('update', u)
      .then(
        (ack: Ack) => this.emit('ack', { round: u.round, ack }),
        (e: Error) =>
          this.emit('error', new Error(`round ${u.round}: no answer to our update (${e.message})`)),
      )
      .finally(() => this.advance(uploading, { kind: 'idle', setup }));
  }

  // ---- secure aggregation messages ---------------------------------------------------------------------

  /** Runs one secure-aggregation step for the current round; a request we must not answer is refused and reported. */
  private onSecure(
    m: RoundRef,
    step: 'shares' | 'inbox' | 'signature' | 'reveal',
    fn: (sec: SecureRound) => string | void,
  ): void {
    const sec = this.secure;
    if (!sec || sec.ref.round !== m?.round || sec.ref.attempt !== m?.attempt) return; // not our round (stale)
    try {
      const detail = fn(sec);
      this.emit('secagg', { round: m.round, step, detail: detail ?? undefined });
    } catch (e) {
      const reason = e instanceof ProtocolError ? e.reason : 'malformed';
      this.socket?.emit('secagg:refuse', {
        round: m.round,
        attempt: m.attempt,
        reason,
        message: (e as Error).message,
      });
      this.emit('secagg', { round: m.round, step: 'refused', detail: `${reason}: ${(e as Error).message}` });
    }
  }
}
