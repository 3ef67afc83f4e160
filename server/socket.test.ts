import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type Ack, type Rejection, type Welcome } from '../shared/protocol/messages.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { parseTrustedProxy } from './address.ts';
import { ManualClock } from './clock.ts';
import { DEFAULTS } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { attachSocketIo, EVENT_LABELS, type SocketLimits } from './socket.ts';
import { metricValue } from './test-fixtures.ts';

/** socket.io on a real port of 127.0.0.1, in this process: the transport layer as clients meet it. */
interface Rig {
  url: string;
  coordinator: Coordinator;
  metrics: Metrics;
  clock: ManualClock;
  close(): Promise<void>;
}
const open: Rig[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  for (const r of open.splice(0)) await r.close();
});

async function rig(limits: Partial<SocketLimits> = {}): Promise<Rig> {
  const clock = new ManualClock(1_700_000_000_000);
  const metrics = createMetrics();
  const coordinator = new Coordinator({
    config: {
      ...DEFAULTS,
      model: MODELS.tiny,
      secagg: false,
      minClients: 50,
      minUpdates: 2,
      clientsPerRound: 50,
    },
    metrics,
    evaluate: async () => ({ accuracy: 0, loss: 0, examples: 0, ms: 0 }),
    evalBackend: 'none',
    initialWeights: new Float32Array(numParams(MODELS.tiny)),
    dataFor: (i) => ({ kind: 'synthetic', seed: i, count: 8 }),
    clock,
  });
  await coordinator.init();
  const http: HttpServer = createServer();
  const io = attachSocketIo(http, coordinator, metrics, 1 << 20, {
    socket: { perSecond: 1000, burst: 1000 },
    address: { perSecond: 1000, burst: 1000 },
    trustedProxy: { kind: 'none' },
    clock,
    ...limits,
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const r: Rig = {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    coordinator,
    metrics,
    clock,
    close: async () => {
      coordinator.stop();
      await new Promise<void>((res) => io.close(() => res()));
    },
  };
  open.push(r);
  return r;
}

function client(url: string, forwardedFor?: string, auth?: Record<string, unknown>): Socket {
  const s = connect(url, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    ...(forwardedFor ? { extraHeaders: { 'x-forwarded-for': forwardedFor } } : {}),
    ...(auth ? { auth } : {}),
  });
  sockets.push(s);
  return s;
}
const connected = (s: Socket): Promise<void> =>
  new Promise((res, rej) => {
    s.once('connect', () => res());
    s.once('connect_error', rej);
  });
const refused = (s: Socket): Promise<string> =>
  new Promise((res, rej) => {
    s.once('connect', () => rej(new Error('connected')));
    s.once('connect_error', (e) => res(String(e.message)));
  });
const next = <T>(s: Socket, event: string): Promise<T> => new Promise((res) => s.once(event, res));
const HELLO = { protocolVersion: PROTOCOL_VERSION, source: 'node' };

async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 2));
  expect(done()).toBe(true);
}

