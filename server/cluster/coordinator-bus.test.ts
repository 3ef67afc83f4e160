import { serialize } from 'node:v8';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { metricValue } from '../test-fixtures.ts';
import { eventually, Harness, HELLO, META, type Client, useRedis } from './bus-fixture.ts';
import { createHash } from 'node:crypto';
import {
  blobKey,
  decodeDown,
  downStream,
  encodeFrame,
  gatewayKey,
  UP_STREAM,
  type DownFrame,
} from './frames.ts';

let h: Harness;
let admin: Redis;

const redisUrl = useRedis();
beforeEach(async () => {
  h = new Harness(redisUrl());
  await h.start();
  admin = await h.redis('admin');
});
afterEach(async () => {
  await h.close();
});

const internalErrors = (): Promise<number> =>
  metricValue(h.metrics, 'aegis_internal_errors_total', { where: 'message' });

/** Runs the coordinator's gateway check until `done` holds. */
const checkUntil = (done: () => boolean, what: string): Promise<true> =>
  eventually(() => {
    if (done()) return true;
    h.checkGateways();
    return false;
  }, what);

async function joined(c: Client): Promise<Client> {
  expect(await c.say('hello', HELLO)).toEqual({ ok: true });
  return c;
}

async function downFrames(gateway: string): Promise<DownFrame[]> {
  const entries = await admin.xrangeBuffer(downStream(gateway), '-', '+');
  return entries.map(([, fields]) => decodeDown(fields[1])!);
}

