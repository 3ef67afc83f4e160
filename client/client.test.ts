import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../shared/base/errors.ts';
import { createSecureRandom } from '../shared/dp/secure-random.ts';
import {
  decodeAggregate,
  encodeContribution,
  planEncoding,
  vectorLength,
  type EncodingPlan,
} from '../shared/fl/encoding.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { checkTask, presetTask, type Task } from '../shared/model/task.ts';
import { blobs as blobExamples } from '../shared/data/blobs.ts';
import { readFileSync } from 'node:fs';
import {
  PROTOCOL_VERSION,
  type Ack,
  type Rejection,
  type RoundStart,
  type Update,
  type Welcome,
} from '../shared/protocol/messages.ts';
import { SecAggClientSession, type ClientAttestation } from '../shared/secagg/client-session.ts';
import { attest, generateSigningKeyPair } from '../shared/secagg/consistency.ts';
import { addInto } from '../shared/secagg/ring.ts';
import { SecAggServerSession } from '../shared/secagg/server-session.ts';
import { packInbox, packRoster, packUnmask, unpackReveal, unpackShares } from '../shared/secagg/wire.ts';
import {
  AegisClient,
  type ClientEvents,
  type ClientOptions,
  type ClientListenEvents,
  type ConnectOptions,
  type ClientState,
  type SocketLike,
} from './client.ts';
import { FakeClock } from './fake-clock.ts';
import type { Floors } from '../shared/protocol/floors.ts';
import type { TrainConfig } from '../shared/protocol/messages.ts';
import { memoryStore, type Participation } from './profile.ts';
import type { TrainerPort } from './trainer-port.ts';
import {
  remoteSecureEngine,
  serveSecureEngine,
  type EngineReply,
  type SecureEngine,
} from './secure-engine.ts';

const MODEL = MODELS.tiny;
const TASK = presetTask(MODEL.name, { epochs: 1, batchSize: 8, learningRate: 0.1, optimizer: 'sgd' });
const P = numParams(MODEL);
const L = vectorLength(P);
const EXAMPLES = 16;
const DEADLINE_MS = 5000;

/** The server's end of a socket: it records what the client sends and delivers what the test says. */
class FakeSocket implements SocketLike {
  connected = false;
  readonly sent: { event: string; payload: any }[] = [];
  private readonly handlers = new Map<string, ((...a: unknown[]) => void)[]>();

  on<E extends keyof ClientListenEvents>(event: E, fn: ClientListenEvents[E]): this {
    const list = this.handlers.get(event) ?? [];
    list.push(fn as (...a: unknown[]) => void);
    this.handlers.set(event, list);
    return this;
  }

  emit(event: string, ...args: unknown[]): this {
    this.sent.push({ event, payload: args[0] });
    return this;
  }

  timeout(): { emitWithAck(event: 'update', u: Update): Promise<Ack> } {
    return {
      emitWithAck: (event, u) => {
        this.sent.push({ event, payload: u });
        return Promise.resolve({ ok: true });
      },
    };
  }

  disconnect(): this {
    if (this.connected) this.drop('io client disconnect');
    return this;
  }

  // ---- the test's side ----
  deliver<E extends keyof ClientListenEvents>(event: E, ...args: Parameters<ClientListenEvents[E]>): void {
    for (const fn of this.handlers.get(event) ?? []) fn(...args);
  }
  open(): void {
    this.connected = true;
    this.deliver('connect');
  }
  drop(reason = 'transport close'): void {
    this.connected = false;
    this.deliver('disconnect', reason);
  }
  all(event: string): any[] {
    return this.sent.filter((m) => m.event === event).map((m) => m.payload);
  }
}

/** A trainer whose rounds finish when the test says so. */
function fakeTrainer() {
  const trainings: {
    round: number;
    weights: ArrayBuffer;
    plan: TrainConfig;
    finish: (delta: Float32Array) => void;
  }[] = [];
  let terminated = false;
  const inits: Parameters<TrainerPort['init']>[0][] = [];
  const port: TrainerPort = {
    where: 'main-thread',
    init: async (req) => (
      inits.push(req),
      {
        type: 'ready',
        backend: 'cpu',
        skipped: [],
        numExamples: EXAMPLES,
        dataDescription: 'fake data',
      }
    ),
    train: (round, weights, plan) =>
      new Promise((resolve) =>
        trainings.push({
          round,
          weights,
          plan,
          finish: (delta) =>
            resolve({
              type: 'done',
              round,
              delta: delta.slice().buffer,
              numExamples: EXAMPLES,
              loss: 0.5,
              trainMs: 7,
              pairedSteps: 0,
            }),
        }),
      ),
    terminate: () => void (terminated = true),
  };
  return { port, trainings, inits, terminated: () => terminated, spawned: 0 };
}

/**
 * The secure engine as browsers run it, in a worker: every call and reply is structured-cloned (buffers
 * transferred, so a sender that reused one would fail) and arrives in a later task.
 */
function workerLikeEngine(): SecureEngine {
  let reply: (r: EngineReply) => void = () => {};
  const serve = serveSecureEngine((r, transfer) =>
    setImmediate(() => reply(structuredClone(r, { transfer }))),
  );
  return remoteSecureEngine({
    send: (c, transfer) => setImmediate(() => serve(structuredClone(c, { transfer }))),
    onReply: (fn) => (reply = fn),
    close: () => {},
  });
}
const ENGINES: [string, (() => SecureEngine) | undefined][] = [
  ['inline', undefined],
  ['worker-like', workerLikeEngine],
];

/** Lets pending promise callbacks run (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}

/**
 * Waits (up to 5 s of real time) until the client has sent `event`: masking goes through WebCrypto, whose
 * work completes on libuv's thread pool after a load-dependent number of event-loop turns.
 */
async function sent(socket: { all(event: string): unknown[] }, event: string): Promise<void> {
  const until = Date.now() + 5000;
  while (socket.all(event).length === 0 && Date.now() < until) await settle();
}

const SESSION = { sessionId: 'session-issued-by-server', resumeToken: 'T'.repeat(43) };
const welcome: Welcome = {
  protocolVersion: PROTOCOL_VERSION,
  ...SESSION,
  task: TASK,
  data: { kind: 'synthetic', seed: 0, count: EXAMPLES },
};

