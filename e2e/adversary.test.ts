import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { io, type Socket } from 'socket.io-client';
import { AegisClient, type ClientEvents } from '../client/client.ts';
import { nodeTrainer } from '../client/node-trainer.ts';
import { asBytes } from '../shared/base/bytes.ts';
import { REJECT_REASONS } from '../shared/base/errors.ts';
import { createRng } from '../shared/data/rng.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type Rejection, type RoundStart } from '../shared/protocol/messages.ts';
import type { Floors } from '../shared/protocol/floors.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { unpackReveal } from '../shared/secagg/wire.ts';
import type { Reveal } from '../shared/secagg/types.ts';
import { EVENT_LABELS } from '../server/socket.ts';
import {
  HostileServer,
  hostileRound,
  inboxFor,
  rosterFor,
  sharesOf,
  welcome,
  wire,
} from './hostile-server.ts';
import { metric } from './metrics.ts';
import { meanStepError, ScriptedClient } from './scripted-client.ts';
import { startServerProcess, waitFor, type ServerProcess } from './server-process.ts';

/**
 * The adversary suite: each attacker of docs/threat-model.md, seeded, against the real server process
 * (127.0.0.1) while four honest protocol clients train beside it; then a malicious server against the real
 * client. For each client-side attack: the server stays up, the attacker is refused with a counted reason,
 * and the honest clients' next round completes with the exact sum (the new global weights are the old
 * ones plus server_lr times the exact example-weighted mean of the inputs, which the scripted clients know).
 * For each server-side attack: the client refuses with the right reason and sends nothing it should not.
 */
const SEED = 20_261_126;
const P = numParams(MODELS.tiny);
const SERVER_LR = 0.5;
const MAX_SESSIONS = 40;
const ADDRESS_BURST = 60;
const rng = createRng(SEED);
const randomDelta = (): Float32Array => Float32Array.from({ length: P }, () => (rng.next() - 0.5) * 0.02);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let srv: ServerProcess;
/** The honest clients; every scripted client (honest or not) is in `everyone`, for the exact sums. */
const honest: ScriptedClient[] = [];
const everyone: ScriptedClient[] = [];
const sockets: Socket[] = [];
/** Each honest client's roster per round (the peers' indices), to see who was dropped before rosters. */
const rosters = new Map<ScriptedClient, Map<number, number[]>>();

const getText = (path: string): Promise<string> => fetch(srv.url + path).then((r) => r.text());
const status = (): Promise<ServerStatus> => fetch(srv.url + '/api/status').then((r) => r.json());

/** Sums a counter over every series whose labels match (all series of the name when none are given). */
function total(text: string, name: string, labels: Record<string, string> = {}): number {
  let s = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)) got[kv[1]] = kv[2];
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) s += Number(m[4]);
  }
  return s;
}

const rejectedCount = (text: string, reason: string, event: string): number =>
  metric(text, 'aegis_messages_rejected_total', { reason, event }) ?? 0;

function scripted(id: string, examples = 8): ScriptedClient {
  const c = new ScriptedClient(srv.url, id, randomDelta(), examples);
  everyone.push(c);
  return c;
}

function connect(): Promise<Socket> {
  const s = io(srv.url, { transports: ['websocket'], reconnection: false, forceNew: true });
  sockets.push(s);
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', (e) => {
      s.close();
      reject(e);
    });
  });
}

/** The first rejection (or welcome) a socket hears after `send` runs. */
function answerTo(s: Socket, send: () => void): Promise<{ welcome: boolean; reason?: string }> {
  return new Promise((resolve) => {
    s.once('welcome', () => resolve({ welcome: true }));
    s.once('rejected', (r: Rejection) => resolve({ welcome: false, reason: r.reason }));
    send();
  });
}

const hello = (resume?: unknown) => ({ protocolVersion: PROTOCOL_VERSION, source: 'node', resume });

const weightsOf = (s: RoundStart): Float32Array => new Float32Array(asBytes(s.weights)!.slice().buffer);

/** The round the honest clients are in now (0 before the first). */
const currentRound = (): number => Math.max(0, ...honest[0].starts.map((s) => s.round));

