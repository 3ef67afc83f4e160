import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSecureRandom } from '../../shared/dp/secure-random.ts';
import { encodeContribution, vectorLength } from '../../shared/fl/encoding.ts';
import type { Ack, RoundStart, ServerToClientEvents } from '../../shared/protocol/messages.ts';
import type { UpdateLimits } from '../../shared/protocol/validate.ts';
import { SecAggClientSession } from '../../shared/secagg/client-session.ts';
import { packReveal, packShares, unpackInbox, unpackRoster, unpackUnmask } from '../../shared/secagg/wire.ts';
import { ProtocolError } from '../../shared/base/errors.ts';
import type { ClientLink } from '../clients.ts';
import type { BackendConnection } from '../socket.ts';
import { nextEvent } from '../test-fixtures.ts';
import { eventually, Harness, HELLO, META, P, useRedis } from './bus-fixture.ts';
import { PARTIAL_FLUSH_MS, type GatewayBus } from './gateway-bus.ts';
import { decodeUp, UP_STREAM, type UpFrame } from './frames.ts';

const rand = createSecureRandom();
const MAX_EXAMPLES = 64;
const PRESUM: UpdateLimits = { numParams: P, maxExamples: MAX_EXAMPLES, ringLength: vectorLength(P) };

let h: Harness;
let admin: Redis;

const redisUrl = useRedis();
beforeEach(async () => {
  h = new Harness(redisUrl(), {
    secagg: true,
    // Five, so that with one client gone each secret keeps t = 3 holders (k = 4).
    minClients: 5,
    clientsPerRound: 5,
    minUpdates: 3,
    rounds: 1,
    maxExamplesPerClient: MAX_EXAMPLES,
  });
  await h.start();
  admin = await h.redis('admin');
});
afterEach(async () => {
  await h.close();
});

/**
 * A client on a gateway that speaks the real secure-aggregation protocol through the bus, as a browser
 * would through its socket: every request it is sent is answered with a message on its connection.
 */
class BusClient implements ClientLink {
  conn!: BackendConnection;
  id = '';
  start: RoundStart | null = null;
  session: SecAggClientSession | null = null;
  /** The answers to its update (one per update sent). */
  updateAcks: Ack[] = [];
  /** What it sent as its update (the masked vector). */
  masked: Uint32Array | null = null;
  /** Closes its connection right after sending its update (before any answer). */
  leaveAfterUpdate = false;
  /** Masks its input but sends no update (a test sends what it likes instead). */
  holdUpdate = false;
  constructor(readonly delta: Float32Array) {}
  send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    const m = args[0] as any;
    if (event === 'welcome') this.id = m.sessionId;
    setTimeout(() => void this.react(event, m), 0);
  }
  private say(event: Parameters<BackendConnection['message']>[0], raw: unknown): Promise<Ack> {
    return Promise.resolve(this.conn.message(event, raw));
  }
  private async react(event: string, m: any): Promise<void> {
    const ref = { round: m?.round, attempt: m?.attempt };
    if (event === 'round:start') {
      this.start = m;
      this.session = new SecAggClientSession({ ...m.secagg, vectorLength: vectorLength(P) });
      await this.say('secagg:keys', { ...ref, ...this.session.advertise() });
    } else if (event === 'secagg:roster') {
      await this.say('secagg:shares', {
        ...ref,
        ...packShares(this.session!.receiveRoster(unpackRoster(m, 100))),
      });
    } else if (event === 'secagg:inbox') {
      this.session!.receiveInbox(unpackInbox(m, 100));
      const enc = encodeContribution(this.delta, 8, this.start!.encoding!, rand, 1);
      const y = (this.masked = await this.session!.mask(enc.ring));
      if (this.holdUpdate) return;
      const sent = this.say('update', { ...ref, delta: y.slice().buffer });
      // Gone before its answer: the gateway has no one to answer any more.
      if (this.leaveAfterUpdate) return this.conn.close();
      this.updateAcks.push(await sent);
    } else if (event === 'secagg:unmask') {
      const r = this.session!.receiveUnmask(unpackUnmask(m, 100));
      await this.say('secagg:reveal', { ...ref, ...packReveal(r) });
    }
  }
}

