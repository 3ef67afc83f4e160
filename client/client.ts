import { asBytes } from '../shared/base/bytes.ts';
import { checkClientAttestation } from '../shared/secagg/client-session.ts';
import { isRejectReason, ProtocolError, type RejectReason } from '../shared/base/errors.ts';
import { makeFloors, type Floors } from '../shared/protocol/floors.ts';
import { checkTask, normalisePlan, type CheckedTask } from '../shared/model/task.ts';
import {
  PROTOCOL_VERSION,
  type Ack,
  type BackendName,
  type RoundRef,
  type RoundRelease,
  type RoundStart,
  type Update,
  type Welcome,
} from '../shared/protocol/messages.ts';
import { systemClock, type Clock } from './clock.ts';
import { Emitter } from './emitter.ts';
import { memoryStore } from './profile.ts';
import type { ClientEvents, ClientOptions, ClientState } from './client-api.ts';
import { socketIo, type SocketLike } from './socket.ts';
import { countingSocket } from './sent-bytes.ts';
import {
  checkFloors,
  checkRoundTask,
  checkWelcomeTask,
  IdentitySession,
  ParticipationGate,
} from './admission.ts';
import { prepare, type Setup } from './setup.ts';
import {
  attestationRefusal,
  joinSecure,
  refuseSecure,
  inboxOrDeadline,
  wireSecureSteps,
  type InboxWait,
  type SecureHost,
  type SecureRound,
} from './secure-steps.ts';
import { encodeStep, maskStep } from './encode-step.ts';
import { inlineSecureEngine, type SecureEngine } from './secure-engine.ts';

export type { ClientEvents, ClientOptions, ClientState } from './client-api.ts';
export type { ClientListenEvents, ConnectOptions, SocketLike } from './socket.ts';

/** How long the server has to answer an update before we report it lost. */
const UPDATE_ACK_MS = 30_000;

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

/** The page's pin: the hash of its task, or the hash it gave; both must agree. Throws on a bad one. */
function pinOf(task: ClientOptions['task'], hash: string | undefined): string | null {
  if (hash !== undefined && !/^[0-9a-f]{64}$/.test(hash))
    throw new Error('taskHash must be 64 lowercase hex digits (taskHash() of the task)');
  const fromTask = task ? checkTask(task).hash : undefined;
  if (fromTask && hash && fromTask !== hash) throw new Error("taskHash is not the hash of the page's task");
  return fromTask ?? hash ?? null;
}

/**
 * A federated-learning participant: joins the server, trains each round it is selected for, and uploads
 * its update as binary. socket.io reconnects on its own; on every (re)connect we say hello again, resuming
 * the session the server issued (its id and resume token are kept in the identity store), and an update
 * finished while offline is held and sent after the server welcomes us back.
 */
export class AegisClient extends Emitter<ClientEvents> {
  private readonly identity: IdentitySession;
  private readonly clock: Clock;
  private readonly floors: Floors;
  /** The task hash this client trains for: the page's pin, or the first welcome's task (then kept). */
  private pinned: string | null;
  /** The accepted task (checked), once a welcome brought one that matches the pin. */
  private task: CheckedTask | null = null;
  private readonly participation = new ParticipationGate();
  private socket: SocketLike | null = null;
  private life: Life = { kind: 'connecting' };
  private link: Link = 'new';
  private secure: SecureRound | null = null;
  /** The attempt the server released us from (over-selection), while its training still runs out. */
  private released: RoundRef | null = null;
  /** Stops the guest policy steering the trainer (set once the trainer exists). */
  private detachGuest: (() => void) | null = null;
  /** The state last announced by a 'state' event. */
  private shown: ClientState = 'connecting';
  /** DP encoding and secure aggregation (a worker in browsers), started at the first round that needs it. */
  private engineNow: SecureEngine | null = null;
  /** What the secure steps see of this client. */
  private readonly host: SecureHost = {
    socket: () => this.socket,
    current: () => this.secure,
    report: (e) => this.emit('secagg', e),
  };

  constructor(private readonly opts: ClientOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.identity = new IdentitySession(opts.identity ?? memoryStore(), this.clock, opts.source, {
      socket: () => this.socket,
      welcomed: () => this.link === 'welcomed',
    });
    this.floors = makeFloors(opts.floors); // throws on a bad floor: a typo must not weaken what the page asked
    if (opts.attestation) checkClientAttestation(opts.attestation); // a page's mistake shows at once
    this.pinned = pinOf(opts.task, opts.taskHash); // so does a task the page got wrong
  }

