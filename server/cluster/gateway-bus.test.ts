import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Ack } from '../../shared/protocol/messages.ts';
import { FENCE_KEY } from '../redis/lease.ts';
import { issueResumeToken } from '../sessions.ts';
import { metricValue } from '../test-fixtures.ts';
import { eventually, Harness, HELLO, META, RESUME_KEY, useRedis } from './bus-fixture.ts';
import { downStream, encodeFrame, gatewayKey, HEARTBEAT_MS, MAX_MESSAGE_DEPTH } from './frames.ts';

let h: Harness;

const redisUrl = useRedis();
beforeEach(async () => {
  h = new Harness(redisUrl());
});
afterEach(async () => {
  await h.close();
});

const nested = (depth: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
};

describe('GatewayBus with a coordinator', () => {
  it('a hello through a gateway gets a welcome on that link and an ok ack', async () => {
    await h.start();
    const { gw } = await h.gateway('gw-a');
    const a = h.client(gw);
    const b = h.client(gw);
    const ack = await a.say('hello', HELLO);
    expect(ack).toEqual({ ok: true });
    // The welcome went to a's link only, before its ack resolved.
    expect(a.link.events()).toEqual(['welcome']);
    expect(a.link.last('welcome')).toMatchObject({ sessionId: expect.any(String) });
    expect(b.link.sent).toEqual([]);
    expect(h.connected()).toBe(1);
    expect(gw.pendingAnswers).toBe(0);
  });

  it('answers the messages of one connection in order, after the frames sent before each answer', async () => {
    await h.start();
    const { gw } = await h.gateway('gw-a');
    const a = h.client(gw);
    const order: number[] = [];
    const seenAtAck: string[][] = [];
    const sayAll: [Parameters<typeof a.say>[0], unknown][] = [
      ['hello', HELLO],
      ['ready', { backend: 'cpu' }],
      ['update', { round: 'not a number' }],
      ['hello', HELLO], // a second hello on an identified connection
      ['round:refuse', null],
    ];
    const acks = await Promise.all(
      sayAll.map(([e, raw], i) =>
        a.say(e, raw).then((r) => {
          order.push(i);
          seenAtAck.push(a.link.events());
          return r;
        }),
      ),
    );
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(acks[0]).toEqual({ ok: true });
    expect(acks[1]).toEqual({ ok: true });
    expect(acks[2]).toMatchObject({ ok: false, reason: 'malformed' });
    expect(acks[3]).toMatchObject({ ok: false, reason: 'already_identified' });
    expect(acks[4]).toMatchObject({ ok: false });
    // The welcome was on the link when the hello's answer came.
    expect(seenAtAck[0]).toContain('welcome');
  });

  it('accepts a resume token issued with the shared key, refuses one with another key or forged', async () => {
    await h.start();
    const { gw, clock } = await h.gateway('gw-a');
    const a = h.client(gw);
    await a.say('hello', HELLO);
    const { sessionId, resumeToken } = a.link.last('welcome') as { sessionId: string; resumeToken: string };
    // The token the coordinator issued checks out at the gateway (the shared key).
    expect(gw.sessionOf({ sessionId, resumeToken })).toBe(sessionId);
    expect(
      gw.sessionOf({ sessionId, resumeToken: issueResumeToken(RESUME_KEY, sessionId, 3, clock.now()) }),
    ).toBe(sessionId);
    const other = new Uint8Array(32).fill(9);
    expect(
      gw.sessionOf({ sessionId, resumeToken: issueResumeToken(other, sessionId, 0, clock.now()) }),
    ).toBeNull();
    // Another session's token does not resume this one; nor does garbage.
    const otherId = 'AAAAAAAAAAAAAAAAAAAAAA';
    expect(
      gw.sessionOf({ sessionId, resumeToken: issueResumeToken(RESUME_KEY, otherId, 0, clock.now()) }),
    ).toBeNull();
    for (const bad of [null, undefined, 'x', { sessionId }, { sessionId, resumeToken: 'A'.repeat(55) }])
      expect(gw.sessionOf(bad)).toBeNull();
  });

  it('drops a connection that closed right after sending: no send to it, nothing left waiting', async () => {
    await h.start();
    const { gw } = await h.gateway('gw-a');
    const a = h.client(gw);
    void a.say('hello', HELLO);
    void a.say('ready', { backend: 'cpu' });
    expect(gw.pendingAnswers).toBe(2);
    a.conn.close();
    expect(gw.pendingAnswers).toBe(0);
    expect(gw.size).toBe(0);
    // A message on the closed connection is not forwarded.
    expect(await a.say('ready', { backend: 'cpu' })).toMatchObject({ ok: false, reason: 'internal_error' });
    expect(gw.pendingAnswers).toBe(0);
    // A second client's answer comes after the coordinator handled all of the first one's frames (one stream each way).
    const b = h.client(gw);
    expect(await b.say('hello', HELLO)).toEqual({ ok: true });
    expect(a.link.sent).toEqual([]);
    await eventually(() => h.connected() === 1, 'only b connected at the coordinator');
    expect(h.bus.connections()).toEqual({ 'gw-a': 1 });
  });

  it('refuses a hello from an observer-only connection, and one resuming another session', async () => {
    await h.start();
    const { gw } = await h.gateway('gw-a');
    const victim = h.client(gw);
    await victim.say('hello', HELLO);
    const { sessionId } = victim.link.last('welcome') as { sessionId: string };

    const observer = h.client(gw, { ...META, observerOnly: true, observe: true });
    expect(await observer.say('hello', HELLO)).toMatchObject({ ok: false, reason: 'bad_token' });
    // Let in to resume session X, it may not resume the victim's.
    const resumer = h.client(gw, { ...META, resumes: 'XXXXXXXXXXXXXXXXXXXXXX' });
    const forged = { sessionId, resumeToken: 'A'.repeat(55) };
    expect(await resumer.say('hello', { ...HELLO, resume: forged })).toMatchObject({
      ok: false,
      reason: 'bad_token',
    });
    // An open connection with the victim's id and a forged (or another key's) token: refused too.
    const open = h.client(gw);
    expect(await open.say('hello', { ...HELLO, resume: forged })).toMatchObject({ ok: false });
    const otherKey = issueResumeToken(new Uint8Array(32).fill(1), sessionId, 0, h.coordClock.now());
    expect(await open.say('hello', { ...HELLO, resume: { sessionId, resumeToken: otherKey } })).toMatchObject(
      {
        ok: false,
      },
    );
    for (const c of [observer, resumer, open]) expect(c.link.events()).not.toContain('welcome');
    expect(h.connected()).toBe(1);
    // The victim still holds its session: its messages are heard.
    expect(await victim.say('ready', { backend: 'cpu' })).toEqual({ ok: true });
  });

  it('refuses a message nested too deep at the gateway, without counting it as an internal error', async () => {
    await h.start();
    const { gw, metrics } = await h.gateway('gw-a');
    const a = h.client(gw);
    // Deep enough to make v8's serializer throw (RangeError) had it been forwarded.
    expect(await a.say('hello', nested(20_000))).toMatchObject({ ok: false, reason: 'malformed' });
    expect(await a.say('update', nested(MAX_MESSAGE_DEPTH + 1))).toMatchObject({
      ok: false,
      reason: 'malformed',
    });
    expect(gw.pendingAnswers).toBe(0);
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'message' })).toBe(0);
    // Within the bound it is forwarded: the coordinator answers (and refuses it as the wrong shape).
    expect(await a.say('hello', nested(MAX_MESSAGE_DEPTH - 1))).toMatchObject({
      ok: false,
      reason: 'malformed',
    });
    // The connection still works.
    expect(await a.say('hello', HELLO)).toEqual({ ok: true });
  });

  it('answers a message v8 cannot serialize at once, leaving nothing waiting', async () => {
    await h.start();
    const { gw } = await h.gateway('gw-a');
    const a = h.client(gw);
    // Not something socket.io can deliver (JSON and binary only); the gateway still must not hang on it.
    expect(await a.say('hello', { f: () => 1 })).toMatchObject({ ok: false, reason: 'internal_error' });
    expect(gw.pendingAnswers).toBe(0);
    expect(await a.say('hello', HELLO)).toEqual({ ok: true });
  });
});

