import { io, type Socket } from 'socket.io-client';
import { createSecureRandom, type SecureRandom } from '../shared/dp/secure-random.ts';
import { encodeContribution, vectorLength } from '../shared/fl/encoding.ts';
import { numParams } from '../shared/model/spec.ts';
import { asBytes } from '../shared/base/bytes.ts';
import { SecAggClientSession } from '../shared/secagg/client-session.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { packReveal, packShares, unpackInbox, unpackRoster } from '../shared/secagg/wire.ts';
import {
  PROTOCOL_VERSION,
  type Ack,
  type BackendName,
  type ClientSource,
  type ClientToServerEvents,
  type Rejection,
  type RoundRef,
  type RoundStart,
  type RoundSummary,
  type ServerToClientEvents,
  type Update,
  type Welcome,
} from '../shared/protocol/messages.ts';
import type { SkippedBackend } from './backends.ts';
import { newClientId } from './client-id.ts';
import { Emitter } from './emitter.ts';
import type { TrainProgress } from './trainer.ts';
import type { TrainerPort } from './trainer-port.ts';

export type ClientState =
  'connecting' | 'preparing' | 'idle' | 'training' | 'uploading' | 'disconnected' | 'stopped' | 'failed';

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
  secagg: { round: number; step: 'keys' | 'shares' | 'inbox' | 'reveal' | 'refused'; detail?: string };
  ack: { round: number; ack: Ack };
  roundEnd: RoundSummary;
  rejected: Rejection;
  error: Error;
}

export interface ClientOptions {
  serverUrl: string;
  source: ClientSource;
  /** Creates the trainer (a Web Worker in browsers, inline in Node). */
  spawnTrainer: () => Promise<TrainerPort>;
  clientId?: string;
  /** Backend preference override (default: webgpu, webgl, wasm, cpu). */
  backends?: BackendName[];
  /** socket.io path; default /socket.io. */
  path?: string;
}

/**
 * A federated-learning participant: joins the server, trains each round it is selected for, and uploads
 * its update as binary. socket.io reconnects on its own; on every (re)connect we say hello again with the
 * same clientId, and an update finished while offline is held and sent after the server welcomes us back.
 */
export class AegisClient extends Emitter<ClientEvents> {
  readonly clientId: string;
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  private trainer: TrainerPort | null = null;
  private ready: { backend: BackendName; numExamples: number } | null = null;
  private preparing: Promise<void> | null = null;
  private pending: Update | null = null;
  private training = false;
  private _state: ClientState = 'connecting';
  /** The secure-aggregation session of the round in progress, and a promise of its inbox (or of its end). */
  private secure: {
    ref: RoundRef;
    n: number;
    session: SecAggClientSession;
    inbox: Promise<'inbox' | 'cancelled'>;
    gotInbox: () => void;
    cancel: () => void;
  } | null = null;
  /** Set while a trained update waits for the key shares it must be masked with. */
  private waitingForInbox = false;
  /** Settles when the round in progress is over (trained and sent, or given up). */
  private roundDone: Promise<void> = Promise.resolve();
  private random: SecureRandom | null = null;

  constructor(private readonly opts: ClientOptions) {
    super();
    this.clientId = opts.clientId ?? newClientId();
  }

  get state(): ClientState {
    return this._state;
  }

  get backend(): BackendName | null {
    return this.ready?.backend ?? null;
  }

  start(): void {
    if (this.socket) return;
    const s: Socket<ServerToClientEvents, ClientToServerEvents> = io(this.opts.serverUrl, {
      path: this.opts.path,
      transports: ['websocket'],
      reconnectionDelayMax: 5000,
    });
    this.socket = s;
    this.setState('connecting');
    s.on('connect', () =>
      s.emit('hello', {
        protocolVersion: PROTOCOL_VERSION,
        clientId: this.clientId,
        source: this.opts.source,
      }),
    );
    s.on('disconnect', () => this._state !== 'stopped' && this.setState('disconnected'));
    s.on('welcome', (w) => void this.onWelcome(w));
    s.on('round:start', (r) => void this.onRound(r));
    s.on('round:end', (r) => this.emit('roundEnd', r));
    s.on('rejected', (r) => this.emit('rejected', r));
    s.on('secagg:roster', (m) =>
      this.onSecure(m, 'shares', (sess) => {
        const shares = sess.receiveRoster(unpackRoster(m, this.secure!.n));
        s.emit('secagg:shares', { round: m.round, attempt: m.attempt, ...packShares(shares) });
      }),
    );
    s.on('secagg:inbox', (m) =>
      this.onSecure(m, 'inbox', (sess) => {
        const peers = sess.receiveInbox(unpackInbox(m, this.secure!.n));
        this.secure!.gotInbox();
        return `${peers.length} peers${sess.badBoxes.length ? `, ${sess.badBoxes.length} bad boxes` : ''}`;
      }),
    );
    s.on('secagg:unmask', (m) =>
      this.onSecure(m, 'reveal', (sess) => {
        const r = sess.receiveUnmask(m);
        s.emit('secagg:reveal', { round: m.round, attempt: m.attempt, ...packReveal(r) });
        return `${r.b.length} self-mask shares, ${r.s.length} key shares`;
      }),
    );
  }