  /** The server-issued session id, once welcomed (kept across reconnects and, with a stored identity, reloads). */
  get sessionId(): string | null {
    return this.identity.sessionId;
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
    if (this.socket || this.participation.asked) return;
    const take = this.opts.participation;
    if (!take) return this.connect();
    this.participation.ask(
      take,
      () => {
        if (this.life.kind === 'connecting') this.enter({ kind: 'waiting' });
      },
      () => {
        if (this.life.kind === 'waiting') this.enter({ kind: 'connecting' });
        this.connect();
      },
      (e) => this.fail(e),
    );
  }

  private connect(): void {
    const connect = this.opts.connect ?? socketIo;
    const token = this.opts.joinToken;
    // Every message is counted as it leaves: the page shows what left this browser, per round.
    const s = countingSocket(
      connect(this.opts.serverUrl, {
        path: this.opts.path,
        transports: ['websocket'],
        reconnectionDelayMax: 5000,
        ...(token !== undefined
          ? {
              auth: (cb) => {
                const session = this.identity.credentials();
                cb(session ? { token, session } : { token });
              },
            }
          : {}),
      }),
      (m) => this.emit('sent', m),
    );
    this.socket = s;
    s.on('connect', () => this.identity.hello());
    s.on('disconnect', () => {
      this.identity.cancelRetry();
      this.setLink('lost');
    });
    s.on('connect_error', (e) => this.onRefused(e));
    s.on('welcome', (w) => void this.onWelcome(w));
    s.on('round:start', (r) => this.onRound(r));
    s.on('round:end', (r) => this.emit('roundEnd', r));
    s.on('round:release', (m) => this.onRelease(m));
    s.on('rejected', (r) => {
      this.emit('rejected', r);
      if (r.event === 'hello') this.identity.onHelloRejected(r);
    });
    wireSecureSteps(s, this.host);
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
    this.participation.release(); // another tab of the profile may take part now
    this.identity.cancelRetry();
    this.detachGuest?.();
    this.detachGuest = null;
    if (l.kind === 'awaiting-inbox') l.cancel();
    this.socket?.disconnect();
    this.socket = null;
    if ('setup' in l) l.setup.trainer.terminate();
    this.engineNow?.terminate();
    this.engineNow = null;
  }

  private engine(): SecureEngine {
    return (this.engineNow ??= this.opts.secureEngine?.() ?? inlineSecureEngine());
  }

  private fail(e: Error): void {
    this.emit('error', e);
    this.end({ kind: 'failed', error: e });
  }

  /**
   * A handshake the server refused (bad_origin, bad_token, server_full): socket.io does not retry it and
   * neither do we; the page hears why. Transport errors carry no reason and are retried by socket.io.
   */
  private onRefused(e: Error & { data?: unknown }): void {
    const d = e.data as { reason?: unknown; message?: unknown } | undefined;
    if (!d || !isRejectReason(d.reason)) return;
    const message = typeof d.message === 'string' ? d.message.slice(0, 200) : d.reason;
    this.emit('rejected', { event: 'connect', reason: d.reason, message });
    this.fail(new Error(`the server refused the connection (${d.reason}): ${message}`));
  }