function join(gw: GatewayBus, n: number): BusClient[] {
  return Array.from({ length: n }, () => {
    const c = new BusClient(Float32Array.from({ length: P }, () => (Math.random() - 0.5) * 0.02));
    c.conn = gw.connect(META, c, () => {});
    void Promise.resolve(c.conn.message('hello', HELLO)).then(() =>
      c.conn.message('ready', { backend: 'cpu' }),
    );
    return c;
  });
}

async function upFrames(): Promise<UpFrame[]> {
  const entries = await admin.xrangeBuffer(UP_STREAM, '-', '+');
  return entries.map(([, fields]) => decodeUp(fields[1])!);
}

const reported = (): number => h.coordinator.status().reported;
/** Whether member i of attempt 1.1 has a claim its gateway has not summed (the intake's own record). */
const pending = (i: number): boolean =>
  (
    h.coordinator as unknown as { intake: { claimPending: (r: object, m: number) => boolean } }
  ).intake.claimPending({ round: 1, attempt: 1 }, i);

describe('gateways that sum their clients masked inputs (--gateway-sum on)', () => {
  it('each update goes up as a claim; the inputs count when the partial sum lands, and the round is exact', async () => {
    const { gw, clock } = await h.gateway('gw-a', { presum: PRESUM });
    const end = nextEvent(h.coordinator, 'roundEnd');
    const clients = join(gw, 5);
    await eventually(() => clients.every((c) => c.updateAcks.length === 1), 'five updates answered');
    expect(clients.map((c) => c.updateAcks[0])).toEqual(Array(5).fill({ ok: true }));
    // Claimed, not yet summed: nothing counts, and no vector went to Redis.
    expect(reported()).toBe(0);
    let frames = await upFrames();
    const claims = frames.filter((f) => f.t === 'claim');
    expect(claims).toHaveLength(5);
    expect(frames.some((f) => f.t === 'msg' && f.e === 'update')).toBe(false);
    expect(frames.some((f) => f.t === 'partial')).toBe(false);
    for (const f of claims)
      expect(Object.keys(f.t === 'claim' ? f.r : {}).sort()).toEqual(['attempt', 'digest', 'round']);

    // The flush window passes: one partial sum for the attempt, with the five members.
    clock.advance(PARTIAL_FLUSH_MS);
    await eventually(
      () => reported() === 5 || h.coordinator.status().phase !== 'training',
      'the sum counted',
    );
    frames = await upFrames();
    const partials = frames.filter((f) => f.t === 'partial');
    expect(partials).toHaveLength(1);
    const p = partials[0].t === 'partial' ? partials[0].r : null;
    expect([...p!.members].sort()).toEqual(clients.map((c) => c.start!.secagg!.index).sort());
    // It is the sum of what the clients sent, mod 2^32.
    const sum = new Uint32Array(vectorLength(P));
    for (const c of clients) for (let j = 0; j < sum.length; j++) sum[j] = (sum[j] + c.masked![j]) >>> 0;
    expect(p!.sum).toEqual(sum);

    const s = await end;
    expect(s.clients).toBe(5);
    // The model moved by the mean of the five deltas (the harness starts every weight at 0.01).
    const w = h.coordinator.globalWeights;
    let err = 0;
    for (let j = 0; j < P; j++) {
      const mean = clients.reduce((a, c) => a + c.delta[j], 0) / 5;
      err = Math.max(err, Math.abs(w[j] - (0.01 + mean)));
    }
    expect(err).toBeLessThan(1e-5);
  });

  it('a client that leaves right after sending its update still has its input summed', async () => {
    const { gw, clock } = await h.gateway('gw-a', { presum: PRESUM });
    const end = nextEvent(h.coordinator, 'roundEnd');
    const clients = join(gw, 5);
    clients[4].leaveAfterUpdate = true;
    await eventually(
      () => clients.slice(0, 4).every((c) => c.updateAcks.length === 1),
      'four updates answered',
    );
    await eventually(() => h.connected() === 4, 'the close reached the coordinator');
    // Its claim went up before its close, and was accepted: the gateway holds its vector for the sum.
    expect((await upFrames()).filter((f) => f.t === 'claim')).toHaveLength(5);
    expect(h.coordinator.status().secagg?.phase).toBe('masked');
    clock.advance(PARTIAL_FLUSH_MS);
    const s = await end;
    expect(s.clients).toBe(5);
    const partials = (await upFrames()).filter((f) => f.t === 'partial');
    expect(partials.flatMap((f) => (f.t === 'partial' ? f.r.members : []))).toContain(
      clients[4].start!.secagg!.index,
    );
  });

  it('a malformed or wrong-length update is refused at the gateway as the coordinator would, and never reaches Redis', async () => {
    const { gw } = await h.gateway('gw-a', { presum: PRESUM });
    const clients = join(gw, 5);
    for (const c of clients) c.holdUpdate = true;
    await eventually(() => clients.every((c) => c.masked), 'every input masked');
    const before = (await admin.xlen(UP_STREAM)) as number;
    const c = clients[0];
    const L = vectorLength(P);
    const bad: unknown[] = [
      { round: 1, attempt: 1, delta: new Uint32Array(L - 1).buffer },
      { round: 1, attempt: 1, delta: new Float32Array(P).buffer },
      { round: 1, attempt: 1, numExamples: 8, trainMs: 1, loss: 1, delta: new Uint32Array(L).buffer },
      { round: 'one', attempt: 1, delta: new Uint32Array(L).buffer },
      null,
    ];
    for (const raw of bad) {
      const ack = await c.conn.message('update', raw);
      let coordinatorSays = 'accepted';
      try {
        h.coordinator.update(c.id, raw);
      } catch (e) {
        coordinatorSays = (e as ProtocolError).reason;
      }
      expect(ack.ok).toBe(false);
      expect(ack.ok === false && ack.reason).toBe(coordinatorSays);
    }
    expect(await admin.xlen(UP_STREAM)).toBe(before);
    expect(reported()).toBe(0);
  });

  it('a claimed vector the gateway let go before its answer came is voided at the coordinator; a re-send counts', async () => {
    const { gw, clock } = await h.gateway('gw-a', { presum: PRESUM, answerTimeoutMs: 1000 });
    const clients = join(gw, 5);
    for (const c of clients) c.holdUpdate = true;
    await eventually(() => clients.every((c) => c.masked), 'every input masked');
    const c = clients[0];
    const member = c.start!.secagg!.index;
    const raw = { round: 1, attempt: 1, delta: c.masked!.slice().buffer };
    const first = Promise.resolve(c.conn.message('update', raw));
    // The gateway stops waiting (and lets the vector go) before the coordinator's answer can arrive.
    clock.advance(1000 + PARTIAL_FLUSH_MS + 1);
    expect(await first).toMatchObject({ ok: false, reason: 'internal_error' });
    await eventually(
      () => h.logs.some((l) => /let 1 claimed input\(s\) go/.test(l)),
      'the void at the coordinator',
    );
    expect(pending(member)).toBe(false);
    // The client sends again: a new claim (not a duplicate of the voided one), summed at the next flush.
    expect(await c.conn.message('update', raw)).toEqual({ ok: true });
    expect(pending(member)).toBe(true);
    clock.advance(PARTIAL_FLUSH_MS);
    await eventually(() => reported() === 1, 'the re-sent input counted');
  });
});
