import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { asBytes } from '../shared/base/bytes.ts';
import { vectorLength } from '../shared/fl/encoding.ts';
import { packReveal, packShares, unpackReveal } from '../shared/secagg/wire.ts';
import { metric } from './metrics.ts';
import { ScriptedClient, type SecPhase } from './scripted-client.ts';
import { startServerProcess, waitForPhase, type ServerProcess } from './server-process.ts';

/**
 * Secure aggregation end to end: the server process, real socket.io, twelve protocol clients. Four vanish,
 * one before each phase; four misbehave once each before behaving; four just take part. Everything the clients send (= all the
 * server receives) is recorded and checked.
 */
const P = numParams(MODELS.tiny);
let srv: ServerProcess;
const clients: ScriptedClient[] = [];

beforeAll(async () => {
  srv = await startServerProcess([
    '--model',
    'tiny',
    '--examples-per-client',
    '8',
    '--test-examples',
    '50',
    '--rounds',
    '1',
    '--min-clients',
    '12',
    '--clients-per-round',
    '12',
    '--min-updates',
    '3',
    '--round-pause-ms',
    '300',
    '--round-deadline-ms',
    '30000',
    '--secagg-keys-deadline-ms',
    '10000',
    '--secagg-shares-deadline-ms',
    '10000',
    '--secagg-unmask-deadline-ms',
    '10000',
    '--max-message-bytes',
    String(P * 4 + 64 * 1024),
    // The public cap ring weights are divided by; near the real counts, the weighted mean is exact to 1e-6.
    '--max-examples-per-client',
    '16',
  ]);
});

afterAll(async () => {
  if (process.env.DEBUG_E2E) console.log(srv?.output());
  for (const c of clients) c.close();
  await srv?.stop();
});

const chi2TopNibble = (v: Uint32Array): number => {
  const c = new Array(16).fill(0);
  for (const w of v) c[w >>> 28]++;
  const e = v.length / 16;
  return c.reduce((s, o) => s + (o - e) ** 2 / e, 0);
};