/** A plan without noise and a delta of whole clip units: encoding is then exact, so the test knows the plain vector. */
const plan: EncodingPlan = planEncoding({
  numParams: P,
  maxClients: 3,
  clipNorm: null,
  coordClip: 1,
  weighting: 'uniform',
  maxExamples: EXAMPLES,
  noise: null,
});
const delta = Float32Array.from({ length: P }, (_, i) => (i % 3) - 1);

function roundStart(round: number, attempt: number, secure: boolean): RoundStart {
  const weights = new Uint8Array(P * 4);
  weights[0] = round;
  weights[1] = attempt;
  return {
    round,
    attempt,
    task: TASK,
    train: TASK.plan,
    deadlineMs: DEADLINE_MS,
    weights,
    ...(secure
      ? { encoding: plan, secagg: { tag: `r${round}a${attempt}`, index: 1, n: 3, t: 2, k: 2 } }
      : {}),
  };
}

/**
 * A client joined to a fake server, with every event it emits recorded. Its floors allow the plain rounds
 * most tests run (the default floors require secure aggregation; the floor tests pass their own).
 */
async function joined(extra: Partial<ClientOptions> = {}, w: Welcome = welcome) {
  const socket = new FakeSocket();
  const clock = new FakeClock();
  const trainer = fakeTrainer();
  const identity = memoryStore();
  const client = new AegisClient({
    serverUrl: 'http://fake.invalid',
    source: 'node',
    identity,
    spawnTrainer: async () => {
      trainer.spawned++;
      return trainer.port;
    },
    connect: () => socket,
    clock,
    floors: { requireSecAgg: false },
    ...extra,
  });
  const events: { [K in keyof ClientEvents]?: ClientEvents[K][] } = {};
  const record = <K extends keyof ClientEvents>(k: K) =>
    client.on(k, (v) => void ((events[k] ??= []) as ClientEvents[K][]).push(v));
  for (const k of [
    'state',
    'backend',
    'trained',
    'encoded',
    'secagg',
    'ack',
    'error',
    'refused',
    'released',
    'task',
  ] as const)
    record(k);
  client.start();
  socket.open();
  socket.deliver('welcome', w);
  await settle();
  return { client, socket, clock, trainer, events, identity, states: () => events.state ?? [] };
}

/**
 * The server's secure-aggregation side for one attempt, with the two other cohort members (2 and 3)
 * played by real sessions: what our client (1) sends goes through the real server session.
 */
function secureServer(tag: string, withR3 = false) {
  const server = new SecAggServerSession({
    tag,
    n: 3,
    neighbours: [
      [2, 3],
      [1, 3],
      [1, 2],
    ],
    t: 2,
    vectorLength: L,
    minSurvivors: 3,
    ...(withR3 ? { consistency: { sitePublicKey: site.publicKey } } : {}),
  });
  const peers = [2, 3].map(
    (index) =>
      new SecAggClientSession({
        tag,
        index,
        n: 3,
        t: 2,
        vectorLength: L,
        ...(withR3 ? { consistency: true as const, attestation: attested() } : {}),
      }),
  );
  const peerInputs = peers.map((_, i) => Uint32Array.from({ length: L }, (_, j) => (j * 7 + i) >>> 0));
  return { server, peers, peerInputs };
}

const site = generateSigningKeyPair();
function attested(): ClientAttestation {
  const identity = generateSigningKeyPair();
  return { sitePublicKey: site.publicKey, identity, signature: attest(site.secretKey, identity.publicKey) };
}

describe('AegisClient with a site attestation key (consistency round)', () => {
  it('refuses a secure round without R3, and a plain round, without training: a floor the server cannot lower', async () => {
    const { socket, trainer, events } = await joined({ attestation: attested() });
    socket.deliver('round:start', roundStart(1, 1, true));
    await settle();
    expect(trainer.trainings).toHaveLength(0);
    expect(socket.all('secagg:keys')).toEqual([]);
    expect(socket.all('secagg:refuse')).toEqual([
      expect.objectContaining({ round: 1, attempt: 1, reason: 'below_floor' }),
    ]);
    socket.deliver('round:start', roundStart(2, 1, false));
    await settle();
    expect(trainer.trainings).toHaveLength(0);
    expect(events.secagg?.map((e) => e.step)).toEqual(['refused', 'refused']);
  });

  it('a client without one refuses a round that needs an attested identity', async () => {
    const { socket, trainer } = await joined();
    const r = roundStart(1, 1, true);
    socket.deliver('round:start', { ...r, secagg: { ...r.secagg!, consistency: true } });
    await settle();
    expect(trainer.trainings).toHaveLength(0);
    expect(socket.all('secagg:refuse')).toEqual([expect.objectContaining({ reason: 'unattested' })]);
  });

  it('an attestation the site key does not verify is refused when the client is made', () => {
    const bad = { ...attested(), signature: new Uint8Array(64) };
    expect(
      () =>
        new AegisClient({
          serverUrl: 'http://x.invalid',
          source: 'node',
          spawnTrainer: async () => fakeTrainer().port,
          attestation: bad,
        }),
    ).toThrow(RangeError);
  });

  it.each(ENGINES)(
    "a round with R3 (%s engine): attested keys, signs U3, reveals after its neighbours' signatures; the sum is exact",
    async (_name, secureEngine) => {
      const { socket, trainer, events } = await joined({ attestation: attested(), secureEngine });
      const r0 = roundStart(1, 1, true);
      const r = { ...r0, secagg: { ...r0.secagg!, consistency: true as const } };
      const tag = r.secagg.tag;
      const { server, peers, peerInputs } = secureServer(tag, true);
      socket.deliver('round:start', r);
      await settle();
      const [keys] = socket.all('secagg:keys');
      expect(keys.auth).toBeDefined();
      server.receiveKeys(1, keys);
      peers.forEach((p, i) => server.receiveKeys(i + 2, p.advertise()));
      const rosters = server.closeKeys();
      socket.deliver('secagg:roster', { round: 1, attempt: 1, ...packRoster(rosters.get(1)!) });
      await settle();
      server.receiveShares(1, unpackShares(socket.all('secagg:shares')[0], 3));
      peers.forEach((p, i) => server.receiveShares(i + 2, p.receiveRoster(rosters.get(i + 2)!)));
      const inboxes = server.closeShares();
      trainer.trainings[0].finish(delta);
      socket.deliver('secagg:inbox', { round: 1, attempt: 1, ...packInbox(inboxes.get(1)!) });
      await settle();
      await settle();
      await sent(socket, 'update');
      server.receiveMasked(1, new Uint32Array(socket.all('update')[0].delta));
      for (const [i, p] of peers.entries()) {
        p.receiveInbox(inboxes.get(i + 2)!);
        server.receiveMasked(i + 2, await p.mask(peerInputs[i]));
      }
      const sets = server.closeMaskedToConsistency();
      socket.deliver('secagg:survivors', { round: 1, attempt: 1, ...sets.get(1)! });
      await settle();
      server.receiveSignature(1, socket.all('secagg:signature')[0]);
      peers.forEach((p, i) => server.receiveSignature(i + 2, p.receiveSurvivors(sets.get(i + 2)!)));
      const requests = server.closeConsistency();
      socket.deliver('secagg:unmask', { round: 1, attempt: 1, ...packUnmask(requests.get(1)!) });
      await settle();
      server.receiveReveal(1, unpackReveal(socket.all('secagg:reveal')[0], 3));
      peers.forEach((p, i) => server.receiveReveal(i + 2, p.receiveUnmask(requests.get(i + 2)!)));
      const sum = await server.closeUnmask();
      expect(events.secagg?.map((s) => s.step)).toEqual(['keys', 'shares', 'inbox', 'signature', 'reveal']);
      const expected = encodeContribution(delta, EXAMPLES, plan, createSecureRandom(), 0.5).ring;
      for (const x of peerInputs) addInto(expected, x);
      expect(sum).toEqual(expected);
      expect(socket.all('secagg:refuse')).toEqual([]);
    },
  );
});