describe('GatewayBus without an answering coordinator', () => {
  it('bounds the answers one connection may await; other connections are unaffected', async () => {
    const { gw } = await h.gateway('gw-a');
    const flood = h.client(gw);
    const quiet = h.client(gw);
    const limit = 128;
    const answers: Promise<Ack>[] = [];
    for (let i = 0; i < limit + 50; i++) answers.push(flood.say('ready', { backend: 'cpu' }));
    expect(gw.pendingAnswers).toBe(limit);
    const early = await Promise.all(answers.slice(limit));
    for (const r of early) expect(r).toMatchObject({ ok: false, reason: 'rate_limited' });
    void quiet.say('hello', HELLO);
    expect(gw.pendingAnswers).toBe(limit + 1);
    flood.conn.close();
    expect(gw.pendingAnswers).toBe(1);
  });

  it('refuses a message the coordinator does not answer in time, and forgets it', async () => {
    const { gw, clock } = await h.gateway('gw-a', { answerTimeoutMs: 5000 });
    const a = h.client(gw);
    const p = a.say('hello', HELLO);
    expect(gw.pendingAnswers).toBe(1);
    clock.advance(5000);
    expect(await p).toMatchObject({ ok: false, reason: 'internal_error' });
    expect(gw.pendingAnswers).toBe(0);
  });

  it('on a fence change drops every connection once and refuses every pending message', async () => {
    const admin = await h.redis('admin');
    await admin.set(FENCE_KEY, '4');
    const { gw, clock } = await h.gateway('gw-a');
    const drops: string[] = [];
    const a = h.client(gw, META, () => drops.push('a'));
    const b = h.client(gw, META, () => drops.push('b'));
    const pending = [a.say('hello', HELLO), b.say('hello', HELLO), b.say('ready', { backend: 'cpu' })];
    // The same fence: nothing happens.
    clock.advance(HEARTBEAT_MS);
    await new Promise((r) => setTimeout(r, 50));
    expect(drops).toEqual([]);
    await admin.incr(FENCE_KEY);
    clock.advance(HEARTBEAT_MS);
    await eventually(() => drops.length === 2, 'both connections dropped');
    expect(drops.sort()).toEqual(['a', 'b']);
    for (const r of await Promise.all(pending))
      expect(r).toMatchObject({
        ok: false,
        reason: 'internal_error',
        message: expect.stringMatching(/changed/),
      });
    expect(gw.pendingAnswers).toBe(0);
    expect(h.logs.join('\n')).toMatch(/fence 4 -> 5/);
  });

  it('drops its connections when it finds its own heartbeat lapsed (the coordinator may have closed them)', async () => {
    const admin = await h.redis('admin');
    const { gw, clock } = await h.gateway('gw-a');
    const drops: string[] = [];
    h.client(gw, META, () => drops.push('a'));
    clock.advance(HEARTBEAT_MS);
    await new Promise((r) => setTimeout(r, 50));
    expect(drops).toEqual([]);
    expect(await admin.exists(gatewayKey('gw-a'))).toBe(1);
    await admin.del(gatewayKey('gw-a'));
    clock.advance(HEARTBEAT_MS);
    await eventually(() => drops.length === 1, 'the connection dropped');
    // The key is back: the gateway lives on, for the clients that reconnect.
    expect(await admin.exists(gatewayKey('gw-a'))).toBe(1);
  });

  it("skips garbage and stray answers on its stream, and answers nobody with another connection's ack", async () => {
    const admin = await h.redis('admin');
    const { gw, metrics } = await h.gateway('gw-a', { answerTimeoutMs: 5000 });
    const a = h.client(gw);
    const b = h.client(gw);
    let answered: Ack | null = null;
    void a.say('hello', HELLO).then((r) => (answered = r));
    const add = (f: Buffer): Promise<unknown> => admin.xadd(downStream('gw-a'), '*', 'f', f);
    await add(Buffer.from('garbage'));
    // a's message is answer 1, on connection '1': an ack naming b's connection must not settle it.
    await add(encodeFrame({ t: 'ack', c: '2', a: 1, r: { ok: true } }));
    await add(encodeFrame({ t: 'ack', c: '1', a: 99, r: { ok: true } })); // no such answer
    await add(encodeFrame({ t: 'send', c: 'nobody', e: 'welcome', a: [{}] })); // no such connection
    await add(encodeFrame({ t: 'send', c: '2', e: 'rejected', a: [{ event: 'x' }] }));
    await eventually(() => b.link.sent.length === 1, "b's frame delivered");
    expect(await metricValue(metrics, 'aegis_internal_errors_total', { where: 'message' })).toBe(1);
    expect(answered).toBeNull();
    expect(gw.pendingAnswers).toBe(1);
    expect(a.link.sent).toEqual([]);
    await add(encodeFrame({ t: 'ack', c: '1', a: 1, r: { ok: false, reason: 'malformed', message: 'm' } }));
    await eventually(() => answered !== null, "a's answer");
    expect(answered).toMatchObject({ ok: false, reason: 'malformed' });
    expect(gw.pendingAnswers).toBe(0);
  });
});
