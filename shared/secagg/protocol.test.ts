import { hexToBytes, randomBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { SecAggClientSession } from './client-session.ts';
import { SecAggAbort } from './errors.ts';
import { harary } from './graph.ts';
import { addMask } from './prg.ts';
import { bigToBytes, bytesToBig, FIELD_PRIME, reconstruct, SHARE_BYTES } from './shamir.ts';
import { SecAggServerSession } from './server-session.ts';
import { runInMemoryRound, type DropPoint, type InMemoryRoundInput } from './in-memory-round.ts';
import type { Reveal } from './types.ts';
import { reason } from './test-support.ts';
import { packReveal } from './wire.ts';

const BITS = 20;
function inputs(n: number, L: number): Uint32Array[] {
  // Offset-encoded values as a client would send them: small, far from uniform over 2^32.
  return Array.from({ length: n }, () =>
    Uint32Array.from(randomBytes(L * 4).subarray(0, L), (b, i) => (b * 4099 + i) % 2 ** BITS),
  );
}

function setup(
  n: number,
  k: number,
  t: number,
  L = 257,
  extra: Partial<InMemoryRoundInput> = {},
): InMemoryRoundInput {
  const nb = harary(n, k).map((l) => l.map((v) => v + 1));
  return { tag: `test/${Math.random()}`, neighbours: nb, t, minSurvivors: t, inputs: inputs(n, L), ...extra };
}

/** Chi-square statistic of the top 4 bits of each word against the uniform distribution (15 d.o.f.). */
function chiSquareTopNibble(v: Uint32Array): number {
  const c = new Array(16).fill(0);
  for (const w of v) c[w >>> 28]++;
  const e = v.length / 16;
  return c.reduce((s, o) => s + (o - e) ** 2 / e, 0);
}
const CHI2_15_P1E6 = 52.6; // critical value at p = 1e-6, 15 degrees of freedom

describe('secure aggregation round (pure state machines)', () => {
  it('with no dropouts, the unmasked sum equals the plaintext sum bit for bit (complete graph)', async () => {
    const r = await runInMemoryRound(setup(5, 4, 3));
    expect(r.survivors).toEqual([1, 2, 3, 4, 5]);
    expect(r.sum).toEqual(r.expected);
  });

  it('with a Harary graph (n = 16, k = 6, t = 4) the sum is exact too', async () => {
    const r = await runInMemoryRound(setup(16, 6, 4));
    expect(r.sum).toEqual(r.expected);
  });

  const points: DropPoint[] = ['before-keys', 'after-keys', 'after-shares', 'after-masked'];
  it.each(points)('a client dropping %s leaves the sum exact over the survivors', async (p) => {
    // t = 4 > k / 2: a client with both dropouts among its neighbours keeps k - 2 = 4 holders.
    const sim = setup(12, 6, 4, 101, {
      drops: new Map([
        [4, p],
        [9, p],
      ]),
    });
    const r = await runInMemoryRound(sim);
    const expectSurvivors = p === 'after-masked' ? 12 : 10;
    expect(r.survivors.length).toBe(expectSurvivors);
    expect(r.sum).toEqual(r.expected);
  });

  it('drops at every phase in one round (including during unmasking) still give the exact sum', async () => {
    const drops = new Map<number, DropPoint>([
      [1, 'before-keys'],
      [2, 'after-keys'],
      [3, 'after-shares'],
      [4, 'after-masked'],
      [11, 'after-shares'],
    ]);
    // k = 12, t = 7 > k / 2: even a client with all 5 dropouts as neighbours keeps k - 5 = 7 holders.
    const r = await runInMemoryRound(setup(16, 12, 7, 64, { drops }));
    expect(r.survivors).not.toContain(3);
    expect(r.survivors).toContain(4); // its input was collected; its self-mask seed was rebuilt from shares
    expect(r.sum).toEqual(r.expected);
  });

  it('fails cleanly (no partial result) when too few masked inputs arrive', async () => {
    const drops = new Map<number, DropPoint>([
      [1, 'after-shares'],
      [2, 'after-shares'],
      [3, 'after-shares'],
    ]);
    const sim = setup(5, 4, 3, 16, { drops });
    await expect(runInMemoryRound(sim)).rejects.toThrow(SecAggAbort);
  });

  it('fails cleanly when too many drop during unmasking for a secret to be rebuilt', async () => {
    const drops = new Map<number, DropPoint>([
      [1, 'after-masked'],
      [2, 'after-masked'],
      [3, 'after-masked'],
    ]);
    const sim = setup(5, 4, 3, 16, { drops });
    await expect(runInMemoryRound(sim)).rejects.toThrow(/2 shares, threshold 3/);
  });

  it('what the server receives: masked vectors look uniform; removing the self mask still leaves them uniform', async () => {
    const L = 4096;
    const drops = new Map<number, DropPoint>([[6, 'after-shares']]);
    const sim = setup(8, 7, 4, L, { drops });
    const r = await runInMemoryRound(sim);
    expect(r.sum).toEqual(r.expected);
    for (const [u, y] of r.transcript.masked) {
      const x = sim.inputs[u - 1];
      expect(chiSquareTopNibble(y)).toBeLessThan(CHI2_15_P1E6);
      // The test has power: the plaintext inputs fail it badly.
      expect(chiSquareTopNibble(inputs(1, L)[0])).toBeGreaterThan(10 * CHI2_15_P1E6);
      // The server legitimately rebuilds b_u for survivors; y_u - PRG(b_u) is still hidden by pairwise masks.
      const shares = [...r.transcript.reveals.entries()].flatMap(([holder, rv]) =>
        rv.b.filter((s) => s.of === u).map((s) => ({ x: holder, y: s.share })),
      );
      const seed = reconstruct(shares, 4);
      const unmaskedSelf = y.slice();
      await addMask(unmaskedSelf, seed, 'self', -1);
      expect(chiSquareTopNibble(unmaskedSelf)).toBeLessThan(CHI2_15_P1E6);
      let equal = 0;
      for (let i = 0; i < L; i++) if (unmaskedSelf[i] === x[i]) equal++;
      expect(equal).toBeLessThan(5);
    }
  });

  it('the transcript never holds both kinds of share for any client', async () => {
    const drops = new Map<number, DropPoint>([
      [2, 'after-shares'],
      [5, 'after-masked'],
    ]);
    const t = 4; // > k / 2 = 3
    const r = await runInMemoryRound(setup(10, 6, t, 32, { drops }));
    for (let u = 1; u <= 10; u++) {
      let b = 0;
      let s = 0;
      for (const rv of r.transcript.reveals.values()) {
        b += rv.b.filter((x) => x.of === u).length;
        s += rv.s.filter((x) => x.of === u).length;
      }
      expect(b === 0 || s === 0).toBe(true);
      if (u === 2) expect(s).toBeGreaterThanOrEqual(t);
      if (u === 5) expect(b).toBeGreaterThanOrEqual(t);
    }
  });
});

describe('misbehaviour is rejected with a reason', () => {
  function started(n = 5, t = 3, L = 8) {
    const nb = harary(n, n - 1).map((l) => l.map((v) => v + 1));
    const server = new SecAggServerSession({
      tag: 'x',
      n,
      neighbours: nb,
      t,
      vectorLength: L,
      minSurvivors: t,
    });
    const clients = Array.from(
      { length: n },
      (_, i) => new SecAggClientSession({ tag: 'x', index: i + 1, n, t, vectorLength: L }),
    );
    return { server, clients, n, L };
  }

  /** A complete-graph round of n taken to R4: every client through R1, clients 1..n-1 mask u * scale. */
  async function atUnmask(n: number, t: number, scale: number) {
    const { server, clients, L } = started(n, t, 8);
    clients.forEach((c, i) => server.receiveKeys(i + 1, c.advertise()));
    const rosters = server.closeKeys();
    clients.forEach((c, i) => server.receiveShares(i + 1, c.receiveRoster(rosters.get(i + 1))));
    const inboxes = server.closeShares();
    clients.forEach((c, i) => c.receiveInbox(inboxes.get(i + 1)));
    for (let u = 1; u < n; u++)
      server.receiveMasked(u, await clients[u - 1].mask(new Uint32Array(L).fill(u * scale)));
    return { server, clients, L, reqs: server.closeMasked() };
  }

  it('replayed keys, keys in the wrong phase, equal keys', () => {
    const { server, clients } = started();
    const k = clients[0].advertise();
    server.receiveKeys(1, k);
    expect(reason(() => server.receiveKeys(1, k))).toBe('duplicate');
    expect(reason(() => server.receiveKeys(2, { ...k, sPk: k.cPk }))).toBe('bad_key');
    expect(reason(() => server.receiveKeys(2, { ...k, cPk: new Uint8Array(31) }))).toBe('malformed');
    expect(reason(() => server.receiveKeys(2, { cPk: k.cPk, sPk: k.sPk }))).toBe('malformed'); // no gPk
    expect(reason(() => server.receiveKeys(2, { ...k, gPk: new Uint8Array(33) }))).toBe('malformed');
    expect(reason(() => server.receiveShares(1, {}))).toBe('wrong_phase');
  });

  it('a share addressed to a non-neighbour, twice to one peer, or missing one; replayed shares', () => {
    // A sparse graph: 1's neighbours are 2 and 6 only.
    const nb = [
      [2, 6],
      [1, 3],
      [2, 4],
      [3, 5],
      [4, 6],
      [5, 1],
    ];
    const s2 = new SecAggServerSession({
      tag: 'x',
      n: 6,
      neighbours: nb,
      t: 2,
      vectorLength: 8,
      minSurvivors: 2,
    });
    const cs = Array.from(
      { length: 6 },
      (_, i) => new SecAggClientSession({ tag: 'x', index: i + 1, n: 6, t: 2, vectorLength: 8 }),
    );
    cs.forEach((c, i) => s2.receiveKeys(i + 1, c.advertise()));
    const rosters = s2.closeKeys();
    const m = cs[0].receiveRoster(rosters.get(1));
    expect(
      reason(() => s2.receiveShares(1, { ...m, shares: [...m.shares, { to: 4, ct: m.shares[0].ct }] })),
    ).toBe('not_neighbour');
    expect(reason(() => s2.receiveShares(1, { ...m, shares: [m.shares[0], m.shares[0]] }))).toBe('duplicate');
    expect(reason(() => s2.receiveShares(1, { ...m, shares: [m.shares[0]] }))).toBe('malformed');
    s2.receiveShares(1, m);
    expect(reason(() => s2.receiveShares(1, m))).toBe('duplicate');
  });

  it('a wrong-length or replayed masked vector; a masked vector from a client outside U2', async () => {
    const { server, clients, L } = started(4, 2, 8);
    clients.forEach((c, i) => server.receiveKeys(i + 1, c.advertise()));
    const rosters = server.closeKeys();
    for (const u of [1, 2, 3]) server.receiveShares(u, clients[u - 1].receiveRoster(rosters.get(u)));
    const inboxes = server.closeShares();
    clients[0].receiveInbox(inboxes.get(1));
    const y = await clients[0].mask(new Uint32Array(L));
    expect(reason(() => server.receiveMasked(1, y.subarray(1)))).toBe('wrong_length');
    server.receiveMasked(1, y);
    expect(reason(() => server.receiveMasked(1, y))).toBe('duplicate');
    expect(reason(() => server.receiveMasked(4, y))).toBe('not_selected');
  });

  it('a client revealing both shares of a peer, or a share it was not asked for; the client refuses a request for both', async () => {
    const { server, clients, reqs } = await atUnmask(4, 2, 0);
    expect(reqs.get(1)).toEqual({ survivors: [2, 3], dropped: [4] });
    // The client refuses to reveal both shares of client 2.
    expect(reason(() => clients[0].receiveUnmask({ survivors: [2, 3], dropped: [2, 4] }))).toBe(
      'both_shares',
    );
    const rv = clients[0].receiveUnmask(reqs.get(1));
    expect(rv.b.map((s) => s.of)).toEqual([2, 3]);
    expect(rv.s.map((s) => s.of)).toEqual([4]);
    expect(reason(() => server.receiveReveal(1, { b: rv.b, s: [...rv.s, { ...rv.b[0], of: 2 }] }))).toBe(
      'both_shares',
    );
    expect(reason(() => server.receiveReveal(1, { b: [...rv.b, { ...rv.b[0], of: 4 }], s: [] }))).toBe(
      'unrequested_share',
    );
    // Every revealed share travels with its dealer's 64-byte signature.
    const { sig: _sig, ...unsigned } = rv.b[0];
    expect(reason(() => server.receiveReveal(1, { b: [unsigned, rv.b[1]], s: rv.s }))).toBe('malformed');
    expect(
      reason(() =>
        server.receiveReveal(1, { b: [{ ...rv.b[0], sig: rv.b[0].sig.subarray(1) }, rv.b[1]], s: rv.s }),
      ),
    ).toBe('malformed');
    expect(reason(() => server.receiveReveal(1, { b: [...rv.b, rv.b[0]], s: rv.s }))).toBe('duplicate');
    server.receiveReveal(1, rv);
    expect(reason(() => server.receiveReveal(1, rv))).toBe('duplicate');
    expect(reason(() => clients[0].receiveUnmask(reqs.get(1)))).toBe('duplicate');
  });

  it('reveals as they travel (receiveRevealWire): bad records are refused, a refusal leaves no mark on the next reveal, the sum is exact', async () => {
    const { server, clients, L, reqs } = await atUnmask(4, 2, 1000);
    const wire = [1, 2, 3].map((u) => packReveal(clients[u - 1].receiveUnmask(reqs.get(u))));
    const w1 = wire[0];
    const REC = 4 + 33 + 64;
    const withOf = (b: Uint8Array, of: number): Uint8Array => {
      const c = b.slice();
      new DataView(c.buffer).setUint32(0, of);
      return c;
    };
    expect(reason(() => server.receiveRevealWire(1, { b: w1.b.subarray(1), s: w1.s }))).toBe('malformed');
    expect(reason(() => server.receiveRevealWire(1, { b: withOf(w1.b, 0), s: w1.s }))).toBe('malformed');
    expect(reason(() => server.receiveRevealWire(1, { b: withOf(w1.b, 5), s: w1.s }))).toBe('malformed');
    expect(reason(() => server.receiveRevealWire(1, { b: w1.b, s: 'no' }))).toBe('malformed');
    const twice = new Uint8Array([...w1.b.subarray(0, REC), ...w1.b.subarray(0, REC)]);
    expect(reason(() => server.receiveRevealWire(1, { b: twice, s: w1.s }))).toBe('duplicate');
    // 1 holds b-shares of 2 and 3 and the s-share of 4: an s-share of 2 too is both shares of 2.
    const sOf2 = withOf(w1.s, 2);
    expect(
      reason(() => server.receiveRevealWire(1, { b: w1.b, s: new Uint8Array([...w1.s, ...sOf2]) })),
    ).toBe('both_shares');
    // A b-share of 4 (dropped: only its s-share was asked for) is unrequested (sent without that s-share).
    const bOf4 = withOf(w1.b.subarray(0, REC), 4);
    expect(
      reason(() =>
        server.receiveRevealWire(1, { b: new Uint8Array([...w1.b, ...bOf4]), s: new Uint8Array(0) }),
      ),
    ).toBe('unrequested_share');
    // Its own b-share (1 is asked for no share of itself): unrequested, and its mark must not outlive the
    // refusal, or 2's b-share of 1 below would read as a duplicate.
    const bOf1 = withOf(w1.b.subarray(0, REC), 1);
    expect(reason(() => server.receiveRevealWire(1, { b: bOf1, s: new Uint8Array(0) }))).toBe(
      'unrequested_share',
    );
    // After all those refusals of 1, the others' reveals (the same clients named) are taken as usual.
    server.receiveRevealWire(2, wire[1]);
    server.receiveRevealWire(3, wire[2]);
    server.receiveRevealWire(1, w1);
    expect(reason(() => server.receiveRevealWire(1, w1))).toBe('duplicate');
    const sum = await server.closeUnmask();
    expect(sum).toEqual(new Uint32Array(L).fill(6000));
  });

  it("a reveal whose last record is out of the field is refused and its sender dropped; the others' make the sum", async () => {
    const { server, clients, L, reqs } = await atUnmask(7, 4, 1);
    const w1 = packReveal(clients[0].receiveUnmask(reqs.get(1)));
    const bad = w1.s.slice();
    bad.fill(0xff, bad.length - 64 - 33, bad.length - 64); // the last record's share: 33 bytes of 0xff
    expect(reason(() => server.receiveRevealWire(1, { b: w1.b, s: bad }))).toBe('malformed_share');
    expect(server.culprits).toEqual([1]);
    expect(reason(() => server.receiveRevealWire(1, w1))).toBe('duplicate');
    for (const u of [2, 3, 4, 5, 6])
      server.receiveRevealWire(u, packReveal(clients[u - 1].receiveUnmask(reqs.get(u))));
    expect(await server.closeUnmask()).toEqual(new Uint32Array(L).fill(21));
  });

  it('a box redirected to another client does not open there; the round still completes from the other shares', async () => {
    const sim = setup(6, 5, 3, 32, {
      tamper: {
        inbox: (to, m) =>
          to === 1 ? { shares: m.shares.map((e, i) => (i === 0 ? { ...e, ct: m.shares[1].ct } : e)) } : m,
      },
    });
    const r = await runInMemoryRound(sim);
    expect(r.sum).toEqual(r.expected);
    expect(r.clients[0].badBoxes.length).toBe(1);
  });

  it('tampered revealed shares are caught by the commitment / public-key check and abort the round', async () => {
    const sim = setup(5, 4, 3, 16, {
      drops: new Map([[5, 'after-shares' as DropPoint]]),
      tamper: {
        reveal: (_u, m) => ({
          b: m.b.map((s) => ({ ...s, share: Uint8Array.from(s.share, (x, i) => (i === 32 ? x ^ 1 : x)) })),
          s: m.s,
        }),
      },
    });
    await expect(runInMemoryRound(sim)).rejects.toThrow(/commitment/);
  });
});

describe('bad keys and bad shares: refused or set aside, the round completes, the culprit is named', () => {
  /** Another field element than the share: what a cheating holder could reveal (the signature stays). */
  const wrongShare = (y: Uint8Array): Uint8Array =>
    bigToBytes((bytesToBig(y) + 1n + bytesToBig(randomBytes(16))) % FIELD_PRIME, SHARE_BYTES);
  const corrupt = (l: Reveal['b']): Reveal['b'] => l.map((e) => ({ ...e, share: wrongShare(e.share) }));

  it('a holder revealing wrong (in-field) shares of every peer: the sum is exact and it is named (altered_share)', async () => {
    // Full graph, n = 8, t = 4, client 6 drops after sharing. Client 1 comes first among every secret's
    // holders, so each first-t try fails until 1 is named: its shares lack their dealers' signatures, are
    // set aside, and the 5 or 6 signed ones rebuild the secret. Named once, 1 goes last for later secrets.
    const sim = setup(8, 7, 4, 64, {
      drops: new Map([[6, 'after-shares' as DropPoint]]),
      tamper: { reveal: (u, m) => (u === 1 ? { b: corrupt(m.b), s: corrupt(m.s) } : m) },
    });
    const r = await runInMemoryRound(sim);
    expect(r.transcript.reveals.get(1)!.s.length).toBe(1); // the dropped client's key share was forged too
    expect(r.sum).toEqual(r.expected);
    expect(r.server.culprits).toEqual([1]);
    expect(r.server.culpritEvidence).toEqual([{ index: 1, kind: 'altered_share' }]);
    expect(r.rejected).toEqual([]);
  });

  it('two colluding holders (t = 5 of 9 holders): their unsigned shares are set aside, both named', async () => {
    const sim = setup(10, 9, 5, 32, {
      tamper: { reveal: (u, m) => (u === 2 || u === 5 ? { b: corrupt(m.b), s: m.s } : m) },
    });
    const r = await runInMemoryRound(sim);
    expect(r.sum).toEqual(r.expected);
    expect(r.server.culpritEvidence).toEqual([
      { index: 2, kind: 'altered_share' },
      { index: 5, kind: 'altered_share' },
    ]);
  });

  it('fewer than t validly signed shares left: a clean abort, nothing released, the alterers still named', async () => {
    // n = 5 full graph, t = 3: client 1's seed has holders 2..5; with 2 and 3 lying, 2 signed shares remain.
    let server: SecAggServerSession | undefined;
    const sim = setup(5, 4, 3, 16, {
      tamper: { reveal: (u, m) => (u === 2 || u === 3 ? { b: corrupt(m.b), s: m.s } : m) },
      onServer: (s) => (server = s),
    });
    let err: unknown;
    try {
      await runInMemoryRound(sim);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SecAggAbort);
    expect((err as Error).message).toMatch(
      /client 1 does not match its commitment .* only 2 of 4 shares carry client 1's signature \(threshold 3\)/,
    );
    expect(server!.phase).toBe('failed');
    expect(server!.culpritEvidence).toEqual([
      { index: 2, kind: 'altered_share' },
      { index: 3, kind: 'altered_share' },
    ]);
  });

  it('a share that is not a field element is refused on receipt (malformed_share); the round completes without it', async () => {
    const sim = setup(7, 6, 4, 32, {
      drops: new Map([[7, 'after-shares' as DropPoint]]),
      tamper: {
        reveal: (u, m) =>
          u === 3
            ? { b: m.b.map((e, i) => (i === 0 ? { ...e, share: new Uint8Array(33).fill(0xff) } : e)), s: m.s }
            : m,
      },
    });
    const r = await runInMemoryRound(sim);
    expect(r.rejected).toEqual([{ from: 3, phase: 'unmask', reason: 'malformed_share' }]);
    expect(r.sum).toEqual(r.expected);
    expect(r.server.culpritEvidence).toEqual([{ index: 3, kind: 'malformed_share' }]);
  });

  it('a low-order or unusable key (X25519 or Ed25519) is refused at R0 (bad_key) and the round completes without that client', async () => {
    const order8 = hexToBytes('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800');
    const identity = new Uint8Array(32);
    identity[0] = 1; // the Ed25519 identity point: strict verification accepts no signature under it
    const notAPoint = new Uint8Array(32).fill(0xff); // y >= p
    const sim = setup(9, 8, 3, 32, {
      tamper: {
        keys: (u, m) =>
          u === 4
            ? { ...m, sPk: order8 }
            : u === 6
              ? { ...m, cPk: new Uint8Array(32) }
              : u === 7
                ? { ...m, gPk: identity }
                : u === 8
                  ? { ...m, gPk: notAPoint }
                  : m,
      },
    });
    const r = await runInMemoryRound(sim);
    expect(r.rejected).toEqual([
      { from: 4, phase: 'keys', reason: 'bad_key' },
      { from: 6, phase: 'keys', reason: 'bad_key' },
      { from: 7, phase: 'keys', reason: 'bad_key' },
      { from: 8, phase: 'keys', reason: 'bad_key' },
    ]);
    expect(r.survivors).toEqual([1, 2, 3, 5, 9]);
    expect(r.sum).toEqual(r.expected);
  });
  it('a refused client is not waited for and cannot come back in the same attempt', async () => {
    const n = 5;
    const nb = harary(n, n - 1).map((l) => l.map((v) => v + 1));
    const server = new SecAggServerSession({
      tag: 'x',
      n,
      neighbours: nb,
      t: 2,
      vectorLength: 4,
      minSurvivors: 2,
    });
    const clients = Array.from(
      { length: n },
      (_, i) => new SecAggClientSession({ tag: 'x', index: i + 1, n, t: 2, vectorLength: 4 }),
    );
    const k5 = clients[4].advertise();
    expect(reason(() => server.receiveKeys(5, { ...k5, cPk: new Uint8Array(32) }))).toBe('bad_key');
    expect(server.waitingFor()).toEqual([1, 2, 3, 4]);
    expect(reason(() => server.receiveKeys(5, k5))).toBe('duplicate');
    const live = [1, 2, 3, 4];
    for (const u of live) server.receiveKeys(u, clients[u - 1].advertise());
    expect(server.waitingFor()).toEqual([]);
    const rosters = server.closeKeys();
    expect([...rosters.keys()]).toEqual(live);
    expect(rosters.get(1)!.peers.map((p) => p.index)).toEqual([2, 3, 4]);
    for (const u of live) server.receiveShares(u, clients[u - 1].receiveRoster(rosters.get(u)));
    const inboxes = server.closeShares();
    for (const u of live) {
      clients[u - 1].receiveInbox(inboxes.get(u));
      server.receiveMasked(u, await clients[u - 1].mask(new Uint32Array(4).fill(u)));
    }
    const reqs = server.closeMasked();
    const rv1 = clients[0].receiveUnmask(reqs.get(1));
    const bad = { b: rv1.b.map((e) => ({ ...e, share: new Uint8Array(33).fill(0xee) })), s: rv1.s };
    expect(reason(() => server.receiveReveal(1, bad))).toBe('malformed_share');
    expect(server.waitingFor()).toEqual([2, 3, 4]);
    expect(reason(() => server.receiveReveal(1, rv1))).toBe('duplicate');
    for (const u of [2, 3, 4]) server.receiveReveal(u, clients[u - 1].receiveUnmask(reqs.get(u)));
    const unmasked = server.closeUnmask();
    // While the masks are stripped the session takes nothing more and waits for nobody.
    expect(server.phase).toBe('unmask');
    expect(server.waitingFor()).toEqual([]);
    expect(reason(() => server.receiveReveal(1, rv1))).toBe('late');
    await expect(server.closeUnmask()).rejects.toThrow(/already started/);
    expect(await unmasked).toEqual(Uint32Array.from([10, 10, 10, 10]));
    expect(server.phase).toBe('done');
    expect(server.culprits).toEqual([1]);
  });
});