describe('AegisClient', () => {
  it('says hello on connect, prepares once on welcome and tells the server it is ready', async () => {
    const { socket, trainer, events, client } = await joined();
    // A new session: the server issues its id and resume token, which the client keeps.
    expect(socket.all('hello')).toEqual([{ protocolVersion: PROTOCOL_VERSION, source: 'node' }]);
    expect(client.sessionId).toBe(SESSION.sessionId);
    // Only the backend: the example count never leaves the client in the clear.
    expect(socket.all('ready')).toEqual([{ backend: 'cpu' }]);
    expect(trainer.spawned).toBe(1);
    expect(events.backend).toEqual([
      { backend: 'cpu', skipped: [], where: 'main-thread', threads: 1, data: 'fake data' },
    ]);
    expect(events.state).toEqual(['preparing', 'idle']);
    expect(client.state).toBe('idle');
    expect(client.backend).toBe('cpu');
  });

  it('fails on a welcome in another protocol version, and ends its connection', async () => {
    const socket = new FakeSocket();
    const client = new AegisClient({
      serverUrl: 'http://fake.invalid',
      source: 'node',
      spawnTrainer: () => Promise.reject(new Error('must not prepare')),
      connect: () => socket,
    });
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    client.start();
    socket.open();
    socket.deliver('welcome', { ...welcome, protocolVersion: PROTOCOL_VERSION + 1 });
    await settle();
    expect(client.state).toBe('failed');
    expect(errors.map((e) => e.message)).toEqual([
      `server speaks protocol ${PROTOCOL_VERSION + 1}, this client ${PROTOCOL_VERSION}`,
    ]);
    expect(socket.connected).toBe(false);
    expect(socket.all('ready')).toEqual([]);
    expect(() => client.start()).toThrow(/failed; create a new one/);
  });

  it('plain round: trains on a copy of the weights and uploads the float delta as is', async () => {
    const { socket, trainer, events, states } = await joined();
    const r = roundStart(1, 1, false);
    socket.deliver('round:start', r);
    await settle();
    expect(trainer.trainings).toHaveLength(1);
    expect(new Uint8Array(trainer.trainings[0].weights)).toEqual(r.weights);
    expect(trainer.trainings[0].weights).not.toBe((r.weights as Uint8Array).buffer);
    trainer.trainings[0].finish(delta);
    await settle();
    await sent(socket, 'update');
    const [u] = socket.all('update');
    expect(u).toMatchObject({ round: 1, attempt: 1, numExamples: EXAMPLES, trainMs: 7, loss: 0.5 });
    expect(new Float32Array(u.delta)).toEqual(delta);
    expect(events.trained).toEqual([{ round: 1, loss: 0.5, trainMs: 7, numExamples: EXAMPLES, threads: 1 }]);
    expect(events.encoded).toBeUndefined();
    expect(events.ack).toEqual([{ round: 1, ack: { ok: true } }]);
    expect(states()).toEqual(['preparing', 'idle', 'training', 'uploading', 'idle']);
  });

  it('secure round: waits for the inbox, masks with the round session, and the server unmasks the sum', async () => {
    const { socket, trainer, events, client } = await joined();
    const r = roundStart(1, 1, true);
    const { server, peers, peerInputs } = secureServer(r.secagg!.tag);
    socket.deliver('round:start', r);
    await settle();
    // Keys go out at once, before training ends.
    const [keys] = socket.all('secagg:keys');
    expect(keys).toMatchObject({ round: 1, attempt: 1 });
    server.receiveKeys(1, keys);
    peers.forEach((p, i) => server.receiveKeys(i + 2, p.advertise()));
    const rosters = server.closeKeys();
    socket.deliver('secagg:roster', { round: 1, attempt: 1, ...packRoster(rosters.get(1)!) });
    const [shares] = socket.all('secagg:shares');
    expect(shares).toMatchObject({ round: 1, attempt: 1 });
    server.receiveShares(1, unpackShares(shares, 3));
    peers.forEach((p, i) => server.receiveShares(i + 2, p.receiveRoster(rosters.get(i + 2)!)));
    const inboxes = server.closeShares();

    trainer.trainings[0].finish(delta);
    await settle();
    expect(client.state).toBe('training'); // trained, but nothing to mask with yet
    expect(socket.all('update')).toEqual([]);

    socket.deliver('secagg:inbox', { round: 1, attempt: 1, ...packInbox(inboxes.get(1)!) });
    await settle();
    await sent(socket, 'update');
    const [u] = socket.all('update');
    // Only the masked vector: the loss (0.5) is inside it, nothing per client is sent beside it.
    expect(Object.keys(u).sort()).toEqual(['attempt', 'delta', 'round']);
    expect(u).toMatchObject({ round: 1, attempt: 1 });
    const masked = new Uint32Array(u.delta);
    const plain = encodeContribution(delta, EXAMPLES, plan, createSecureRandom(), 0.5).ring;
    expect(masked).toHaveLength(L);
    expect(masked).not.toEqual(plain);
    expect(events.encoded).toEqual([
      expect.objectContaining({ round: 1, masked: true, bytes: L * 4, norm: Math.sqrt(norm2(delta)) }),
    ]);

    server.receiveMasked(1, masked);
    for (const [i, p] of peers.entries()) {
      p.receiveInbox(inboxes.get(i + 2)!);
      server.receiveMasked(i + 2, await p.mask(peerInputs[i]));
    }
    const requests = server.closeMasked();
    socket.deliver('secagg:unmask', { round: 1, attempt: 1, ...packUnmask(requests.get(1)!) });
    const [reveal] = socket.all('secagg:reveal');
    server.receiveReveal(1, unpackReveal(reveal, 3));
    peers.forEach((p, i) => server.receiveReveal(i + 2, p.receiveUnmask(requests.get(i + 2)!)));
    const expected = plain.slice();
    for (const x of peerInputs) addInto(expected, x);
    expect(await server.closeUnmask()).toEqual(expected);
    expect(events.secagg?.map((s) => s.step)).toEqual(['keys', 'shares', 'inbox', 'reveal']);
    expect(events.error).toBeUndefined();
  });

  it('ring round without secure aggregation (DP): sends only { round, attempt, delta }, the loss inside the vector', async () => {
    const { socket, trainer, events } = await joined();
    socket.deliver('round:start', { ...roundStart(1, 1, false), encoding: plan });
    await settle();
    trainer.trainings[0].finish(delta);
    await settle();
    await sent(socket, 'update');
    const [u] = socket.all('update');
    expect(Object.keys(u).sort()).toEqual(['attempt', 'delta', 'round']);
    expect(u).toMatchObject({ round: 1, attempt: 1 });
    const ring = new Uint32Array(u.delta);
    expect(ring).toEqual(encodeContribution(delta, EXAMPLES, plan, createSecureRandom(), 0.5).ring);
    // The server reads the loss only from the (here one-client) sum.
    expect(decodeAggregate(ring, 1, plan).meanLoss).toBe(0.5);
    expect(events.encoded).toEqual([expect.objectContaining({ round: 1, masked: false, bytes: L * 4 })]);
    // Locally the client still reports what it trained (it stays in the browser).
    expect(events.trained).toEqual([{ round: 1, loss: 0.5, trainMs: 7, numExamples: EXAMPLES, threads: 1 }]);
  });

  it('gives up on a secure round whose inbox does not come by the deadline (fake clock) and goes idle', async () => {
    const { socket, trainer, events, client, clock } = await joined();
    socket.deliver('round:start', roundStart(1, 1, true));
    await settle();
    clock.advance(DEADLINE_MS); // the deadline counts from the end of training, not from round:start
    trainer.trainings[0].finish(delta);
    await settle();
    clock.advance(DEADLINE_MS - 1);
    await settle();
    expect(client.state).toBe('training');
    expect(events.error).toBeUndefined();
    clock.advance(1);
    await settle();
    expect(client.state).toBe('idle');
    expect(events.error?.map((e) => e.message)).toEqual([
      'round 1: no key shares arrived before the deadline; update not sent',
    ]);
    expect(socket.all('update')).toEqual([]);
    expect(clock.pending).toBe(0);
  });

  it('a retry of an aborted secure round while waiting for its inbox cancels the wait and joins the new attempt', async () => {
    const { socket, trainer, events, client, clock } = await joined();
    socket.deliver('round:start', roundStart(1, 1, true));
    await settle();
    trainer.trainings[0].finish(delta);
    await settle();
    expect(clock.pending).toBe(1); // the inbox deadline of attempt 1

    const r2 = roundStart(1, 2, true);
    socket.deliver('round:start', r2);
    await settle();
    expect(clock.pending).toBe(0);
    expect(trainer.trainings).toHaveLength(2);
    expect(socket.all('secagg:keys').map((k) => k.attempt)).toEqual([1, 2]);
    expect(client.state).toBe('training');

    // Attempt 2 runs to the end; attempt 1 never sends anything more.
    const { server, peers } = secureServer(r2.secagg!.tag);
    server.receiveKeys(1, socket.all('secagg:keys')[1]);
    peers.forEach((p, i) => server.receiveKeys(i + 2, p.advertise()));
    const rosters = server.closeKeys();
    socket.deliver('secagg:roster', { round: 1, attempt: 2, ...packRoster(rosters.get(1)!) });
    server.receiveShares(1, unpackShares(socket.all('secagg:shares')[0], 3));
    peers.forEach((p, i) => server.receiveShares(i + 2, p.receiveRoster(rosters.get(i + 2)!)));
    socket.deliver('secagg:inbox', { round: 1, attempt: 2, ...packInbox(server.closeShares().get(1)!) });
    trainer.trainings[1].finish(delta);
    await settle();
    clock.advance(10 * DEADLINE_MS);
    await settle();
    await sent(socket, 'update');
    expect(socket.all('update').map((u) => [u.round, u.attempt])).toEqual([[1, 2]]);
    expect(events.error).toBeUndefined();
    expect(client.state).toBe('idle');
  });

  it('released while waiting for its inbox (over-selection): stops waiting, sends nothing, joins the next round', async () => {
    const { socket, trainer, events, client, clock } = await joined();
    socket.deliver('round:start', roundStart(1, 1, true));
    await settle();
    trainer.trainings[0].finish(delta);
    await settle();
    expect(clock.pending).toBe(1); // waiting for the inbox
    socket.deliver('round:release', { round: 1, attempt: 2, step: 'keys' }); // not our attempt: ignored
    await settle();
    expect(clock.pending).toBe(1);
    socket.deliver('round:release', { round: 1, attempt: 1, step: 'keys' });
    await settle();
    expect(client.state).toBe('idle');
    expect(clock.pending).toBe(0);
    expect(events.released).toEqual([{ round: 1, attempt: 1 }]);
    socket.deliver('round:start', roundStart(2, 1, false));
    await settle();
    trainer.trainings[1].finish(delta);
    await settle();
    await sent(socket, 'update');
    expect(socket.all('update').map((u) => u.round)).toEqual([2]);
    expect(events.error).toBeUndefined();
  });

  it('released while training (plain round): the training runs out and its update is not sent', async () => {
    const { socket, trainer, events, client } = await joined();
    socket.deliver('round:start', roundStart(1, 1, false));
    await settle();
    socket.deliver('round:release', { round: 1, attempt: 1, step: 'update' });
    await settle();
    expect(client.state).toBe('training'); // the trainer cannot be interrupted
    trainer.trainings[0].finish(delta);
    await settle();
    expect(client.state).toBe('idle');
    expect(socket.all('update')).toEqual([]);
    expect(events.trained).toBeUndefined();
    socket.deliver('round:start', roundStart(2, 1, false));
    await settle();
    trainer.trainings[1].finish(delta);
    await settle();
    await sent(socket, 'update');
    expect(socket.all('update').map((u) => u.round)).toEqual([2]);
  });

  it('skips a round:start that comes while it is still training', async () => {
    const { socket, trainer, events } = await joined();
    socket.deliver('round:start', roundStart(1, 1, false));
    await settle();
    socket.deliver('round:start', roundStart(2, 1, false));
    await settle();
    expect(trainer.trainings.map((t) => t.round)).toEqual([1]);
    trainer.trainings[0].finish(delta);
    await settle();
    await sent(socket, 'update');
    expect(socket.all('update').map((u) => u.round)).toEqual([1]);
    expect(events.trained?.map((t) => t.round)).toEqual([1]);
  });

  it('holds an update finished offline and sends it after the welcome that follows the reconnect', async () => {
    const { socket, trainer, states } = await joined();
    socket.deliver('round:start', roundStart(1, 1, false));
    await settle();
    socket.drop();
    expect(states().at(-1)).toBe('disconnected');
    trainer.trainings[0].finish(delta);
    await settle();
    expect(socket.all('update')).toEqual([]);
    socket.open();
    expect(socket.all('hello')).toHaveLength(2); // hello again, resuming the session with its token
    expect(socket.all('hello')[1]).toEqual({
      protocolVersion: PROTOCOL_VERSION,
      source: 'node',
      resume: SESSION,
    });
    expect(socket.all('update')).toEqual([]); // not before the server knows us again
    socket.deliver('welcome', welcome);
    await settle();
    expect(socket.all('ready')).toHaveLength(2);
    await sent(socket, 'update');
    const ups = socket.all('update');
    expect(ups).toHaveLength(1);
    expect(new Float32Array(ups[0].delta)).toEqual(delta);
    expect(trainer.spawned).toBe(1); // preparation is reused
    const s: ClientState[] = states();
    expect(s.slice(s.indexOf('disconnected'))).toEqual(['disconnected', 'uploading', 'idle']);
  });

  it('sends its join token at the handshake, and with it the session it holds once it has one', async () => {
    let opts: ConnectOptions | null = null;
    const socket = new FakeSocket();
    const client = new AegisClient({
      serverUrl: 'http://fake.invalid',
      source: 'node',
      identity: memoryStore(),
      spawnTrainer: () => new Promise(() => {}),
      connect: (_url, o) => {
        opts = o;
        return socket;
      },
      clock: new FakeClock(),
      joinToken: 'the.token',
    });
    const auth = (): unknown => {
      let got: unknown;
      opts!.auth!((d) => (got = d));
      return got;
    };
    client.start();
    expect(auth()).toEqual({ token: 'the.token' });
    socket.open();
    socket.deliver('welcome', welcome);
    // A reconnect now offers the session (the token was spent on the first connection).
    expect(auth()).toEqual({
      token: 'the.token',
      session: { sessionId: welcome.sessionId, resumeToken: welcome.resumeToken },
    });
    client.stop();
    let plain: ConnectOptions | null = null;
    const other = new AegisClient({
      serverUrl: 'http://fake.invalid',
      source: 'node',
      spawnTrainer: () => new Promise(() => {}),
      connect: (_url, o) => {
        plain = o;
        return new FakeSocket();
      },
      clock: new FakeClock(),
    });
    other.start();
    expect(plain!.auth).toBeUndefined(); // no token, no auth: servers without tokens see what they always saw
    other.stop();
  });

  it('a handshake the server refuses (bad_token, bad_origin) fails the client with the reason; a transport error does not', async () => {
    const socket = new FakeSocket();
    const client = new AegisClient({
      serverUrl: 'http://fake.invalid',
      source: 'demo',
      spawnTrainer: () => new Promise(() => {}),
      connect: () => socket,
      clock: new FakeClock(),
      joinToken: 'x.y',
    });
    const rejected: Rejection[] = [];
    const errors: Error[] = [];
    client.on('rejected', (r) => rejected.push(r));
    client.on('error', (e) => errors.push(e));
    client.start();
    socket.deliver('connect_error', new Error('websocket error'));
    socket.deliver(
      'connect_error',
      Object.assign(new Error('x'), { data: { reason: 'not_a_reason', message: 'm' } }),
    );
    expect(client.state).toBe('connecting');
    socket.deliver(
      'connect_error',
      Object.assign(new Error('refused'), {
        data: { reason: 'bad_token', message: 'the join token has expired' },
      }),
    );
    expect(rejected).toEqual([
      { event: 'connect', reason: 'bad_token', message: 'the join token has expired' },
    ]);
    expect(errors.map((e) => e.message)).toEqual([
      'the server refused the connection (bad_token): the join token has expired',
    ]);
    expect(client.state).toBe('failed');
  });

  it('resumes a stored session; an expired one (bad_token) is dropped and a new one started', async () => {
    const socket = new FakeSocket();
    const identity = memoryStore();
    identity.set(JSON.stringify(SESSION));
    const client = new AegisClient({
      serverUrl: 'http://fake.invalid',
      source: 'demo',
      identity,
      spawnTrainer: () => new Promise(() => {}),
      connect: () => socket,
      clock: new FakeClock(),
    });
    client.start();
    socket.open();
    expect(socket.all('hello')).toEqual([
      { protocolVersion: PROTOCOL_VERSION, source: 'demo', resume: SESSION },
    ]);
    socket.deliver('rejected', { event: 'hello', reason: 'bad_token', message: 'no such session' });
    expect(identity.get()).toBeNull();
    expect(socket.all('hello')[1]).toEqual({ protocolVersion: PROTOCOL_VERSION, source: 'demo' });
    const fresh = { sessionId: 'a-new-session-00000', resumeToken: 'N'.repeat(43) };
    socket.deliver('welcome', { ...welcome, ...fresh });
    expect(JSON.parse(identity.get()!)).toEqual(fresh);
    expect(client.sessionId).toBe(fresh.sessionId);
    client.stop();
  });

  it('keeps the credentials of every welcome: a resume renews the token, and the next reconnect offers the new one', async () => {
    const { socket, identity, client } = await joined();
    expect(JSON.parse(identity.get()!)).toEqual(SESSION);
    socket.drop();
    socket.open();
    expect(socket.all('hello')[1].resume).toEqual(SESSION);
    const renewed = { ...SESSION, resumeToken: 'R'.repeat(55) };
    socket.deliver('welcome', { ...welcome, ...renewed });
    await settle();
    expect(JSON.parse(identity.get()!)).toEqual(renewed);
    socket.drop();
    socket.open();
    expect(socket.all('hello')[2].resume).toEqual(renewed);
    client.stop();
  });

  it('while its old connection still holds the session (session_taken), waits and says hello again', async () => {
    const { socket, clock, client } = await joined();
    socket.drop();
    socket.open();
    expect(socket.all('hello')).toHaveLength(2);
    socket.deliver('rejected', { event: 'hello', reason: 'session_taken', message: 'live elsewhere' });
    clock.advance(4999);
    expect(socket.all('hello')).toHaveLength(2);
    clock.advance(1);
    expect(socket.all('hello')).toHaveLength(3);
    expect(socket.all('hello')[2].resume).toEqual(SESSION);
    socket.deliver('welcome', welcome);
    await settle();
    // Other rejections of hello (e.g. already_identified) start nothing new.
    socket.deliver('rejected', { event: 'hello', reason: 'already_identified', message: '' });
    clock.advance(60_000);
    expect(socket.all('hello')).toHaveLength(3);
    expect(client.state).toBe('idle');
  });

  it('ignores secure-aggregation messages for another round or attempt', async () => {
    const { socket, events } = await joined();
    const r = roundStart(3, 2, true);
    const { server, peers } = secureServer(r.secagg!.tag);
    socket.deliver('round:start', r);
    await settle();
    server.receiveKeys(1, socket.all('secagg:keys')[0]);
    peers.forEach((p, i) => server.receiveKeys(i + 2, p.advertise()));
    const roster = packRoster(server.closeKeys().get(1)!);
    socket.deliver('secagg:roster', { round: 3, attempt: 1, ...roster });
    socket.deliver('secagg:roster', { round: 2, attempt: 2, ...roster });
    socket.deliver('secagg:unmask', { round: 3, attempt: 3, survivors: [1, 2, 3], dropped: [] });
    expect(socket.all('secagg:shares')).toEqual([]);
    expect(socket.all('secagg:refuse')).toEqual([]);
    expect(socket.all('secagg:reveal')).toEqual([]);
    expect(events.secagg?.map((s) => s.step)).toEqual(['keys']);
    socket.deliver('secagg:roster', { round: 3, attempt: 2, ...roster });
    expect(socket.all('secagg:shares')).toHaveLength(1);
  });

  it.each(ENGINES)(
    'refuses a request it must not answer, and reports it (%s engine)',
    async (_name, secureEngine) => {
      const { socket, events } = await joined({ secureEngine });
      socket.deliver('round:start', roundStart(1, 1, true));
      await settle();
      socket.deliver('secagg:unmask', { round: 1, attempt: 1, survivors: [2], dropped: [] }); // before any inbox
      await settle();
      expect(socket.all('secagg:refuse')).toEqual([
        { round: 1, attempt: 1, reason: 'wrong_phase', message: 'unmask request before inbox' },
      ]);
      expect(events.secagg?.at(-1)).toEqual({
        round: 1,
        step: 'refused',
        detail: 'wrong_phase: unmask request before inbox',
      });
    },
  );

  it('stop() ends a wait, the trainer and the connection; it cannot be started again', async () => {
    const { socket, trainer, client, clock, events } = await joined();
    socket.deliver('round:start', roundStart(1, 1, true));
    await settle();
    trainer.trainings[0].finish(delta);
    await settle();
    expect(clock.pending).toBe(1);
    client.stop();
    await settle();
    expect(clock.pending).toBe(0);
    expect(trainer.terminated()).toBe(true);
    expect(socket.connected).toBe(false);
    expect(client.state).toBe('stopped');
    expect(events.state?.at(-1)).toBe('stopped');
    expect(events.error).toBeUndefined();
    expect(() => client.start()).toThrow(/stopped; create a new one/);
  });
});