/** Waits until round r's model is out (the honest clients got round r + 1). */
function released(r: number, timeoutMs = 30_000): Promise<RoundStart> {
  return waitFor(
    async () => honest[0].starts.find((s) => s.round === r + 1),
    timeoutMs,
    `round ${r} to be released`,
    50,
  );
}

/**
 * Round r completed with the exact sum: its inputs are the scripted clients whose update was accepted in
 * its last attempt; every attempt of r started from the same weights (a failed one changed nothing); and
 * the weights of round r + 1 are those plus SERVER_LR times the exact example-weighted mean of the inputs.
 */
async function expectExactRound(r: number): Promise<ScriptedClient[]> {
  const next = await released(r);
  const summary = (await status()).history.find((h) => h.round === r)!;
  expect(summary).toBeDefined();
  const inputs = everyone.filter((c) =>
    c.sent.some(
      (s) =>
        s.event === 'update' && s.payload.round === r && s.payload.attempt === summary.attempts && s.ack?.ok,
    ),
  );
  expect(inputs.length).toBe(summary.clients);
  const starts = honest[0].starts.filter((s) => s.round === r);
  expect(starts.map((s) => s.attempt)).toContain(summary.attempts);
  const w0 = weightsOf(starts[0]);
  for (const s of starts.slice(1)) expect(weightsOf(s)).toEqual(w0);
  const { err, moved } = meanStepError(w0, weightsOf(next), inputs, SERVER_LR);
  expect(moved).toBeGreaterThan(1e-4); // the round did change the model
  expect(err).toBeLessThan(1e-6);
  return inputs;
}

/** The server answers /health and reports a phase. */
async function expectAlive(): Promise<void> {
  const h = (await fetch(srv.url + '/health').then((r) => r.json())) as { ok: boolean; phase: string };
  expect(h.ok).toBe(true);
  expect(srv.child.exitCode).toBeNull();
}

/** The first attempt an attacker is selected for. */
const firstStart = (c: ScriptedClient, timeoutMs = 30_000): Promise<RoundStart> =>
  waitFor(async () => c.starts[0], timeoutMs, `${c.id} to be selected`, 50);

const ackOf = (c: ScriptedClient, event: string) => c.sent.find((s) => s.event === event && s.ack)?.ack;

/** Disconnects an attacker once the server has answered its `event` (its attack is done; it takes no further part). */
async function closeAfter(c: ScriptedClient, event: string): Promise<void> {
  await waitFor(async () => ackOf(c, event), 30_000, `the server to answer ${c.id}'s ${event}`, 20);
  c.close();
}

/** A share value one less (big-endian, with borrow): still a field element, but not the dealt one. */
function shifted(y: Uint8Array): Uint8Array {
  const out = y.slice();
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] > 0) {
      out[i]--;
      break;
    }
    out[i] = 0xff;
  }
  return out;
}

