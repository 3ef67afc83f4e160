import { randomBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../base/errors.ts';
import { SecAggClientSession, type ClientAttestation } from './client-session.ts';
import {
  attest,
  countSurvivorSignatures,
  generateSigningKeyPair,
  signRoundKeys,
  signSurvivors,
  type SigningKeyPair,
} from './consistency.ts';
import { SecAggAbort } from './errors.ts';
import { harary } from './graph.ts';
import { runInMemoryRound, type DropPoint, type InMemoryRoundInput } from './in-memory-round.ts';
import { SecAggServerSession } from './server-session.ts';
import type { Reveal, Roster, UnmaskRequest } from './types.ts';
import { packRoster, packUnmask, unpackRoster, unpackUnmask } from './wire.ts';
import { reason } from './test-support.ts';

const L = 33;
const site = generateSigningKeyPair();

function attested(s: SigningKeyPair = site, identity = generateSigningKeyPair()): ClientAttestation {
  return { sitePublicKey: s.publicKey, identity, signature: attest(s.secretKey, identity.publicKey) };
}

function inputs(n: number): Uint32Array[] {
  return Array.from({ length: n }, () => Uint32Array.from(randomBytes(L), (b) => b * 7919));
}

function sim(n: number, k: number, t: number, extra: Partial<InMemoryRoundInput> = {}): InMemoryRoundInput {
  return {
    tag: `r3/${Math.random()}`,
    neighbours: harary(n, k).map((l) => l.map((v) => v + 1)),
    t,
    minSurvivors: t,
    inputs: inputs(n),
    consistency: { site },
    ...extra,
  };
}

/**
 * A complete-graph round with R3, driven by hand through the real sessions up to the end of R2 (every
 * masked input in), so a test can play a server that lies from there on.
 */
async function upToMasked(n: number, t: number) {
  const tag = `r3/${Math.random()}`;
  const neighbours = harary(n, n - 1).map((l) => l.map((v) => v + 1));
  const server = new SecAggServerSession({
    tag,
    n,
    neighbours,
    t,
    vectorLength: L,
    minSurvivors: t,
    consistency: { sitePublicKey: site.publicKey },
  });
  const clients = Array.from(
    { length: n },
    (_, i) =>
      new SecAggClientSession({
        tag,
        index: i + 1,
        n,
        t,
        vectorLength: L,
        consistency: true,
        attestation: attested(),
      }),
  );
  const ids = clients.map((_, i) => i + 1);
  const xs = inputs(n);
  for (const u of ids) server.receiveKeys(u, clients[u - 1].advertise());
  const rosters = server.closeKeys();
  for (const u of ids) server.receiveShares(u, clients[u - 1].receiveRoster(rosters.get(u)));
  const inboxes = server.closeShares();
  const masked = new Map<number, Uint32Array>();
  for (const u of ids) {
    clients[u - 1].receiveInbox(inboxes.get(u));
    masked.set(u, await clients[u - 1].mask(xs[u - 1]));
    server.receiveMasked(u, masked.get(u)!);
  }
  return { tag, server, clients, ids, rosters, masked };
}

describe('honest rounds with authenticated keys and the consistency round', () => {
  it('complete graph: the sum is exact, every survivor signed U3, and each reveal followed t signatures', async () => {
    const r = await runInMemoryRound(sim(5, 4, 3));
    expect(r.survivors).toEqual([1, 2, 3, 4, 5]);
    expect(r.sum).toEqual(r.expected);
    expect(r.rejected).toEqual([]);
  });

  it('Harary graph (n = 16, k = 6, t = 4): exact too', async () => {
    const r = await runInMemoryRound(sim(16, 6, 4));
    expect(r.sum).toEqual(r.expected);
  });

  it.each<DropPoint>(['before-keys', 'after-keys', 'after-shares', 'after-masked', 'after-signature'])(
    'clients dropping %s: the sum is exact over the survivors',
    async (p) => {
      const r = await runInMemoryRound(
        sim(12, 8, 5, {
          drops: new Map([
            [4, p],
            [9, p],
          ]),
        }),
      );
      // Dropping after R2 (before signing or before revealing) keeps the input in the sum.
      expect(r.survivors.length).toBe(p === 'after-masked' || p === 'after-signature' ? 12 : 10);
      expect(r.sum).toEqual(r.expected);
    },
  );

  it("a client that drops in R3 is not asked to reveal; the others get their neighbours' signatures", async () => {
    const { server, clients, ids } = await upToMasked(5, 3);
    const sets = server.closeMaskedToConsistency();
    expect([...sets.values()].every((s) => s.survivors.join() === '1,2,3,4,5')).toBe(true);
    for (const u of ids)
      if (u !== 5) server.receiveSignature(u, clients[u - 1].receiveSurvivors(sets.get(u)));
    const requests = server.closeConsistency();
    expect([...requests.keys()]).toEqual([1, 2, 3, 4]);
    // Every request carries the signatures of the asker's signing neighbours, which the client accepts.
    for (const [u, req] of requests) {
      expect(req.signatures!.map((s) => s.index)).toEqual([1, 2, 3, 4].filter((v) => v !== u));
      expect(reason(() => clients[u - 1].receiveUnmask(unpackUnmask(packUnmask(req), 5)))).toBe('accepted');
    }
  });

  it('too few signers for t signing neighbours: the attempt aborts at the end of R3, nobody is asked', async () => {
    const { server, clients } = await upToMasked(5, 3);
    const sets = server.closeMaskedToConsistency();
    for (const u of [1, 2, 3]) server.receiveSignature(u, clients[u - 1].receiveSurvivors(sets.get(u)));
    expect(server.waitingFor()).toEqual([4, 5]);
    expect(() => server.closeConsistency()).toThrow(SecAggAbort);
    expect(server.phase).toBe('failed');
  });
});

describe('a server that tells two clients different survivor sets is caught', () => {
  /**
   * n = 5, t = 3, complete graph: the server wants client 5's input. It tells clients 1 and 2 (and 5) that
   * 5 survived, so they would reveal shares of b_5, and tells 3 and 4 that 5 dropped, so they would reveal
   * shares of s_5; with both secrets y_5 unmasks to x_5. Each honest client signs only what it was told.
   */
  it('each client refuses to reveal (inconsistent_view) and the server gets no share at all', async () => {
    const { tag, server, clients, ids } = await upToMasked(5, 3);
    const all = [1, 2, 3, 4, 5];
    const told = new Map<number, number[]>(ids.map((u) => [u, u === 3 || u === 4 ? [1, 2, 3, 4] : all]));
    const sigs = ids.map((u) => ({
      index: u,
      sig: clients[u - 1].receiveSurvivors({ survivors: told.get(u) }).sig,
    }));
    // The honest server session would not even take the signatures over the false set.
    expect(reason(() => server.closeMaskedToConsistency())).toBe('accepted');
    expect(reason(() => server.receiveSignature(3, { sig: sigs[2].sig }))).toBe('inconsistent_view');
    // The lying server forwards every signature it has to everyone, with a request that matches what
    // each was told (so the per-request checks pass: no peer is both survivor and dropout for anyone).
    const reveals: Reveal[] = [];
    const refusals: string[] = [];
    for (const u of ids) {
      const set = told.get(u)!;
      const nbs = all.filter((v) => v !== u);
      const req: UnmaskRequest = {
        survivors: nbs.filter((v) => set.includes(v)),
        dropped: nbs.filter((v) => !set.includes(v)),
        signatures: sigs.filter((s) => s.index !== u),
      };
      try {
        reveals.push(clients[u - 1].receiveUnmask(req));
      } catch (e) {
        refusals.push((e as ProtocolError).reason);
      }
    }
    // Clients 1, 2 hold 2 neighbour signatures on their set (the other of 1/2, and 5): fewer than t = 3.
    // Clients 3, 4 hold 1 (each other). Client 5 holds 2 (1 and 2). Nobody reveals.
    expect(refusals).toEqual([
      'inconsistent_view',
      'inconsistent_view',
      'inconsistent_view',
      'inconsistent_view',
      'inconsistent_view',
    ]);
    expect(reveals).toEqual([]);
    // What the clients signed is evidence anyone can check: valid signatures over two different survivor
    // sets for one round tag, by each signer's key of this attempt, which its attested identity signed.
    const idKeys = new Map(ids.map((u) => [u, clients[u - 1].advertise().gPk]));
    expect(countSurvivorSignatures(tag, all, sigs, idKeys).valid).toEqual([1, 2, 5]);
    expect(countSurvivorSignatures(tag, [1, 2, 3, 4], sigs, idKeys).valid).toEqual([3, 4]);
  });

  it('n = 6, t = 3: the majority side may reveal its own story, the minority refuses; never both secrets', async () => {
    // Told "6 survived": 1, 2, 3, 6. Told "6 dropped": 4, 5. The majority has t signatures on its set.
    const { clients, ids, masked } = await upToMasked(6, 3);
    const all = [1, 2, 3, 4, 5, 6];
    const told = new Map<number, number[]>(ids.map((u) => [u, u === 4 || u === 5 ? [1, 2, 3, 4, 5] : all]));
    const sigs = ids.map((u) => ({
      index: u,
      sig: clients[u - 1].receiveSurvivors({ survivors: told.get(u) }).sig,
    }));
    const b6: { x: number; y: Uint8Array }[] = [];
    const s6: { x: number; y: Uint8Array }[] = [];
    const refused: number[] = [];
    for (const u of ids) {
      const set = told.get(u)!;
      const nbs = all.filter((v) => v !== u);
      try {
        const r = clients[u - 1].receiveUnmask({
          survivors: nbs.filter((v) => set.includes(v)),
          dropped: nbs.filter((v) => !set.includes(v)),
          signatures: sigs.filter((s) => s.index !== u),
        });
        for (const e of r.b) if (e.of === 6) b6.push({ x: u, y: e.share });
        for (const e of r.s) if (e.of === 6) s6.push({ x: u, y: e.share });
      } catch (e) {
        expect((e as ProtocolError).reason).toBe('inconsistent_view');
        refused.push(u);
      }
    }
    expect(refused).toEqual([4, 5]); // caught by the clients it lied to
    expect(b6.length).toBe(3); // 1, 2, 3: b_6 is known, as in any honest round where 6 survived
    expect(s6.length).toBe(0); // s_6 is not: y_6 stays masked by its pairwise masks
    expect(masked.has(6)).toBe(true); // 6's masked input is in, and stays masked
  });

  it('a request that does not follow from the signed set, or carries signatures over another set, is refused', async () => {
    const { tag, server, clients, ids } = await upToMasked(5, 3);
    const sets = server.closeMaskedToConsistency();
    for (const u of ids) server.receiveSignature(u, clients[u - 1].receiveSurvivors(sets.get(u)));
    const req = server.closeConsistency().get(1)!;
    const c = clients[0];
    // Calling 5 dropped after 1 signed a set where it survived.
    expect(reason(() => c.receiveUnmask({ ...req, survivors: [2, 3, 4], dropped: [5] }))).toBe(
      'inconsistent_view',
    );
    // Signatures from another round, or by someone who is not a neighbour's attested identity.
    const other = clients.map((_, i) => ({
      index: i + 1,
      sig: signSurvivors(generateSigningKeyPair().secretKey, tag, [1, 2, 3, 4, 5]),
    }));
    expect(reason(() => c.receiveUnmask({ ...req, signatures: other }))).toBe('inconsistent_view');
    expect(reason(() => c.receiveUnmask({ ...req, signatures: req.signatures!.slice(0, 2) }))).toBe(
      'inconsistent_view',
    );
    expect(reason(() => c.receiveUnmask({ survivors: req.survivors, dropped: req.dropped }))).toBe(
      'inconsistent_view',
    );
    // The refusals changed nothing: the honest request is still answered.
    expect(reason(() => c.receiveUnmask(req))).toBe('accepted');
  });

  it('survivor sets a client will not sign: without itself, out of order, with fewer than t neighbours, twice', async () => {
    const { clients } = await upToMasked(5, 3);
    const c = clients[0];
    expect(reason(() => c.receiveSurvivors({ survivors: [2, 3, 4, 5] }))).toBe('inconsistent_view');
    expect(reason(() => c.receiveSurvivors({ survivors: [1, 3, 2] }))).toBe('malformed');
    expect(reason(() => c.receiveSurvivors({ survivors: [1, 2] }))).toBe('too_few_peers');
    expect(reason(() => c.receiveSurvivors({ survivors: [1, 2, 3, 4, 5] }))).toBe('accepted');
    expect(reason(() => c.receiveSurvivors({ survivors: [1, 2, 3, 4] }))).toBe('duplicate');
  });
});

describe('authenticated keys', () => {
  /** A roster for client 1 with peers 2..5, each with valid keys and (by default, its own) attestation. */
  function roster(
    tag: string,
    attestationOf: (index: number) => ClientAttestation = () => attested(),
  ): Roster {
    const peers = [2, 3, 4, 5].map((index) =>
      new SecAggClientSession({
        tag,
        index,
        n: 5,
        t: 3,
        vectorLength: L,
        consistency: true,
        attestation: attestationOf(index),
      }).advertise(),
    );
    return { peers: peers.map((k, i) => ({ index: i + 2, ...k })) };
  }
  const client = (tag: string) =>
    new SecAggClientSession({
      tag,
      index: 1,
      n: 5,
      t: 3,
      vectorLength: L,
      consistency: true,
      attestation: attested(),
    });

  it('an honest attested roster is accepted (also through the wire form)', () => {
    const r = roster('a');
    expect(reason(() => client('a').receiveRoster(unpackRoster(packRoster(r), 5)))).toBe('accepted');
  });

  it('a key without attestation, attested by another site, or signed for another index or round is refused', () => {
    const tag = 'b';
    const r = roster(tag);
    const with2 = (auth: unknown) => ({ peers: r.peers.map((p) => (p.index === 2 ? { ...p, auth } : p)) });
    expect(reason(() => client(tag).receiveRoster(with2(undefined)))).toBe('unattested');
    const rogue = generateSigningKeyPair(); // e.g. the server's own "site"
    const id = generateSigningKeyPair();
    const p2 = r.peers[0];
    const sig = (i: number, t: string) => signRoundKeys(id.secretKey, t, i, p2.cPk, p2.sPk, p2.gPk);
    const auth = (s: SigningKeyPair, i: number, t: string) => ({
      idPk: id.publicKey,
      attestation: attest(s.secretKey, id.publicKey),
      keysSig: sig(i, t),
    });
    expect(reason(() => client(tag).receiveRoster(with2(auth(site, 2, tag))))).toBe('accepted');
    expect(reason(() => client(tag).receiveRoster(with2(auth(rogue, 2, tag))))).toBe('unattested');
    expect(reason(() => client(tag).receiveRoster(with2(auth(site, 3, tag))))).toBe('unattested');
    expect(reason(() => client(tag).receiveRoster(with2(auth(site, 2, 'other'))))).toBe('unattested');
    // Keys swapped under a valid identity signature (the server in the middle of 2's key agreement).
    const swapped = { ...r.peers[0], cPk: r.peers[1].cPk };
    expect(reason(() => client(tag).receiveRoster({ peers: [swapped, ...r.peers.slice(1)] }))).toBe(
      'unattested',
    );
  });

  it('one attested identity at two indices (a Sybil), or our own identity, is refused', () => {
    const tag = 'c';
    const id = generateSigningKeyPair();
    const a = attest(site.secretKey, id.publicKey);
    const r = roster(tag, (index) =>
      index <= 3 ? { sitePublicKey: site.publicKey, identity: id, signature: a } : attested(),
    );
    expect(reason(() => client(tag).receiveRoster(r))).toBe('unattested');
    const me = new SecAggClientSession({
      tag,
      index: 1,
      n: 5,
      t: 3,
      vectorLength: L,
      consistency: true,
      attestation: { sitePublicKey: site.publicKey, identity: id, signature: a },
    });
    expect(reason(() => me.receiveRoster({ peers: r.peers.slice(1) }))).toBe('unattested');
  });

  it('the server refuses keys without a valid attestation, and a second use of one identity', () => {
    const tag = 'd';
    const server = new SecAggServerSession({
      tag,
      n: 5,
      neighbours: harary(5, 4).map((l) => l.map((v) => v + 1)),
      t: 3,
      vectorLength: L,
      minSurvivors: 3,
      consistency: { sitePublicKey: site.publicKey },
    });
    const mk = (index: number, a = attested()) =>
      new SecAggClientSession({ tag, index, n: 5, t: 3, vectorLength: L, consistency: true, attestation: a });
    const k1 = mk(1).advertise();
    expect(reason(() => server.receiveKeys(1, { ...k1, auth: undefined }))).toBe('unattested');
    expect(reason(() => server.receiveKeys(2, mk(2, attested(generateSigningKeyPair())).advertise()))).toBe(
      'unattested',
    );
    expect(reason(() => server.receiveKeys(3, mk(4).advertise()))).toBe('unattested'); // signed for index 4
    const shared = attested();
    expect(reason(() => server.receiveKeys(4, mk(4, shared).advertise()))).toBe('accepted');
    expect(reason(() => server.receiveKeys(5, mk(5, shared).advertise()))).toBe('unattested');
    expect(server.waitingFor()).toEqual([]); // the refused are not waited for
  });
});

describe('the floor a site key sets, and the default path', () => {
  it('a client given a site key refuses a round without R3; a round with R3 needs an attested identity', () => {
    const base = { tag: 'f', index: 1, n: 5, t: 3, vectorLength: L };
    expect(reason(() => new SecAggClientSession({ ...base, attestation: attested() }))).toBe('below_floor');
    expect(
      reason(() => new SecAggClientSession({ ...base, consistency: false, attestation: attested() })),
    ).toBe('below_floor');
    expect(reason(() => new SecAggClientSession({ ...base, consistency: true }))).toBe('unattested');
    const forged = { ...attested(), signature: new Uint8Array(64) };
    expect(() => new SecAggClientSession({ ...base, consistency: true, attestation: forged })).toThrow(
      RangeError,
    );
  });

  it('without R3 nothing new travels: keys, roster and unmask request have exactly the old fields', async () => {
    const r = await runInMemoryRound({ ...sim(5, 4, 3), consistency: undefined });
    expect(r.sum).toEqual(r.expected);
    for (const k of r.transcript.keys.values())
      expect(Object.keys(k as object).sort()).toEqual(['cPk', 'gPk', 'sPk']);
    const roster = packRoster({
      peers: [{ index: 2, cPk: new Uint8Array(32), sPk: new Uint8Array(32), gPk: new Uint8Array(32) }],
    });
    expect(Object.keys(roster)).toEqual(['peers']);
    expect(packUnmask({ survivors: [2], dropped: [3] })).toEqual({ survivors: [2], dropped: [3] });
  });
});