describe('AegisClient floors (the page sets them; the server cannot lower them)', () => {
  it('refuses a round below its floors: no training, the page hears why, the server the reason only', async () => {
    const { socket, trainer, events, client } = await joined({ floors: {} }); // default floors: secure aggregation required
    socket.deliver('round:start', roundStart(1, 1, false));
    await settle();
    expect(trainer.trainings).toEqual([]);
    expect(events.refused).toEqual([
      {
        round: 1,
        attempt: 1,
        reason: 'below_floor',
        message: expect.stringMatching(/requires secure aggregation/),
      },
    ]);
    expect(socket.all('round:refuse')).toEqual([{ round: 1, attempt: 1, reason: 'below_floor' }]);
    expect(socket.all('update')).toEqual([]);
    expect(client.state).toBe('idle');
    // A plan that meets the floors is taken.
    socket.deliver('round:start', roundStart(1, 2, true));
    await settle();
    expect(trainer.trainings.map((t) => t.round)).toEqual([1]);
    expect(socket.all('secagg:keys')).toHaveLength(1);
    expect(socket.all('round:refuse')).toHaveLength(1);
  });

  it('a cohort below the page minimum is refused before any key goes out', async () => {
    const { socket, trainer, events } = await joined({ floors: { minCohort: 5 } });
    socket.deliver('round:start', roundStart(2, 1, true)); // n = 3
    await settle();
    expect(events.refused?.map((r) => r.message)).toEqual([
      'the round has 3 clients; this page requires at least 5',
    ]);
    expect(socket.all('round:refuse')).toEqual([{ round: 2, attempt: 1, reason: 'below_floor' }]);
    expect(socket.all('secagg:keys')).toEqual([]);
    expect(trainer.trainings).toEqual([]);
  });

  it('a refused retry ends the wait for the old attempt inbox: nothing is masked or sent for either', async () => {
    const { socket, trainer, events, client, clock } = await joined({ floors: { minThreshold: 2 } });
    socket.deliver('round:start', roundStart(1, 1, true));
    await settle();
    trainer.trainings[0].finish(delta);
    await settle();
    expect(client.state).toBe('training'); // waiting for the inbox of attempt 1
    const below = roundStart(1, 2, true);
    below.secagg = { ...below.secagg!, t: 1 }; // under the hard minimum, whatever the floors say
    socket.deliver('round:start', below);
    await settle();
    expect(events.refused?.map((r) => r.reason)).toEqual(['below_floor']);
    expect(socket.all('round:refuse')).toEqual([{ round: 1, attempt: 2, reason: 'below_floor' }]);
    expect(client.state).toBe('idle');
    expect(clock.pending).toBe(0); // the inbox deadline of attempt 1 is gone
    expect(socket.all('update')).toEqual([]);
    expect(trainer.trainings).toHaveLength(1);
    expect(events.error).toBeUndefined();
  });

  it('floors that are not floors are an error at construction', () => {
    const make = (floors: Partial<Floors>) =>
      new AegisClient({ serverUrl: 'http://fake.invalid', source: 'node', spawnTrainer: fakeSpawn, floors });
    expect(() => make({ minCohort: 2 })).toThrow(RangeError);
    expect(() => make({ minNoiseMultiplier: -1 })).toThrow(/minNoiseMultiplier/);
    expect(() => make({ minCohort: 10 })).not.toThrow();
  });
});