describe('attackers against the real server, honest clients beside them', () => {
  beforeAll(async () => {
    srv = await startServerProcess([
      '--model',
      'tiny',
      '--seed',
      String(SEED % 2 ** 31),
      '--examples-per-client',
      '8',
      '--test-examples',
      '50',
      '--rounds',
      '0',
      '--min-clients',
      '4',
      '--clients-per-round',
      '8',
      '--min-updates',
      '3',
      '--round-pause-ms',
      '150',
      '--round-deadline-ms',
      '20000',
      '--secagg-keys-deadline-ms',
      '5000',
      '--secagg-shares-deadline-ms',
      '5000',
      '--secagg-unmask-deadline-ms',
      '5000',
      '--server-lr',
      String(SERVER_LR),
      '--max-message-bytes',
      String(P * 4 + 64 * 1024),
      '--socket-rate',
      '500',
      '--socket-burst',
      '1000',
      '--address-rate',
      '50',
      '--address-burst',
      String(ADDRESS_BURST),
      '--max-sessions',
      String(MAX_SESSIONS),
      '--session-ttl-ms',
      '2000',
      // The public cap ring weights are divided by; near the real counts, the sums are exact to 1e-6.
      '--max-examples-per-client',
      '16',
    ]);
    const examples = [8, 4, 12, 16];
    for (let i = 0; i < 4; i++) {
      const c = scripted(`honest-${i}`, examples[i]);
      honest.push(c);
      const seen = new Map<number, number[]>();
      rosters.set(c, seen);
      c.hooks.shares = (cl, m) =>
        void seen.set(
          m.round,
          cl.roster(m).peers.map((p) => p.index),
        );
    }
    // Round 1 is the baseline: four honest clients, nobody attacking.
    await expectExactRound((await firstStart(honest[0])).round);
  });

  afterAll(async () => {
    if (process.env.DEBUG_E2E) console.log(srv?.output());
    for (const c of everyone) c.close();
    for (const s of sockets) s.close();
    await srv?.stop();
  });

  it('out-of-field share at reveal: refused (malformed_share), its sender named, the sum exact', async () => {
    const before = await getText('/metrics');
    const a = scripted('attacker-out-of-field');
    a.tamper.reveal = (r: Reveal): Reveal => ({
      b: r.b.map((x, i) => (i === 0 ? { ...x, share: new Uint8Array(33).fill(0xff) } : x)),
      s: r.s,
    });
    const r = (await firstStart(a)).round;
    await closeAfter(a, 'secagg:reveal');
    const inputs = await expectExactRound(r);
    expect(inputs).toContain(a); // it masked its input honestly: that input is in the sum
    expect(ackOf(a, 'secagg:reveal')).toMatchObject({ ok: false, reason: 'malformed_share' });
    await expectAlive();
    const m = await getText('/metrics');
    expect(rejectedCount(m, 'malformed_share', 'secagg:reveal')).toBe(
      rejectedCount(before, 'malformed_share', 'secagg:reveal') + 1,
    );
    expect(total(m, 'aegis_secagg_culprits_total', { kind: 'malformed_share' })).toBe(
      total(before, 'aegis_secagg_culprits_total', { kind: 'malformed_share' }) + 1,
    );
  });

  it('a reveal adding a share it was not asked for (its own b-share): refused (unrequested_share), counted, the sum exact', async () => {
    const before = await getText('/metrics');
    const a = scripted('attacker-unrequested');
    let mine = 0;
    a.tamper.reveal = (r: Reveal): Reveal => ({ b: [...r.b, { ...r.b[0], of: mine }], s: r.s });
    const start = await firstStart(a);
    mine = start.secagg!.index;
    await closeAfter(a, 'secagg:reveal');
    const inputs = await expectExactRound(start.round);
    expect(inputs).toContain(a);
    expect(ackOf(a, 'secagg:reveal')).toMatchObject({ ok: false, reason: 'unrequested_share' });
    await expectAlive();
    const m = await getText('/metrics');
    expect(rejectedCount(m, 'unrequested_share', 'secagg:reveal')).toBe(
      rejectedCount(before, 'unrequested_share', 'secagg:reveal') + 1,
    );
  });

  /** An attacker whose keys R0 must refuse: bad_key (counted), dropped before rosters, the sum exact. */
  async function expectKeysRefused(id: string, tamper: NonNullable<ScriptedClient['tamper']['keys']>) {
    const before = await getText('/metrics');
    const a = scripted(id);
    a.tamper.keys = tamper;
    const start = await firstStart(a);
    await closeAfter(a, 'secagg:keys');
    const inputs = await expectExactRound(start.round);
    expect(inputs).not.toContain(a);
    expect(ackOf(a, 'secagg:keys')).toMatchObject({ ok: false, reason: 'bad_key' });
    // Nobody got a roster naming it, and it got no roster at all.
    expect(a.sent.some((s) => s.event === 'secagg:shares')).toBe(false);
    const mine = start.secagg!.index;
    for (const h of honest) expect(rosters.get(h)!.get(start.round)).not.toContain(mine);
    await expectAlive();
    const m = await getText('/metrics');
    expect(rejectedCount(m, 'bad_key', 'secagg:keys')).toBe(
      rejectedCount(before, 'bad_key', 'secagg:keys') + 1,
    );
  }

  it('low-order X25519 key at R0: refused (bad_key), dropped before rosters, the sum exact', async () => {
    // A point of order 8 (libsodium's blacklist): every key agreement with it is all-zero.
    const lowOrder = Uint8Array.from(
      Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex'),
    );
    await expectKeysRefused('attacker-low-order', (k) => ({ ...k, cPk: lowOrder }));
  });

  it('small-order Ed25519 signing key at R0: refused (bad_key), dropped before rosters, the sum exact', async () => {
    const identity = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0)); // the identity point
    await expectKeysRefused('attacker-small-gpk', (k) => ({ ...k, gPk: identity }));
  });

  it('bad in-field shares at reveal: noticed, the secret rebuilt from the signed ones, culprit named, the sum exact', async () => {
    const before = await getText('/metrics');
    const a = scripted('attacker-in-field');
    // Alters every share it reveals. Its shares are used only where it is among the first t holders of a
    // secret, which it is for some secret unless it has the highest index: it cheats in the first attempt
    // where that holds (with the seeded cohort order, the first it joins) and is honest before.
    let cheated: { round: number; attempt: number } | null = null;
    a.tamper.reveal = (r: Reveal, m): Reveal => {
      const info = a.start!.secagg!;
      if (cheated || info.index === info.n) return r;
      cheated = { round: m.round, attempt: m.attempt };
      const alter = (l: Reveal['b']) => l.map((x) => ({ ...x, share: shifted(x.share) }));
      return { b: alter(r.b), s: alter(r.s) };
    };
    const c = await waitFor(async () => cheated, 30_000, 'the attacker to cheat', 50);
    await closeAfter(a, 'secagg:reveal');
    const inputs = await expectExactRound(c.round);
    expect(inputs).toContain(a);
    const reveal = a.sent.find(
      (s) => s.event === 'secagg:reveal' && s.payload.round === c.round && s.payload.attempt === c.attempt,
    )!;
    expect(reveal.ack).toEqual({ ok: true }); // in-field shares pass the receipt checks ...
    expect(unpackReveal(reveal.payload, 8).b.length).toBeGreaterThan(0);
    // ... and are caught at unmasking by their missing dealer signatures.
    await expectAlive();
    const m = await getText('/metrics');
    expect(total(m, 'aegis_secagg_culprits_total', { kind: 'altered_share' })).toBe(
      total(before, 'aegis_secagg_culprits_total', { kind: 'altered_share' }) + 1,
    );
    expect(total(m, 'aegis_secagg_culprits_total', { kind: 'inconsistent_dealer' })).toBe(
      total(before, 'aegis_secagg_culprits_total', { kind: 'inconsistent_dealer' }),
    ); // no honest dealer is blamed
    expect(metric(m, 'aegis_secagg_rounds_total', { outcome: 'aborted' })).toBe(
      metric(before, 'aegis_secagg_rounds_total', { outcome: 'aborted' }),
    );
  });

  it("stolen id: resuming another client's session without its token, with a wrong one, or while it is live is refused", async () => {
    const before = await getText('/metrics');
    const victim = honest[1];
    const from = currentRound();
    const token = Array.from(
      { length: 43 },
      () => 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[rng.int(64)],
    ).join('');
    const tries = [
      { resume: { sessionId: victim.sessionId }, reason: 'malformed' },
      { resume: { sessionId: victim.sessionId, resumeToken: token }, reason: 'bad_token' },
      { resume: { sessionId: victim.sessionId, resumeToken: victim.resumeToken }, reason: 'session_taken' },
    ];
    for (const t of tries) {
      const s = await connect();
      expect(await answerTo(s, () => s.emit('hello', hello(t.resume)))).toEqual({
        welcome: false,
        reason: t.reason,
      });
      s.close();
    }
    // The victim keeps its session: it takes part in the next round, and the sum is exact.
    const inputs = await expectExactRound(from + 1);
    expect(inputs).toContain(victim);
    await expectAlive();
    const m = await getText('/metrics');
    for (const t of tries)
      expect(rejectedCount(m, t.reason, 'hello')).toBe(rejectedCount(before, t.reason, 'hello') + 1);
  });

  it('poisoned update (a huge well-formed ring vector): the aggregate is rejected, the model unchanged, the retry exact', async () => {
    const before = await getText('/metrics');
    const a = scripted('attacker-poison');
    let poisoned: { round: number; attempt: number } | null = null;
    a.tamper.plain = (ring, m) => {
      if (poisoned) return ring;
      poisoned = { round: m.round, attempt: m.attempt };
      // Right length, every coordinate 2^31: far outside what one client encodes, and inside the ring.
      return new Uint32Array(ring.length).fill(2 ** 31);
    };
    const p = await waitFor(async () => poisoned, 30_000, 'the attacker to poison', 50);
    await closeAfter(a, 'secagg:reveal');
    const inputs = await expectExactRound(p.round); // weights equal across attempts: the model is unchanged
    const summary = (await status()).history.find((h) => h.round === p.round)!;
    expect(summary.attempts).toBeGreaterThan(p.attempt); // the poisoned attempt released nothing
    expect(inputs).not.toContain(a); // it left after the poisoned attempt; the retry is the honest clients'
    await expectAlive();
    const m = await getText('/metrics');
    expect(total(m, 'aegis_aggregates_rejected_total')).toBe(
      total(before, 'aegis_aggregates_rejected_total') + 1,
    );
  });

  it('label flood: made-up event names and refusal reasons end up under one label; /metrics stays bounded', async () => {
    const before = await getText('/metrics');
    const from = currentRound();
    const names = Array.from({ length: 300 }, (_, i) => `evt-${i}-${rng.int(1e9).toString(36)}`);
    const reasons = Array.from({ length: 300 }, (_, i) => `why-${i}-${rng.int(1e9).toString(36)}`);
    const s = await connect();
    for (let i = 0; i < names.length; i++) {
      s.emit(names[i], { round: 1 });
      s.emit('secagg:refuse', { round: 1, attempt: 1, reason: reasons[i], message: reasons[i].repeat(50) });
    }
    await waitFor(
      async () => {
        const m = await getText('/metrics');
        return (
          rejectedCount(m, 'malformed', 'unknown') - rejectedCount(before, 'malformed', 'unknown') ===
            names.length &&
          total(m, 'aegis_secagg_client_refusals_total', { reason: 'unknown' }) -
            total(before, 'aegis_secagg_client_refusals_total', { reason: 'unknown' }) ===
            reasons.length
        );
      },
      15_000,
      'the flood to be counted',
      100,
    );
    s.close();
    await expectExactRound(from + 1);
    await expectAlive();
    const m = await getText('/metrics');
    const series = (t: string, name: string) => t.split('\n').filter((l) => l.startsWith(name + '{')).length;
    // One label per event and per reason, from closed sets, whatever was sent: at most one new series each.
    for (const name of ['aegis_messages_rejected_total', 'aegis_secagg_client_refusals_total'])
      expect(series(m, name) - series(before, name)).toBeLessThanOrEqual(1);
    expect(series(m, 'aegis_messages_rejected_total')).toBeLessThanOrEqual(
      REJECT_REASONS.length * EVENT_LABELS.length,
    );
    expect(series(m, 'aegis_secagg_client_refusals_total')).toBeLessThanOrEqual(REJECT_REASONS.length + 1);
    for (const x of [...names, ...reasons]) expect(m).not.toContain(x);
    for (const x of [...names, ...reasons]) expect(srv.output()).not.toContain(x);
  });

  it('ghost ids: a second hello on a socket is refused; many sockets meet the address limit and the session cap', async () => {
    const before = await getText('/metrics');
    const from = currentRound();
    const one = await connect();
    expect(await answerTo(one, () => one.emit('hello', hello()))).toEqual({ welcome: true });
    expect(await answerTo(one, () => one.emit('hello', hello()))).toEqual({
      welcome: false,
      reason: 'already_identified',
    });
    // A crowd from one address: past the burst, the handshake is refused; past the cap, hellos are.
    const crowd = await Promise.allSettled(Array.from({ length: 2 * ADDRESS_BURST }, () => connect()));
    const open = crowd.flatMap((c) => (c.status === 'fulfilled' ? [c.value] : []));
    expect(open.length).toBeGreaterThan(MAX_SESSIONS - honest.length - 1); // enough to meet the cap
    expect(open.length).toBeLessThan(crowd.length);
    const answers = await Promise.all(open.map((s) => answerTo(s, () => s.emit('hello', hello()))));
    const welcomed = answers.filter((a) => a.welcome).length;
    expect(answers.filter((a) => !a.welcome).every((a) => a.reason === 'server_full')).toBe(true);
    expect(welcomed).toBeLessThanOrEqual(MAX_SESSIONS - honest.length - 1);
    const m = await getText('/metrics');
    expect(metric(m, 'aegis_sessions')!).toBeLessThanOrEqual(MAX_SESSIONS);
    expect(
      rejectedCount(m, 'rate_limited', 'connect') - rejectedCount(before, 'rate_limited', 'connect'),
    ).toBe(crowd.length - open.length);
    expect(rejectedCount(m, 'server_full', 'hello') - rejectedCount(before, 'server_full', 'hello')).toBe(
      open.length - welcomed,
    );
    expect(rejectedCount(m, 'already_identified', 'hello')).toBe(
      rejectedCount(before, 'already_identified', 'hello') + 1,
    );
    for (const s of [one, ...open]) s.close();
    await expectExactRound(from + 1);
    await expectAlive();
    await sleep((ADDRESS_BURST / 50) * 1000); // let the address's bucket refill for the tests after
  });

  it('hello flood: 20,000 hellos on one socket are refused in bounded time and CPU; the honest round is exact', async () => {
    const N = 20_000;
    const before = await getText('/metrics');
    const refused = (t: string) =>
      rejectedCount(t, 'rate_limited', 'hello') + rejectedCount(t, 'already_identified', 'hello');
    const from = currentRound();
    const s = await connect();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) s.emit('hello', hello());
    const after = await waitFor(
      async () => {
        const m = await getText('/metrics');
        return refused(m) - refused(before) >= N - 1 ? m : null;
      },
      30_000,
      'the flood to be refused',
      100,
    );
    const ms = performance.now() - t0;
    s.close();
    expect(refused(after) - refused(before)).toBe(N - 1);
    const cpu =
      metric(after, 'aegis_process_cpu_seconds_total')! - metric(before, 'aegis_process_cpu_seconds_total')!;
    console.log(
      `hello flood: ${N} hellos refused in ${(ms / 1000).toFixed(1)} s, server CPU ${cpu.toFixed(2)} s`,
    );
    expect(cpu).toBeLessThan(5);
    expect(metric(after, 'aegis_sessions')!).toBeLessThanOrEqual(MAX_SESSIONS);
    await expectExactRound(from + 1);
    await expectAlive();
  });
});