describe('socket.io wiring', () => {
  it('ids are unforgeable over the wire: stolen id, wrong token and takeover refused; one identity per socket', async () => {
    const r = await rig();
    const a = client(r.url);
    await connected(a);
    a.emit('hello', HELLO);
    const wa = await next<Welcome>(a, 'welcome');
    a.emit('hello', HELLO);
    expect((await next<Rejection>(a, 'rejected')).reason).toBe('already_identified');

    const b = client(r.url);
    await connected(b);
    const tries: [object, string][] = [
      [{ sessionId: wa.sessionId, resumeToken: 'A'.repeat(43) }, 'bad_token'],
      [{ sessionId: wa.sessionId, resumeToken: wa.resumeToken }, 'session_taken'],
    ];
    for (const [resume, reason] of tries) {
      b.emit('hello', { ...HELLO, resume });
      expect((await next<Rejection>(b, 'rejected')).reason).toBe(reason);
    }
    // b's messages are not a's: it has no identity.
    const ack: Ack = await b.timeout(2000).emitWithAck('ready', { backend: 'cpu' });
    expect(ack).toMatchObject({ ok: false, reason: 'unknown_client' });

    a.close();
    await until(() => r.coordinator.status().clients.connected === 0);
    b.emit('hello', { ...HELLO, resume: { sessionId: wa.sessionId, resumeToken: wa.resumeToken } });
    const wb = await next<Welcome>(b, 'welcome');
    expect(wb.sessionId).toBe(wa.sessionId);
    expect(
      await metricValue(r.metrics, 'aegis_messages_rejected_total', { reason: 'bad_token', event: 'hello' }),
    ).toBe(1);
  });

  it('status is pushed to observers (and only to them) when it changes, coalesced', async () => {
    const r = await rig();
    const seen: ServerStatus[] = [];
    const obs = client(r.url, undefined, { observe: true });
    obs.on('status', (st: ServerStatus) => seen.push(st));
    const plain: ServerStatus[] = [];
    const a = client(r.url);
    a.on('status', (st: ServerStatus) => plain.push(st));
    await Promise.all([connected(obs), connected(a)]);
    await until(() => seen.length === 1); // the current status, at once
    expect(seen[0]).toMatchObject({ phase: 'waiting', round: 1, clients: { connected: 0, needed: 50 } });
    a.emit('hello', HELLO);
    await next<Welcome>(a, 'welcome');
    a.emit('ready', { backend: 'wasm' });
    await new Promise((res) => setTimeout(res, 20)); // the messages are handled
    r.clock.advance(1000);
    await until(() => seen.at(-1)?.clients.ready === 1);
    expect(seen.at(-1)).toMatchObject({ clients: { connected: 1, ready: 1 } });
    const pushes = seen.length;
    r.clock.advance(5000); // periodic checks, nothing changed: nothing sent
    await new Promise((res) => setTimeout(res, 20));
    expect(seen).toHaveLength(pushes);
    expect(plain).toEqual([]);
  });

  it('round:refuse reaches the coordinator: one outside a round is rejected as late under its own label', async () => {
    const r = await rig();
    const s = client(r.url);
    await connected(s);
    s.emit('hello', HELLO);
    await next<Welcome>(s, 'welcome');
    s.emit('round:refuse', { round: 1, attempt: 0, reason: 'below_floor' }); // no attempt has started
    expect(await next<Rejection>(s, 'rejected')).toMatchObject({ event: 'round:refuse', reason: 'late' });
    expect(
      await metricValue(r.metrics, 'aegis_messages_rejected_total', {
        reason: 'late',
        event: 'round:refuse',
      }),
    ).toBe(1);
    expect(await metricValue(r.metrics, 'aegis_client_refusals_total', { reason: 'below_floor' })).toBe(0);
  });

  it('unknown event names are rejected and counted under the one label "unknown"', async () => {
    const r = await rig();
    const s = client(r.url);
    await connected(s);
    const got: Rejection[] = [];
    s.on('rejected', (x: Rejection) => got.push(x));
    for (let i = 0; i < 300; i++) s.emit(`event-${i}-${'x'.repeat(100)}`, i);
    await until(() => got.length === 300);
    expect(got[7]).toMatchObject({ reason: 'malformed', event: `event-7-${'x'.repeat(32)}` }); // told, truncated
    expect(
      await metricValue(r.metrics, 'aegis_messages_rejected_total', {
        reason: 'malformed',
        event: 'unknown',
      }),
    ).toBe(300);
    const series = (await r.metrics.registry.getSingleMetric('aegis_messages_rejected_total')!.get()).values;
    expect(new Set(series.map((v) => v.labels.event))).toEqual(
      new Set(series.map((v) => v.labels.event).filter((e) => EVENT_LABELS.includes(e as never))),
    );
    // 300 distinct names add no series: only the zero-initialised ones (and those they count) exist.
    const initial = (await createMetrics().registry.getSingleMetric('aegis_messages_rejected_total')!.get())
      .values.length;
    expect(series.length).toBe(initial);
  });

  it('limits messages per socket: over the burst they are dropped and answered rate_limited, told once per burst', async () => {
    const r = await rig({ socket: { perSecond: 1, burst: 5 } });
    const s = client(r.url);
    await connected(s);
    const told: Rejection[] = [];
    s.on('rejected', (x: Rejection) => told.push(x));
    const acks: Ack[] = [];
    for (let i = 0; i < 20; i++)
      acks.push(await s.timeout(2000).emitWithAck('update', { round: 1, attempt: 1 }));
    expect(acks.slice(0, 5).every((a) => !a.ok && a.reason === 'unknown_client')).toBe(true);
    expect(acks.slice(5).every((a) => !a.ok && a.reason === 'rate_limited')).toBe(true);
    await until(() => told.length === 6);
    expect(told.filter((t) => t.reason === 'rate_limited')).toHaveLength(1);
    r.clock.advance(2000); // two tokens back
    const later = [
      await s.timeout(2000).emitWithAck('update', {}),
      await s.timeout(2000).emitWithAck('update', {}),
      await s.timeout(2000).emitWithAck('update', {}),
    ];
    expect(later.map((a) => (a.ok ? 'ok' : a.reason))).toEqual([
      'unknown_client',
      'unknown_client',
      'rate_limited',
    ]);
    await until(() => told.filter((t) => t.reason === 'rate_limited').length === 2); // a new burst, told again
    expect(
      await metricValue(r.metrics, 'aegis_messages_rejected_total', {
        reason: 'rate_limited',
        event: 'update',
      }),
    ).toBe(16);
  });

  it('limits new connections per address; X-Forwarded-For counts only from a trusted proxy', async () => {
    const direct = await rig({ address: { perSecond: 0.001, burst: 2 } });
    for (const xff of ['198.51.100.1', '198.51.100.2']) await connected(client(direct.url, xff));
    // Without a trusted proxy the header is the client's own claim: all three are 127.0.0.1.
    expect(await refused(client(direct.url, '198.51.100.3'))).toBeTruthy();
    expect(
      await metricValue(direct.metrics, 'aegis_messages_rejected_total', {
        reason: 'rate_limited',
        event: 'connect',
      }),
    ).toBe(1);

    const proxied = await rig({
      address: { perSecond: 0.001, burst: 2 },
      trustedProxy: parseTrustedProxy('127.0.0.1'),
    });
    for (const xff of ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.1'])
      await connected(client(proxied.url, xff));
    expect(await refused(client(proxied.url, 'spoofed, 198.51.100.1'))).toBeTruthy(); // third from .1
    await connected(client(proxied.url, '198.51.100.4'));
  });
});