  /** Runs one secure-aggregation step for the current round; a request we must not answer is refused and reported. */
  private onSecure(
    m: RoundRef,
    step: 'shares' | 'inbox' | 'reveal',
    fn: (s: SecAggClientSession) => string | void,
  ): void {
    const cur = this.secure;
    if (!cur || cur.ref.round !== m?.round || cur.ref.attempt !== m?.attempt) return; // not our round (stale)
    try {
      const detail = fn(cur.session);
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

  stop(): void {
    this.setState('stopped');
    this.socket?.disconnect();
    this.socket = null;
    this.trainer?.terminate();
    this.trainer = null;
  }

  private setState(s: ClientState): void {
    if (this._state === s) return;
    this._state = s;
    this.emit('state', s);
  }

  private async onWelcome(w: Welcome): Promise<void> {
    if (w.protocolVersion !== PROTOCOL_VERSION) {
      this.fail(new Error(`server speaks protocol ${w.protocolVersion}, this client ${PROTOCOL_VERSION}`));
      return;
    }
    try {
      // Prepare once (data + backend probe); reconnects reuse it.
      this.preparing ??= this.prepare(w);
      await this.preparing;
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    const s = this.socket;
    if (!s || !this.ready) return;
    s.emit('ready', this.ready);
    if (this.pending) this.upload(this.pending);
    else if (!this.training) this.setState('idle');
  }

  private async prepare(w: Welcome): Promise<void> {
    this.setState('preparing');
    this.trainer = await this.opts.spawnTrainer();
    const r = await this.trainer.init({
      type: 'init',
      model: w.model,
      data: w.data,
      serverUrl: this.opts.serverUrl,
      backends: this.opts.backends,
    });
    this.ready = { backend: r.backend, numExamples: r.numExamples };
    this.emit('backend', {
      backend: r.backend,
      skipped: r.skipped,
      where: this.trainer.where,
      data: r.dataDescription,
    });
  }

  private async onRound(r: RoundStart): Promise<void> {
    if (!this.trainer) return;
    if (this.training) {
      // A retry of an aborted round (or a newer round) while we only wait for the old round's key shares:
      // those will never come, so give up on them and take part in this one. Still training: skip it.
      if (!this.waitingForInbox) return;
      this.secure?.cancel();
      await this.roundDone;
    }
    let finished!: () => void;
    this.roundDone = new Promise((res) => (finished = res));
    const bytes = asBytes(r.weights);
    if (!bytes) {
      finished();
      return this.fail(new Error('round:start carried no binary weights'));
    }
    this.training = true;
    this.setState('training');
    const ref = { round: r.round, attempt: r.attempt };
    this.secure = null;
    if (r.secagg) {
      // Keys go out at once, so key exchange runs while we train.
      const session = new SecAggClientSession({
        ...r.secagg,
        vectorLength: vectorLength(numParams(r.model)),
      });
      let gotInbox!: () => void;
      let cancel!: () => void;
      const inbox = new Promise<'inbox' | 'cancelled'>((res) => {
        gotInbox = () => res('inbox');
        cancel = () => res('cancelled');
      });
      this.secure = { ref, n: r.secagg.n, session, inbox, gotInbox, cancel };
      this.socket?.emit('secagg:keys', { ...ref, ...session.advertise() });
      this.emit('secagg', { round: r.round, step: 'keys' });
    }
    try {
      const weights = bytes.slice().buffer; // own copy: it is transferred to the worker
      const done = await this.trainer.train(r.round, weights, r.train, (p) =>
        this.emit('progress', { round: r.round, ...p }),
      );
      this.emit('trained', {
        round: r.round,
        loss: done.loss,
        trainMs: done.trainMs,
        numExamples: done.numExamples,
      });
      const delta = await this.encode(r, done.delta, done.numExamples);
      if (!delta) return;
      this.upload({ ...ref, numExamples: done.numExamples, trainMs: done.trainMs, loss: done.loss, delta });
    } catch (e) {
      this.emit('error', e as Error);
      this.setState('idle');
    } finally {
      this.training = false;
      finished();
    }
  }

  /** Float delta as is; or clipped, noised (per the plan), ring-encoded and, with secure aggregation, masked. */
  private async encode(r: RoundStart, delta: ArrayBuffer, numExamples: number): Promise<ArrayBuffer | null> {
    if (!r.encoding) return delta;
    const t0 = performance.now();
    this.random ??= createSecureRandom();
    const c = encodeContribution(new Float32Array(delta), numExamples, r.encoding, this.random);
    const encodeMs = performance.now() - t0;
    let out = c.ring;
    let maskMs = 0;
    const sec = this.secure;
    if (r.secagg) {
      if (!sec || sec.ref.round !== r.round || sec.ref.attempt !== r.attempt) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<'timeout'>(
        (res) => (timer = setTimeout(() => res('timeout'), r.deadlineMs)),
      );
      this.waitingForInbox = true;
      const got = await Promise.race([sec.inbox, timeout]);
      this.waitingForInbox = false;
      clearTimeout(timer);
      if (got !== 'inbox') {
        if (got === 'timeout')
          this.emit(
            'error',
            new Error(`round ${r.round}: no key shares arrived before the deadline; update not sent`),
          );
        this.setState('idle');
        return null;
      }
      const t1 = performance.now();
      out = sec.session.mask(c.ring);
      maskMs = performance.now() - t1;
    }
    this.emit('encoded', {
      round: r.round,
      encodeMs,
      maskMs,
      norm: c.norm,
      clamped: c.clamped,
      masked: !!r.secagg,
      bytes: out.byteLength,
    });
    return out.buffer as ArrayBuffer;
  }

  private upload(u: Update): void {
    const s = this.socket;
    if (!s?.connected) {
      this.pending = u; // sent after the next welcome
      return;
    }
    this.pending = null;
    this.setState('uploading');
    s.timeout(30_000)
      .emitWithAck('update', u)
      .then(
        (ack: Ack) => this.emit('ack', { round: u.round, ack }),
        (e: Error) =>
          this.emit('error', new Error(`round ${u.round}: no answer to our update (${e.message})`)),
      )
      .finally(() => this._state === 'uploading' && this.setState('idle'));
  }

  private fail(e: Error): void {
    this.emit('error', e);
    this.setState('failed');
  }
}