const fakeSpawn = (): Promise<TrainerPort> => Promise.resolve(fakeTrainer().port);

describe('AegisClient participation (one tab of a browser profile at a time)', () => {
  /** A slot the test hands out: the client waits until grant(). */
  function slotGate() {
    let grant!: (p: Participation) => void;
    let released = 0;
    let signal: AbortSignal | null = null;
    const take = (onWaiting: () => void, s: AbortSignal): Promise<Participation> => {
      signal = s;
      onWaiting();
      return new Promise((res) => (grant = res));
    };
    return {
      take,
      grant: () => grant({ release: () => void released++ }),
      released: () => released,
      aborted: () => signal?.aborted ?? false,
    };
  }

  function client(take: (onWaiting: () => void, s: AbortSignal) => Promise<Participation>) {
    const socket = new FakeSocket();
    let connects = 0;
    const c = new AegisClient({
      serverUrl: 'http://fake.invalid',
      source: 'demo',
      spawnTrainer: fakeSpawn,
      connect: () => {
        connects++;
        return socket;
      },
      participation: take,
      floors: { requireSecAgg: false },
    });
    const states: ClientState[] = [];
    c.on('state', (s) => states.push(s));
    return { c, socket, states, connects: () => connects };
  }

  it('waits while another tab holds the slot, connects once it frees, and gives it back on stop()', async () => {
    const gate = slotGate();
    const { c, socket, states, connects } = client(gate.take);
    c.start();
    c.start(); // idempotent while waiting
    expect(c.state).toBe('waiting');
    await settle();
    expect(connects()).toBe(0);
    gate.grant();
    await settle();
    expect(connects()).toBe(1);
    socket.open();
    socket.deliver('welcome', welcome);
    await settle();
    expect(c.state).toBe('idle');
    expect(states).toEqual(['waiting', 'connecting', 'preparing', 'idle']);
    expect(gate.released()).toBe(0);
    c.stop();
    expect(gate.released()).toBe(1);
  });

  it('stopped while waiting: the wait is abandoned, and a slot granted later is handed straight back', async () => {
    const gate = slotGate();
    const { c, connects } = client(gate.take);
    c.start();
    c.stop();
    expect(gate.aborted()).toBe(true);
    gate.grant();
    await settle();
    expect(connects()).toBe(0);
    expect(gate.released()).toBe(1);
    expect(c.state).toBe('stopped');
  });
});

