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
import { attachSocketIo, EVENT_LABELS, type SocketAccess, type SocketLimits } from './socket.ts';
import { JoinTokenVerifier, mintJoinToken } from './join-token.ts';
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

async function rig(limits: Partial<SocketLimits> = {}, access?: SocketAccess): Promise<Rig> {
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
  const io = attachSocketIo(
    http,
    coordinator,
    metrics,
    1 << 20,
    {
      socket: { perSecond: 1000, burst: 1000 },
      address: { perSecond: 1000, burst: 1000 },
      trustedProxy: { kind: 'none' },
      clock,
      ...limits,
    },
    access,
  );
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

function client(url: string, forwardedFor?: string, o: { origin?: string; auth?: object } = {}): Socket {
  const headers = {
    ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
    ...(o.origin ? { origin: o.origin } : {}),
  };
  const s = connect(url, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    extraHeaders: headers,
    ...(o.auth ? { auth: o.auth } : {}),
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
/** A well-formed guess: the token's version, shard and time kept, its 32-byte MAC zeroed. */
const zeroMac = (token: string): string => token.slice(0, 12) + 'A'.repeat(43);

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
      [{ sessionId: wa.sessionId, resumeToken: zeroMac(wa.resumeToken) }, 'bad_token'],
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
    const obs = client(r.url, undefined, { auth: { observe: true } });
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

describe('handshake: Origin allow-list and join tokens', () => {
  const SITE = 'https://news.example';
  const KEY = Buffer.alloc(32, 5);
  /** Resolves with the refusal's data { reason, message }, or rejects if the socket connects. */
  const refusal = (s: Socket): Promise<{ reason: string; message: string }> =>
    new Promise((res, rej) => {
      s.once('connect', () => rej(new Error('connected')));
      s.once('connect_error', (e) => res((e as Error & { data: { reason: string; message: string } }).data));
    });
  const tokenRig = () =>
    rig(
      {},
      {
        allowedOrigins: new Set([SITE]),
        tokens: new JoinTokenVerifier({ key: KEY, maxTtlSeconds: 600, replayCapacity: 100 }),
      },
    );

  it("with --allowed-origins: listed origins and the server's own pages connect; others and no Origin are refused", async () => {
    const r = await rig({}, { allowedOrigins: new Set([SITE]), tokens: null });
    await connected(client(r.url, undefined, { origin: SITE }));
    await connected(client(r.url, undefined, { origin: r.url })); // a page this server served
    for (const origin of ['https://evil.example', 'https://news.example.evil.example', 'null', undefined]) {
      const d = await refusal(client(r.url, undefined, { origin }));
      expect(d.reason).toBe('bad_origin');
      expect(d.message).toMatch(origin ? /not allowed/ : /no Origin/);
    }
    expect(
      await metricValue(r.metrics, 'aegis_messages_rejected_total', {
        reason: 'bad_origin',
        event: 'connect',
      }),
    ).toBe(4);
  });

  it('without --allowed-origins or a token key, anyone connects (as before)', async () => {
    const r = await rig();
    await connected(client(r.url, undefined, { origin: 'https://anything.example' }));
    await connected(client(r.url));
  });

  it("with a token key: a valid token for the page's origin admits once; missing, forged, expired, replayed and wrong-origin tokens are refused", async () => {
    const r = await tokenRig();
    const mint = (o: { origin?: string; ttl?: number; key?: Buffer } = {}) =>
      mintJoinToken(o.key ?? KEY, { origin: o.origin ?? SITE, ttlSeconds: o.ttl ?? 60, now: r.clock.now() })
        .token;
    const good = mint();
    const s = client(r.url, undefined, { origin: SITE, auth: { token: good } });
    await connected(s);
    s.emit('hello', HELLO);
    await next<Welcome>(s, 'welcome');

    const stale = mint({ ttl: 10 });
    r.clock.advance(11_000);
    const cases: [object | undefined, string, RegExp][] = [
      [undefined, 'missing', /required/],
      [{ token: 'garbage' }, 'malformed', /malformed/],
      [{ token: 'x'.repeat(100_000) }, 'malformed', /malformed/],
      [{ token: mint({ key: Buffer.alloc(32, 6) }) }, 'bad_signature', /not signed/],
      [{ token: good }, 'replayed', /already used/],
      [{ token: stale }, 'expired', /expired/],
      [{ token: mint({ ttl: 3600 }) }, 'too_long_lived', /longer/],
      [{ token: mint({ origin: 'https://other.example' }) }, 'wrong_origin', /another site/],
    ];
    for (const [auth, problem, message] of cases) {
      const d = await refusal(client(r.url, undefined, { origin: SITE, auth }));
      expect(d).toEqual({ reason: 'bad_token', message: expect.stringMatching(message) });
      expect(
        await metricValue(r.metrics, 'aegis_join_tokens_refused_total', { problem }),
      ).toBeGreaterThanOrEqual(1);
    }
    expect(
      await metricValue(r.metrics, 'aegis_messages_rejected_total', {
        reason: 'bad_token',
        event: 'connect',
      }),
    ).toBe(cases.length);
    // The Origin check comes first: a valid token from a page of another site is refused as bad_origin.
    expect(
      (await refusal(client(r.url, undefined, { origin: 'https://evil.example', auth: { token: mint() } })))
        .reason,
    ).toBe('bad_origin');
    expect(r.coordinator.status().clients.connected).toBe(1);
  });

  it('with a token key, an observer watches the status without a token but cannot join', async () => {
    const r = await tokenRig();
    const obs = client(r.url, undefined, { origin: SITE, auth: { observe: true } });
    const first = next<unknown>(obs, 'status');
    await connected(obs);
    expect(await first).toMatchObject({ phase: 'waiting' });
    const closed = next<string>(obs, 'disconnect');
    obs.emit('hello', HELLO);
    const rej = await next<Rejection>(obs, 'rejected');
    expect(rej).toMatchObject({ reason: 'bad_token', message: expect.stringMatching(/observe/) });
    expect(await closed).toBe('io server disconnect');
    expect(r.coordinator.status().clients.connected).toBe(0);
    // Observing is no way around the Origin check.
    const evil = client(r.url, undefined, { origin: 'https://evil.example', auth: { observe: true } });
    expect((await refusal(evil)).reason).toBe('bad_origin');
  });

  it('a reconnect gets in with its session instead of the spent token, and may only resume that session', async () => {
    const r = await tokenRig();
    const token = mintJoinToken(KEY, { origin: SITE, ttlSeconds: 60, now: r.clock.now() }).token;
    const a = client(r.url, undefined, { origin: SITE, auth: { token } });
    await connected(a);
    a.emit('hello', HELLO);
    const w = await next<Welcome>(a, 'welcome');
    a.close();
    await until(() => r.coordinator.status().clients.connected === 0);
    const session = { sessionId: w.sessionId, resumeToken: w.resumeToken };

    // Wrong credentials do not stand in for a token.
    const forged = { sessionId: w.sessionId, resumeToken: zeroMac(w.resumeToken) };
    expect(
      (await refusal(client(r.url, undefined, { origin: SITE, auth: { token, session: forged } }))).message,
    ).toMatch(/already used/);

    // Let in to resume: a new session on that socket is refused and the socket closed.
    const b = client(r.url, undefined, { origin: SITE, auth: { token, session } });
    await connected(b);
    const closed = next<string>(b, 'disconnect');
    b.emit('hello', HELLO);
    expect((await next<Rejection>(b, 'rejected')).reason).toBe('bad_token');
    expect(await closed).toBe('io server disconnect');

    const c = client(r.url, undefined, { origin: SITE, auth: { token, session } });
    await connected(c);
    c.emit('hello', { ...HELLO, resume: session });
    expect((await next<Welcome>(c, 'welcome')).sessionId).toBe(w.sessionId);
  });
});