describe('CoordinatorBus', () => {
  it("closes exactly a lapsed gateway's connections, and not the other gateway's", async () => {
    const { gw: a } = await h.gateway('gw-a');
    const { gw: b } = await h.gateway('gw-b');
    const a1 = await joined(h.client(a));
    const a2 = await joined(h.client(a));
    h.client(a); // open, never said hello
    const b1 = await joined(h.client(b));
    expect(h.connected()).toBe(3);
    expect(h.bus.connections()).toEqual({ 'gw-a': 3, 'gw-b': 1 });

    // gw-a stops (its key goes) without closing its connections: the coordinator closes them.
    await a.stop();
    await checkUntil(() => h.connected() === 1, "gw-a's two clients closed");
    expect(h.bus.connections()).toEqual({ 'gw-b': 1 });
    expect(h.logs.join('\n')).toMatch(/gateway gw-a stopped answering; its 3 connection\(s\) are closed/);
    expect(await admin.exists(downStream('gw-a'))).toBe(0);
    // gw-b's client is still heard, and its session is not disturbed.
    expect(await b1.say('ready', { backend: 'cpu' })).toEqual({ ok: true });
    expect(h.connected()).toBe(1);
    void a1;
    void a2;
  });

  it("closes a gateway's connections when its heartbeat key is gone", async () => {
    const { gw: a } = await h.gateway('gw-a');
    const { gw: b } = await h.gateway('gw-b');
    await joined(h.client(a));
    await joined(h.client(b));
    await joined(h.client(b));
    expect(h.connected()).toBe(3);
    await admin.del(gatewayKey('gw-b'));
    await checkUntil(() => h.connected() === 1, "gw-b's clients closed");
    expect(h.bus.connections()).toEqual({ 'gw-a': 1 });
  });

  it('places a message for a connection it never saw open, from the meta the frame carries', async () => {
    // A new leader misses the opens of connections made before it took over.
    await admin.xadd(
      UP_STREAM,
      '*',
      'f',
      encodeFrame({ t: 'msg', g: 'gw-x', c: 'z9', m: META, e: 'hello', r: HELLO, a: 1 }),
    );
    const frames = await eventually(async () => {
      const f = await downFrames('gw-x');
      return f.length >= 2 ? f : null;
    }, 'a welcome and an ack on gw-x');
    expect(frames.map((f) => [f.t, f.c])).toEqual([
      ['send', 'z9'],
      ['ack', 'z9'],
    ]);
    expect(frames[0]).toMatchObject({ e: 'welcome' });
    expect(frames[1]).toMatchObject({ a: 1, r: { ok: true } });
    expect(h.connected()).toBe(1);
    expect(h.bus.connections()).toEqual({ 'gw-x': 1 });
    // Its meta counts: a frame saying it was let in to observe only cannot say hello.
    await admin.xadd(
      UP_STREAM,
      '*',
      'f',
      encodeFrame({
        t: 'msg',
        g: 'gw-x',
        c: 'obs',
        m: { ...META, observerOnly: true },
        e: 'hello',
        r: HELLO,
        a: 2,
      }),
    );
    const ack = await eventually(
      async () => (await downFrames('gw-x')).find((f) => f.c === 'obs'),
      'obs ack',
    );
    expect(ack).toMatchObject({ t: 'ack', a: 2, r: { ok: false, reason: 'bad_token' } });
    // gw-x never beat: it is taken for dead at the next check.
    await checkUntil(() => h.connected() === 0, "gw-x's connection closed");
  });

  it('counts and skips garbage on the up stream without stopping its loop', async () => {
    expect(await internalErrors()).toBe(0);
    await admin.xadd(UP_STREAM, '*', 'f', Buffer.from('garbage'));
    await admin.xadd(UP_STREAM, '*', 'x', 'no f field');
    await admin.xadd(UP_STREAM, '*', 'f', serialize([1, 2, 3]));
    // A broken gateway: an event name that is no client event (a key of every object's prototype).
    await admin.xadd(
      UP_STREAM,
      '*',
      'f',
      serialize({ t: 'msg', g: 'gw-q', c: '1', m: META, e: 'constructor', r: {}, a: 1 }),
    );
    await admin.xadd(
      UP_STREAM,
      '*',
      'f',
      serialize({ t: 'msg', g: 'gw-q', c: '2', e: 'hello', r: {}, a: 1 }),
    );
    await eventually(async () => (await internalErrors()) === 5, 'five entries counted');
    // None of them was placed, answered or dispatched.
    expect(h.bus.connections()).toEqual({});
    expect(await admin.exists(downStream('gw-q'))).toBe(0);
    // The loop goes on: a real client is heard.
    const { gw } = await h.gateway('gw-a');
    await joined(h.client(gw));
    expect(h.connected()).toBe(1);
    expect(await internalErrors()).toBe(5);
  });

  it('closes thousands of connections of a dead gateway', async () => {
    const { gw } = await h.gateway('gw-a');
    const { gw: other } = await h.gateway('gw-b');
    const n = 2000;
    const clients = Array.from({ length: n }, () => h.client(gw));
    const acks = await Promise.all(clients.map((c) => c.say('hello', HELLO)));
    expect(acks.every((a) => a.ok)).toBe(true);
    await joined(h.client(other));
    expect(h.connected()).toBe(n + 1);
    await gw.stop();
    await checkUntil(() => h.connected() === 1, 'all of gw-a closed');
    expect(h.bus.connections()).toEqual({ 'gw-b': 1 });
  }, 20_000);

  it("sends a round's model through Redis once (a blob), not once per client; each client gets the same bytes", async () => {
    const { gw } = await h.gateway('g1');
    const clients = [h.client(gw), h.client(gw)];
    for (const c of clients) await joined(c);
    const info = async (): Promise<number> =>
      Number(/^total_net_input_bytes:(\d+)/m.exec(await admin.info('stats'))![1]);
    const before = await info();
    for (const c of clients) expect(await c.say('ready', { backend: 'cpu' })).toEqual({ ok: true });
    const starts = await eventually(() => {
      const s = clients.map((c) => c.link.last('round:start'));
      return s.every(Boolean) ? s : null;
    }, 'round:start on both links');
    const model = Buffer.from(h.coordinator.globalWeights.buffer);
    for (const s of starts) expect(Buffer.from(s.weights).equals(model)).toBe(true);
    const into = (await info()) - before;
    // One copy of the model went into Redis (the blob), plus small frames; per-client copies would be 2.
    expect(into).toBeGreaterThan(model.length);
    expect(into).toBeLessThan(1.5 * model.length);
    const hash = createHash('sha256').update(model).digest('hex');
    expect((await admin.getBuffer(blobKey(hash)))!.equals(model)).toBe(true);
  });
});