function norm2(v: Float32Array): number {
  let s = 0;
  for (const x of v) s += x * x;
  return s;
}

describe('AegisClient task pinning (the page agreed to a task; the server may not swap it)', () => {
  const blobs = (): Task =>
    JSON.parse(readFileSync(new URL('../demo/tasks/blobs.task.json', import.meta.url), 'utf8')) as Task;
  /** What a server that wants the inputs back ships instead: the same shapes, a 4096-wide first layer. */
  const memoriser = (): Task => {
    const t = structuredClone(blobs()) as any;
    t.model.topology.config.layers[0].config.units = 4096;
    return t as Task;
  };
  const pageData = async () => blobExamples({ seed: 5, count: 40 });
  const blobWelcome: Welcome = { ...welcome, task: blobs(), data: { kind: 'page' } };

  it("trains the pinned task on the page's own data: the trainer gets the task and the packed examples", async () => {
    const { trainer, events, client, socket } = await joined({ task: blobs(), data: pageData }, blobWelcome);
    expect(client.state).toBe('idle');
    expect(events.task).toEqual([{ name: 'blobs', hash: checkTask(blobs()).hash, numParams: 212 }]);
    expect(trainer.inits).toHaveLength(1);
    const init = trainer.inits[0];
    expect(init.task).toEqual(checkTask(blobs()).task);
    expect(init.data.kind).toBe('inline');
    const ex = (init.data as { examples: { x: Float32Array; y: Int32Array; n: number } }).examples;
    const list = await pageData();
    expect(ex.n).toBe(40);
    expect(Array.from(ex.x.subarray(0, 8))).toEqual(Array.from(Float32Array.from(list[0].x)));
    expect(Array.from(ex.y)).toEqual(list.map((e) => e.y));
    expect(socket.all('ready')).toHaveLength(1);
  });

  it('a server that ships another model is refused at its welcome: task_mismatch, no trainer, no data read', async () => {
    let read = 0;
    const { trainer, events, client, socket } = await joined(
      { task: blobs(), data: async () => (read++, pageData()) },
      { ...blobWelcome, task: memoriser() },
    );
    expect(client.state).toBe('failed');
    expect(events.error).toHaveLength(1);
    expect(events.error![0]).toBeInstanceOf(ProtocolError);
    expect((events.error![0] as ProtocolError).reason).toBe('task_mismatch');
    expect(events.error![0].message).toMatch(/is not the task this page agreed to/);
    expect(trainer.spawned).toBe(0);
    expect(read).toBe(0);
    expect(socket.all('ready')).toEqual([]);
    expect(socket.connected).toBe(false);
  });

  it('pinned by hash alone, the same; a malformed pin or one that contradicts the task is an error at once', async () => {
    const bad = await joined(
      { taskHash: checkTask(blobs()).hash, data: pageData },
      { ...blobWelcome, task: memoriser() },
    );
    expect((bad.events.error![0] as ProtocolError).reason).toBe('task_mismatch');
    const good = await joined({ taskHash: checkTask(blobs()).hash, data: pageData }, blobWelcome);
    expect(good.client.state).toBe('idle');
    const make = (o: Partial<ClientOptions>) =>
      new AegisClient({
        serverUrl: 'x',
        source: 'node',
        spawnTrainer: () => Promise.reject(new Error('no')),
        ...o,
      });
    expect(() => make({ taskHash: 'ABC' })).toThrow(/64 lowercase hex/);
    expect(() => make({ task: blobs(), taskHash: checkTask(memoriser()).hash })).toThrow(/not the hash/);
    const broken = structuredClone(blobs()) as any;
    broken.model.topology.config.layers[0].class_name = 'Lambda';
    expect(() => make({ task: broken })).toThrow(/only stock layers/);
  });

  it('a round of another task, or of another plan, is sat out with task_mismatch (the server counts the reason)', async () => {
    const { socket, trainer, events } = await joined({ task: TASK });
    const other = roundStart(1, 1, false);
    other.task = presetTask('medium', TASK.plan);
    socket.deliver('round:start', other);
    await settle();
    const faster = roundStart(1, 2, false);
    faster.train = { ...TASK.plan, learningRate: 1 };
    socket.deliver('round:start', faster);
    await settle();
    expect(trainer.trainings).toEqual([]);
    expect(events.refused?.map((r) => r.reason)).toEqual(['task_mismatch', 'task_mismatch']);
    expect(socket.all('round:refuse')).toEqual([
      { round: 1, attempt: 1, reason: 'task_mismatch' },
      { round: 1, attempt: 2, reason: 'task_mismatch' },
    ]);
    socket.deliver('round:start', roundStart(1, 3, false));
    await settle();
    expect(trainer.trainings.map((t) => t.round)).toEqual([1]);
  });

  it("trains on the task's plan, not on fields of round:start that normalising drops", async () => {
    // proximalMu -1000 (or NaN) normalises away, so the plan compares equal to the pinned one; training on
    // the raw value would run FedProx with a negative weight and blow the model up.
    const { socket, trainer } = await joined({ task: TASK });
    const r = roundStart(1, 1, false);
    r.train = { ...TASK.plan, proximalMu: -1000, logitAdjust: false, extra: 1 } as unknown as TrainConfig;
    socket.deliver('round:start', r);
    await settle();
    expect(trainer.trainings.map((t) => t.plan)).toEqual([TASK.plan]);
  });

  it('without a pin, the first welcome pins its task: a later welcome with another is refused', async () => {
    const { socket, client, events } = await joined();
    expect(events.task?.map((t) => t.name)).toEqual(['tiny']);
    socket.drop();
    socket.open();
    socket.deliver('welcome', { ...welcome, task: presetTask('medium', TASK.plan) });
    await settle();
    expect(client.state).toBe('failed');
    expect((events.error![0] as ProtocolError).reason).toBe('task_mismatch');
  });

  it('page data that does not fit the task fails before a trainer is spawned', async () => {
    const { client, trainer, events } = await joined(
      { task: blobs(), data: async () => [{ x: [1, 2, 3], y: 0 }] },
      blobWelcome,
    );
    expect(client.state).toBe('failed');
    expect(events.error?.[0].message).toMatch(/example 0 must have 8 features/);
    expect(trainer.spawned).toBe(0);
  });
});

describe('AegisClient as a guest on the host page', () => {
  it('steers the trainer through the guest policy, sits rounds out while it holds off, and lets go on stop', async () => {
    let holdOff: string | null = 'the browser asks to save data';
    const attached: TrainerPort[] = [];
    let detached = 0;
    const guest = {
      attach: (t: TrainerPort) => {
        attached.push(t);
        return () => void detached++;
      },
      holdOff: () => holdOff,
    };
    const { client, socket, trainer } = await joined({ guest });
    const heldOff: ClientEvents['heldOff'][] = [];
    client.on('heldOff', (e) => heldOff.push(e));
    expect(attached).toEqual([trainer.port]);
    socket.deliver('round:start', roundStart(1, 1, false));
    await settle();
    expect(trainer.trainings).toHaveLength(0);
    expect(heldOff).toEqual([{ round: 1, reason: 'the browser asks to save data' }]);
    expect(socket.all('round:refuse')).toEqual([]); // nothing about the visitor goes to the server
    holdOff = null;
    socket.deliver('round:start', roundStart(2, 1, false));
    await settle();
    expect(trainer.trainings.map((t) => t.round)).toEqual([2]);
    client.stop();
    expect(detached).toBe(1);
  });
});