describe('a malicious server against the real client', () => {
  let hs: HostileServer;
  let client: AegisClient | null = null;
  const seen: { event: keyof ClientEvents; value: unknown }[] = [];

  beforeAll(async () => {
    // The real server's rounds are over: stop the honest clients so they do not compete for the CPU.
    for (const c of everyone) c.close();
    await tf.setBackend('cpu');
  });

  afterAll(async () => {
    client?.stop();
    await hs?.close();
  });

  /** A real client joined to a fresh hostile server, which has sent it round:start. */
  async function victim(seed: number, r: ReturnType<typeof hostileRound>, floors?: Partial<Floors>) {
    client?.stop();
    await hs?.close();
    seen.length = 0;
    hs = await HostileServer.start();
    client = new AegisClient({
      serverUrl: hs.url,
      source: 'node',
      spawnTrainer: nodeTrainer,
      backends: ['cpu'],
      ...(floors ? { floors } : {}),
    });
    for (const e of ['secagg', 'refused', 'error'] as const)
      client.on(e, (value) => seen.push({ event: e, value }));
    client.start();
    await hs.next('hello');
    hs.send('welcome', welcome(seed));
    await hs.next('ready');
    hs.send('round:start', r.start);
  }

  const refusal = () => hs.next('secagg:refuse').then((h) => h.payload as { reason: string; round: number });

  it('too-small roster: refused (too_few_peers), no shares dealt; a full roster is answered', async () => {
    const r = hostileRound(SEED + 1);
    await victim(SEED + 1, r);
    await hs.next('secagg:keys');
    hs.send('secagg:roster', wire.roster(r, rosterFor(r, [2, 3].slice(0, r.info.t - 1))));
    expect(await refusal()).toMatchObject({ reason: 'too_few_peers', round: 1 });
    expect(hs.all('secagg:shares')).toHaveLength(0);
    // The refusal changed nothing: the same client answers an honest roster.
    const mark = hs.heard.length;
    hs.send('secagg:roster', wire.roster(r, rosterFor(r)));
    const shares = sharesOf(await hs.next('secagg:shares', 30_000, mark), r.info.n);
    expect(shares.shares.map((s) => s.to).sort()).toEqual([2, 3, 4]);
  });

  it('too-small inbox: refused (too_few_shares), no masked input sent', async () => {
    const r = hostileRound(SEED + 2, { deadlineMs: 1000 });
    await victim(SEED + 2, r);
    const keys = await hs.next('secagg:keys');
    hs.send('secagg:roster', wire.roster(r, rosterFor(r)));
    await hs.next('secagg:shares');
    // One box of t: masked with (almost) only its self-mask, its input would fall to the honest peers' shares.
    hs.send('secagg:inbox', wire.inbox(r, inboxFor(r, keys, [2])));
    expect(await refusal()).toMatchObject({ reason: 'too_few_shares', round: 1 });
    // It trains, waits for an inbox it can use until the deadline, and gives up without sending its update.
    await waitFor(
      async () =>
        seen.some(
          (s) => s.event === 'error' && /no key shares arrived/.test(String((s.value as Error).message)),
        ),
      30_000,
      'the client to give up on the round',
      50,
    );
    expect(hs.all('update')).toHaveLength(0);
  });

  it('unmask asking for both shares of one peer: refused (both_shares), nothing revealed; an honest request is answered', async () => {
    const r = hostileRound(SEED + 3);
    await victim(SEED + 3, r);
    const keys = await hs.next('secagg:keys');
    hs.send('secagg:roster', wire.roster(r, rosterFor(r)));
    await hs.next('secagg:shares');
    hs.send('secagg:inbox', wire.inbox(r, inboxFor(r, keys)));
    const update = await hs.next('update');
    expect(new Uint8Array(update.payload.delta).byteLength).toBe((P + 3) * 4);
    hs.send('secagg:unmask', wire.unmask(r, { survivors: [2, 3, 4], dropped: [2] }));
    expect(await refusal()).toMatchObject({ reason: 'both_shares', round: 1 });
    expect(hs.all('secagg:reveal')).toHaveLength(0);
    // The refusal revealed nothing and changed nothing: an honest request gets one kind of share per peer.
    const mark = hs.heard.length;
    hs.send('secagg:unmask', wire.unmask(r, { survivors: [2, 3, 4], dropped: [] }));
    const reveal = unpackReveal((await hs.next('secagg:reveal', 30_000, mark)).payload, r.info.n);
    expect(reveal.b.map((x) => x.of).sort()).toEqual([2, 3, 4]);
    expect(reveal.s).toHaveLength(0);
  });

  it("plan below the page's floor: the round is refused (below_floor) before training; a plan at the floor is joined", async () => {
    const low = hostileRound(SEED + 4, { secagg: { n: 4, k: 3, t: 3 } });
    await victim(SEED + 4, low, { minCohort: 5 });
    const refused = await hs.next('round:refuse', 10_000);
    expect(refused.payload).toMatchObject({ round: 1, attempt: 1, reason: 'below_floor' });
    expect(seen.find((s) => s.event === 'refused')?.value).toMatchObject({
      round: 1,
      reason: 'below_floor',
    });
    // A plan that meets the floor is joined at once (keys go out while it trains); the low one never was.
    const ok = hostileRound(SEED + 4, { secagg: { n: 5, k: 4, t: 3 }, round: 2 });
    const mark = hs.heard.length;
    hs.send('round:start', ok.start);
    const keys = await hs.next('secagg:keys', 30_000, mark);
    expect(keys.payload.round).toBe(2);
    expect(hs.heard.slice(0, mark).map((h) => h.event)).not.toContain('secagg:keys');
    expect(hs.all('update')).toHaveLength(0);
  });
});