  private async onWelcome(w: Welcome): Promise<void> {
    if (w.protocolVersion !== PROTOCOL_VERSION) {
      this.fail(new Error(`server speaks protocol ${w.protocolVersion}, this client ${PROTOCOL_VERSION}`));
      return;
    }
    const l = this.life;
    // 'waiting' has no socket yet, so no welcome can come for it.
    if (l.kind === 'stopped' || l.kind === 'failed' || l.kind === 'waiting') return;
    // The task first: a server whose task is not the pinned one gets nothing, not even a trainer.
    const task = checkWelcomeTask(w, this.pinned);
    if (!task.ok) {
      this.fail(new ProtocolError(task.reason, task.message));
      return;
    }
    if (!this.task) {
      this.task = task.value;
      this.pinned = task.value.hash; // trust on first use, where the page pinned nothing
      const { name } = task.value.task;
      this.emit('task', { name, hash: task.value.hash, numParams: task.value.numParams });
    }
    this.identity.welcomed(w);
    this.setLink('welcomed');
    let setup: Setup;
    if (l.kind === 'connecting') {
      // Prepare once (data + backend probe); reconnects reuse it.
      const preparing: Life = {
        kind: 'preparing',
        ready: prepare(this.opts, w, task.value.task, (b) => this.emit('backend', b)),
      };
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
      this.detachGuest = this.opts.guest?.attach(setup.trainer) ?? null;
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
    const holdOff = this.opts.guest?.holdOff();
    if (holdOff) {
      // Not joined, so nothing goes to the server: to it we are a straggler, dropped at its deadline.
      if (l.kind === 'awaiting-inbox') this.enter({ kind: 'idle', setup: l.setup });
      this.emit('heldOff', { round: r.round, reason: holdOff });
      return;
    }
    // The pinned task before the floors: a round of another model, or another plan, is not ours to train.
    const check = this.pinned ? checkRoundTask(r, this.pinned) : null;
    const floors = check && !check.ok ? check : checkFloors(r, this.floors);
    if (!floors.ok) {
      // The wait for the old round's inbox was cancelled above; nothing runs now.
      if (l.kind === 'awaiting-inbox') this.enter({ kind: 'idle', setup: l.setup });
      this.refuseRound(r, floors.reason, floors.message);
      return;
    }
    void this.runRound(l.setup, r);
  }

  /**
   * Over-selection: the server fixed this attempt's cohort without us, so nothing we do for it can count.
   * A wait for its inbox ends now; a training in progress runs out (the trainer cannot be interrupted,
   * and rounds that start meanwhile are skipped as always) and its update is not sent.
   */
  private onRelease(m: RoundRelease): void {
    const l = this.life;
    if (l.kind !== 'training' && l.kind !== 'awaiting-inbox') return;
    if (l.ref.round !== m?.round || l.ref.attempt !== m?.attempt) return; // stale, or not ours
    if (this.secure?.ref === l.ref) this.secure = null;
    this.emit('released', { round: m.round, attempt: m.attempt });
    if (l.kind === 'awaiting-inbox') {
      l.cancel();
      this.enter({ kind: 'idle', setup: l.setup });
    } else this.released = l.ref;
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
    const refusal = attestationRefusal(r, this.opts.attestation);
    if (refusal) {
      // Not joined: a round we wait on for an inbox was cancelled by this newer round, so stop waiting.
      if (this.life.kind === 'awaiting-inbox') this.enter({ kind: 'idle', setup });
      refuseSecure(this.host, ref, refusal, !!r.secagg);
      return;
    }
    let at: RoundLife = { kind: 'training', setup, ref };
    this.released = null;
    this.enter(at);
    let secure: SecureRound | null = null;
    try {
      const joining = r.secagg
        ? joinSecure(
            this.host,
            this.engine(),
            ref,
            r.secagg,
            this.task!.numParams,
            this.floors,
            this.opts.attestation,
          )
        : null;
      secure = joining instanceof Promise ? await joining : joining;
    } catch (e) {
      // The session checks the plan again (same floors, plus its own rules): a refusal, not a crash.
      this.secure = null;
      this.advance(at, { kind: 'idle', setup });
      const reason = e instanceof ProtocolError ? e.reason : 'malformed';
      this.refuseRound(r, reason, (e as Error).message);
      return;
    }
    if (this.life !== at) {
      if (secure) secure.engine.close(secure.id); // a retry or stop() came while the keys were made
      return;
    }
    const old = this.secure;
    if (old && old !== secure) old.engine.close(old.id); // its reveal can no longer be asked for
    this.secure = secure;
    try {
      const weights = bytes.slice().buffer; // own copy: it is transferred to the worker
      // The plan as checked (normalised): what normalising drops (proximalMu <= 0 or NaN, unknown fields)
      // compared equal to the pinned plan, so it must not reach the trainer either.
      const done = await setup.trainer.train(r.round, weights, normalisePlan(r.train), (p) =>
        this.emit('progress', { round: r.round, ...p }),
      );
      if (this.life !== at) return;
      if (this.released === ref) {
        this.released = null;
        this.enter({ kind: 'idle', setup }); // released while training: the update would only be refused
        return;
      }
      this.emit('trained', {
        round: r.round,
        loss: done.loss,
        trainMs: done.trainMs,
        numExamples: done.numExamples,
        threads: done.pairedSteps > 0 ? 2 : 1,
      });
      const enc = await encodeStep(r, done.delta, done.numExamples, done.loss, this.clock, this.engine());
      if (this.life !== at) return;
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
          ({ masked: out, maskMs } = await maskStep(secure, enc.ring, this.clock));
          if (this.life !== at) return; // a retry took over, or we stopped, while the masks were made
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
   * Waits for the inbox of a secure round, at most deadlineMs on the injected clock; a retry (onRound) or
   * stop() cancels the wait. Returns the waiting state it entered and how the wait ended.
   */
  private waitForInbox(
    from: RoundLife,
    sec: SecureRound,
    deadlineMs: number,
  ): { state: RoundLife; got: Promise<InboxWait> } {
    const wait = inboxOrDeadline(sec, this.clock, deadlineMs);
    const state: RoundLife = { kind: 'awaiting-inbox', setup: from.setup, ref: sec.ref, cancel: wait.cancel };
    if (!this.advance(from, state)) wait.cancel();
    return { state, got: wait.got };
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
}