describe('secure aggregation over socket.io', () => {
  it('drops at every phase, rejects misbehaviour, and the server only ever sees masked vectors', async () => {
    const vanish: (SecPhase | null)[] = ['keys', 'shares', 'masked', 'unmask', ...Array<null>(8).fill(null)];
    const examples = [8, 8, 8, 8, 4, 8, 12, 16, 8, 6, 10, 8];
    const losses = examples.map((_, i) => 0.5 + 0.25 * i);
    const deltas = examples.map(() => Float32Array.from({ length: P }, () => (Math.random() - 0.5) * 0.02));
    for (let i = 0; i < 12; i++)
      clients.push(
        new ScriptedClient(
          srv.url,
          `scripted-client-${String(i).padStart(4, '0')}`,
          deltas[i],
          examples[i],
          vanish[i],
          losses[i],
        ),
      );
    const [, , , , e, f, g, h] = clients;
    const rejected: Record<string, string> = {};
    const expectReject = (name: string) => (ack: { ok: boolean; reason?: string; duplicate?: boolean }) =>
      (rejected[name] = ack.ok ? (ack.duplicate ? 'acknowledged duplicate' : 'accepted') : ack.reason!);

    // Replayed keys: the same message again (a re-send after a lost ack) is acknowledged and counted once;
    // different keys from the same member are refused as a second message.
    h.hooks.shares = async (c, m) => {
      if (m.round !== 1) return;
      const keys = c.session!.advertise();
      expectReject('replayed keys')(await c.emit('secagg:keys', { round: 1, attempt: 1, ...keys }));
      const other = { ...keys, cPk: keys.sPk, sPk: keys.cPk };
      expectReject('other keys, later')(await c.emit('secagg:keys', { round: 1, attempt: 1, ...other }));
    };
    // A share addressed to a client outside the roster (client 1 never advertised keys).
    g.hooks.shares = async (c, m) => {
      if (m.round !== 1) return;
      const roster = c.roster(m);
      const good = c.session!.receiveRoster(roster);
      (c.session as any).roster = new Map(); // the session builds its shares again when it answers
      const me = c.start!.secagg!.index;
      const absent = Array.from({ length: 12 }, (_, i) => i + 1).find(
        (i) => i !== me && !roster.peers.some((p) => p.index === i),
      )!;
      const forged = packShares({
        commit: good.commit,
        shares: [...good.shares, { to: absent, ct: good.shares[0].ct }],
      });
      expectReject('share to a non-neighbour')(
        await c.emit('secagg:shares', { round: 1, attempt: 1, ...forged }),
      );
    };
    // A wrong-length masked vector.
    f.hooks.masked = async (c, m) => {
      if (m.round !== 1) return;
      expectReject('short masked vector')(
        await c.emit('update', { round: 1, attempt: 1, delta: new Uint32Array(P).buffer }),
      );
    };
    // Revealing both shares of one peer.
    e.hooks.unmask = async (c, m) => {
      if (m.round !== 1 || !m.survivors.length) return;
      const peer = m.survivors[0];
      const both = packReveal({
        b: [{ of: peer, share: new Uint8Array(33), sig: new Uint8Array(64) }],
        s: [{ of: peer, share: new Uint8Array(33), sig: new Uint8Array(64) }],
      });
      expectReject('both shares of a peer')(await c.emit('secagg:reveal', { round: 1, attempt: 1, ...both }));
    };

    const status = await waitForPhase(srv.url, 'done', 120_000);
    expect(status.history).toHaveLength(1);
    // Complete graph k = 11, t = floor(12 / 2) + 1 = 7: after four dropouts every secret still has 7 holders
    // answering (9 masked inputs; one of them vanishes during unmasking).
    expect(status.secagg).toMatchObject({ k: 11, t: 7, complete: true, toleratedColluders: 6 });
    expect(status.history[0]).toMatchObject({ secagg: true, clients: 9 }); // clients 4..12 masked their input

    // Round 1's result is the exact weighted mean of the survivors' inputs (client 4 vanished after masking).
    const survivors = [3, 4, 5, 6, 7, 8, 9, 10, 11];
    const W = survivors.reduce((s, i) => s + examples[i], 0);
    // The example count and the mean training loss come only from the decoded sum.
    expect(status.history[0].examples).toBe(W);
    const meanLoss = survivors.reduce((s, i) => s + losses[i], 0) / survivors.length;
    expect(status.history[0].trainLoss).toBeCloseTo(meanLoss, 4);
    const w = new Float32Array(await (await fetch(srv.url + '/api/model/weights')).arrayBuffer());
    const w0 = new Float32Array(asBytes(h.starts[0].weights)!.slice().buffer);
    expect(w.length).toBe(P);
    let err = 0;
    for (let j = 0; j < P; j++) {
      const exact = survivors.reduce((s, i) => s + examples[i] * deltas[i][j], 0) / W;
      err = Math.max(err, Math.abs(w![j] - w0[j] - exact));
    }
    expect(err).toBeLessThan(1e-6);

    expect(rejected).toEqual({
      'replayed keys': 'acknowledged duplicate',
      'other keys, later': 'duplicate',
      'share to a non-neighbour': 'not_neighbour',
      'short masked vector': 'wrong_length',
      'both shares of a peer': 'both_shares',
    });

    // The tap: nothing per client travels in the clear. ready is { backend } (checked by the server, which
    // refuses more), every update is { round, attempt, delta } ...
    for (const c of clients)
      for (const s of c.sent.filter((x) => x.event === 'update'))
        expect(Object.keys(s.payload).sort()).toEqual(['attempt', 'delta', 'round']);
    // ... every binary vector any client sent is masked (uniform-looking, unrelated to its plaintext),
    // and no client's two kinds of share were ever both revealed.
    for (const c of clients) {
      for (const s of c.sent.filter(
        (x) => x.event === 'update' && x.payload.delta.byteLength === vectorLength(P) * 4,
      )) {
        const y = new Uint32Array(s.payload.delta);
        const x = c.plain.get(s.payload.round)!;
        expect(chi2TopNibble(y)).toBeLessThan(52.6); // chi-square(15) at p = 1e-6
        expect(chi2TopNibble(x)).toBeGreaterThan(1000); // the plaintext fails the same test badly
        let same = 0;
        for (let i = 0; i < y.length; i++) if (y[i] === x[i]) same++;
        expect(same).toBeLessThan(5);
      }
    }
    const revealedKinds = new Map<string, Set<string>>();
    for (const c of clients) {
      for (const s of c.sent.filter((x) => x.event === 'secagg:reveal' && x.ack?.ok)) {
        const r = unpackReveal(s.payload, 12);
        for (const kind of ['b', 's'] as const) {
          for (const x of r[kind]) {
            const key = `${s.payload.round}/${x.of}`;
            revealedKinds.set(key, (revealedKinds.get(key) ?? new Set()).add(kind));
          }
        }
      }
    }
    expect(revealedKinds.size).toBeGreaterThan(0);
    for (const kinds of revealedKinds.values()) expect(kinds.size).toBe(1);

    const m = await (await fetch(srv.url + '/metrics')).text();
    expect(metric(m, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(1);
    for (const phase of ['keys', 'shares', 'masked', 'unmask'])
      expect(metric(m, 'aegis_secagg_dropouts_total', { phase })).toBe(1);
    expect(
      metric(m, 'aegis_messages_rejected_total', { reason: 'not_neighbour', event: 'secagg:shares' }),
    ).toBe(1);
    expect(
      metric(m, 'aegis_messages_rejected_total', { reason: 'both_shares', event: 'secagg:reveal' }),
    ).toBe(1);
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'wrong_length', event: 'update' })).toBe(1);
    // The identical re-send is not a rejection; the different second keys message is.
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'duplicate', event: 'secagg:keys' })).toBe(1);
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'wrong_phase', event: 'secagg:keys' })).toBe(
      0,
    );
  }, 180_000);
});
