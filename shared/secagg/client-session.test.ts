import { randomBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../base/errors.ts';
import { SecAggClientSession, type ClientSessionConfig } from './client-session.ts';
import { generateSigningKeyPair, verifyShare } from './consistency.ts';
import { chooseDegree, harary, maliciousThreshold } from './graph.ts';
import { generateKeyPair, maskSeed } from './keys.ts';
import { addMasks, type MaskTerm } from './prg.ts';
import { addInto } from './ring.ts';
import { reconstruct, type Share } from './shamir.ts';
import { SecAggServerSession } from './server-session.ts';
import type { Inbox, Roster, UnmaskRequest } from './types.ts';
import { reason } from './test-support.ts';

const L = 16;

const config = (over: Partial<ClientSessionConfig>): ClientSessionConfig => ({
  tag: 'x',
  index: 1,
  n: 5,
  t: 3,
  vectorLength: L,
  ...over,
});

/**
 * A complete-graph round of n honest clients driven through the real server session up to the phase
 * asked for, keeping the server's messages so a test can send crafted variants instead.
 */
function roundUpTo(n: number, t: number, withK: boolean) {
  const tag = `test/${Math.random()}`;
  const neighbours = harary(n, n - 1).map((l) => l.map((v) => v + 1));
  const server = new SecAggServerSession({ tag, n, neighbours, t, vectorLength: L, minSurvivors: t });
  const clients = Array.from(
    { length: n },
    (_, i) =>
      new SecAggClientSession({ tag, index: i + 1, n, t, vectorLength: L, ...(withK ? { k: n - 1 } : {}) }),
  );
  const inputs = clients.map(() => Uint32Array.from(randomBytes(L), (b) => b * 1000));
  const ids = clients.map((_, i) => i + 1);
  const keys = (): Map<number, Roster> => {
    ids.forEach((u) => server.receiveKeys(u, clients[u - 1].advertise()));
    return server.closeKeys();
  };
  const shares = (rosters: Map<number, Roster>, skip: number[] = []): Map<number, Inbox> => {
    for (const u of ids)
      if (!skip.includes(u)) server.receiveShares(u, clients[u - 1].receiveRoster(rosters.get(u)));
    return server.closeShares();
  };
  const masked = async (inboxes: Map<number, Inbox>, skip: number[] = []) => {
    const y = new Map<number, Uint32Array>();
    for (const [u, inbox] of inboxes) {
      if (skip.includes(u)) continue;
      clients[u - 1].receiveInbox(inbox);
      y.set(u, await clients[u - 1].mask(inputs[u - 1]));
      server.receiveMasked(u, y.get(u)!);
    }
    return { y, requests: server.closeMasked() };
  };
  return { tag, server, clients, inputs, keys, shares, masked };
}

describe('client floors on the threshold and cohort', () => {
  it('refuses t < 2 and n < 3 whatever the floors say, and anything below its own floors', () => {
    expect(reason(() => new SecAggClientSession(config({ t: 1 })))).toBe('below_floor');
    expect(reason(() => new SecAggClientSession(config({ n: 2, t: 1 })))).toBe('below_floor');
    expect(
      reason(() => new SecAggClientSession(config({ floors: { minThreshold: 0, minCohort: 0 }, t: 1 }))),
    ).toBe('below_floor');
    const floors = { minThreshold: 4, minCohort: 8 };
    expect(reason(() => new SecAggClientSession(config({ n: 10, t: 3, floors })))).toBe('below_floor');
    expect(reason(() => new SecAggClientSession(config({ n: 7, t: 4, floors })))).toBe('below_floor');
    expect(reason(() => new SecAggClientSession(config({ n: 8, t: 4, floors })))).toBe('accepted');
    expect(reason(() => new SecAggClientSession(config({ t: 5 })))).toBe('malformed'); // 4 holders at most
  });

  it('with the plan degree: honest majority for the complete graph, no sparse graph for small cohorts, t > k/2', () => {
    expect(reason(() => new SecAggClientSession(config({ n: 10, t: 5, k: 9 })))).toBe('below_floor');
    expect(reason(() => new SecAggClientSession(config({ n: 10, t: 6, k: 9 })))).toBe('accepted');
    expect(reason(() => new SecAggClientSession(config({ n: 20, t: 5, k: 8 })))).toBe('below_floor');
    expect(reason(() => new SecAggClientSession(config({ n: 100, t: 17, k: 34 })))).toBe('below_floor');
    expect(reason(() => new SecAggClientSession(config({ n: 100, t: 18, k: 34 })))).toBe('accepted');
    expect(reason(() => new SecAggClientSession(config({ n: 10, t: 6, k: 10 })))).toBe('malformed');
    expect(reason(() => new SecAggClientSession(config({ n: 10, t: 6, k: 5 })))).toBe('malformed');
  });
});

describe('over-selection: n clients invited, the cohort sized apart', () => {
  it('the checks read the cohort size, not the invited count; n stays the index bound', () => {
    // Complete graph of 5 among 7 invited: accepted with cohort 5, refused as a sparse graph of 7 without it.
    expect(reason(() => new SecAggClientSession(config({ n: 7, cohort: 5, k: 4, t: 3, index: 7 })))).toBe(
      'accepted',
    );
    expect(reason(() => new SecAggClientSession(config({ n: 7, k: 4, t: 3 })))).toBe('below_floor');
    expect(reason(() => new SecAggClientSession(config({ n: 7, cohort: 5, k: 6, t: 4 })))).toBe('malformed');
    expect(reason(() => new SecAggClientSession(config({ n: 7, cohort: 8, k: 4, t: 3 })))).toBe('malformed');
    const floors = { minThreshold: 2, minCohort: 6 };
    expect(reason(() => new SecAggClientSession(config({ n: 7, cohort: 5, k: 4, t: 3, floors })))).toBe(
      'below_floor',
    );
  });

  it('R0 closes on the first `cohort` keys; the rest are released and refused, and the round sums exactly the cohort', async () => {
    const tag = `test/${Math.random()}`;
    const [n, size, t] = [7, 5, 3];
    const server = new SecAggServerSession({
      tag,
      n,
      neighbours: [],
      cohort: { size, graph: (m) => harary(m, size - 1) },
      t,
      vectorLength: L,
      minSurvivors: t,
    });
    const clients = Array.from(
      { length: n },
      (_, i) =>
        new SecAggClientSession({ tag, index: i + 1, n, cohort: size, k: size - 1, t, vectorLength: L }),
    );
    const inputs = clients.map(() => Uint32Array.from(randomBytes(L), (b) => b * 1000));
    const first = [2, 4, 5, 6, 7];
    for (const u of first.slice(0, 4)) server.receiveKeys(u, clients[u - 1].advertise());
    expect(server.waitingFor()).toEqual([1, 3, 7]);
    server.receiveKeys(7, clients[6].advertise());
    expect(server.waitingFor()).toEqual([]); // the cohort is full: R0 waits for no one
    expect(reason(() => server.receiveKeys(1, clients[0].advertise()))).toBe('not_selected');
    const rosters = server.closeKeys();
    expect(server.released).toEqual([1, 3]);
    expect(reason(() => server.receiveKeys(3, clients[2].advertise()))).toBe('not_selected');
    expect([...rosters.keys()]).toEqual(first);
    for (const [u, r] of rosters) expect(r.peers.map((p) => p.index)).toEqual(first.filter((v) => v !== u));
    for (const u of first) server.receiveShares(u, clients[u - 1].receiveRoster(rosters.get(u)));
    const inboxes = server.closeShares();
    for (const [u, inbox] of inboxes) {
      clients[u - 1].receiveInbox(inbox);
      server.receiveMasked(u, await clients[u - 1].mask(inputs[u - 1]));
    }
    for (const [u, req] of server.closeMasked()) server.receiveReveal(u, clients[u - 1].receiveUnmask(req));
    const expected = new Uint32Array(L);
    for (const u of first) addInto(expected, inputs[u - 1]);
    expect(await server.closeUnmask()).toEqual(expected);
  });

  it('a sparse graph is laid over the advertisers only, each with k neighbours', () => {
    const [n, size] = [70, 60];
    const { k, t } = chooseDegree(size);
    expect(k).toBeLessThan(size - 1);
    const server = new SecAggServerSession({
      tag: 'sparse',
      n,
      neighbours: [],
      cohort: { size, graph: (m) => harary(m, k) },
      t,
      vectorLength: L,
      minSurvivors: t,
    });
    const late = new Set([1, 9, 17, 33, 40, 41, 42, 55, 60, 70]);
    for (let u = 1; u <= n; u++)
      if (!late.has(u))
        server.receiveKeys(
          u,
          new SecAggClientSession({
            tag: 'sparse',
            index: u,
            n,
            cohort: size,
            k,
            t,
            vectorLength: L,
          }).advertise(),
        );
    const rosters = server.closeKeys();
    expect(rosters.size).toBe(size);
    expect(server.released).toEqual([...late].sort((a, b) => a - b));
    for (const r of rosters.values()) {
      expect(r.peers.length).toBe(k);
      for (const p of r.peers) expect(late.has(p.index)).toBe(false);
    }
  });
});

describe('crafted server messages the client refuses', () => {
  it('a roster with fewer than t peers (and the refusal leaves the session as it was)', () => {
    const r = roundUpTo(5, 3, true);
    const rosters = r.keys();
    const real = rosters.get(1)!;
    const c = r.clients[0];
    expect(reason(() => c.receiveRoster({ peers: real.peers.slice(0, 2) }))).toBe('too_few_peers');
    expect(reason(() => c.receiveRoster({ peers: [] }))).toBe('too_few_peers');
    const shares = c.receiveRoster(real);
    expect(shares.shares.map((s) => s.to)).toEqual([2, 3, 4, 5]);
  });

  it('a roster longer than the round degree, or with an unusable channel key', () => {
    const c = new SecAggClientSession(config({ n: 100, t: 18, k: 34 }));
    const peers = Array.from({ length: 35 }, (_, i) => ({
      index: i + 2,
      cPk: generateKeyPair().publicKey,
      sPk: generateKeyPair().publicKey,
      gPk: generateSigningKeyPair().publicKey,
    }));
    expect(reason(() => c.receiveRoster({ peers }))).toBe('malformed');
    const lowOrder = peers.slice(0, 34).map((p, i) => (i === 5 ? { ...p, cPk: new Uint8Array(32) } : p));
    expect(reason(() => c.receiveRoster({ peers: lowOrder }))).toBe('bad_key');
    // A low-order mask key (u = 1, an order-4 point) would make that pairwise mask known to the server.
    const one = new Uint8Array(32);
    one[0] = 1;
    const lowMask = peers.slice(0, 34).map((p, i) => (i === 7 ? { ...p, sPk: one } : p));
    expect(reason(() => c.receiveRoster({ peers: lowMask }))).toBe('bad_key');
    // A small-order signing key: no share signed under it would ever verify.
    const lowSign = peers.slice(0, 34).map((p, i) => (i === 9 ? { ...p, gPk: one } : p));
    expect(reason(() => c.receiveRoster({ peers: lowSign }))).toBe('bad_key');
    const noSign = peers
      .slice(0, 34)
      .map((p, i) => (i === 9 ? { index: p.index, cPk: p.cPk, sPk: p.sPk } : p));
    expect(reason(() => c.receiveRoster({ peers: noSign }))).toBe('malformed');
    expect(reason(() => c.receiveRoster({ peers: peers.slice(0, 34) }))).toBe('accepted');
  });

  it('an empty inbox, or fewer than t boxes that open, is refused; the real inbox still completes the round', async () => {
    const r = roundUpTo(5, 3, true);
    const inboxes = r.shares(r.keys());
    const real = inboxes.get(1)!;
    const c = r.clients[0];
    // The attack: an empty inbox would leave the input under its self-mask alone.
    expect(reason(() => c.receiveInbox({ shares: [] }))).toBe('too_few_shares');
    expect(reason(() => c.mask(r.inputs[0]))).toBe('wrong_phase');
    expect(reason(() => c.receiveInbox({ shares: real.shares.slice(0, 2) }))).toBe('too_few_shares');
    // Boxes that do not open (garbage, or another client's box) are not shares.
    const garbage = real.shares.map((e, i) => (i < 2 ? { ...e, ct: randomBytes(e.ct.length) } : e));
    expect(reason(() => c.receiveInbox({ shares: garbage }))).toBe('too_few_shares');
    const swapped = real.shares.map((e, i) => (i < 2 ? { ...e, ct: real.shares[3].ct } : e));
    expect(reason(() => c.receiveInbox({ shares: swapped }))).toBe('too_few_shares');
    expect(c.badBoxes.length).toBe(4);
    // Exactly t boxes that open is enough.
    const r2 = roundUpTo(5, 3, true);
    const in2 = r2.shares(r2.keys());
    expect(reason(() => r2.clients[0].receiveInbox({ shares: in2.get(1)!.shares.slice(0, 3) }))).toBe(
      'accepted',
    );
    // The refusals changed nothing: the real inbox is accepted and the round's sum is exact.
    const { requests } = await r.masked(inboxes);
    for (const [u, req] of requests) r.server.receiveReveal(u, r.clients[u - 1].receiveUnmask(req));
    const expected = new Uint32Array(L);
    r.inputs.forEach((x) => addInto(expected, x));
    expect(await r.server.closeUnmask()).toEqual(expected);
  });

  it("boxes whose shares lack their dealer's valid signature are set aside, and what is revealed carries it", async () => {
    const r = roundUpTo(5, 3, true);
    const rosters = r.keys();
    // The server relays another signing key for client 2 in client 1's roster: 2's box no longer verifies.
    const real = rosters.get(1)!;
    const forged = {
      peers: real.peers.map((p) => (p.index === 2 ? { ...p, gPk: generateSigningKeyPair().publicKey } : p)),
    };
    rosters.set(1, forged);
    const inboxes = r.shares(rosters);
    const c = r.clients[0];
    expect(c.receiveInbox(inboxes.get(1))).toEqual([2, 3, 4, 5]); // 2 still masks with us
    expect(c.badBoxes).toEqual([{ from: 2, reason: 'bad signature' }]);
    await c.mask(r.inputs[0]);
    const rv = c.receiveUnmask({ survivors: [2, 3, 4, 5], dropped: [] });
    expect(rv.b.map((e) => e.of)).toEqual([3, 4, 5]); // nothing held for 2
    // Each revealed share carries its dealer's signature, valid for this holder and this kind only.
    const gPk = (v: number): Uint8Array => real.peers.find((p) => p.index === v)!.gPk;
    for (const e of rv.b) {
      expect(verifyShare(gPk(e.of), r.tag, 'b', e.of, 1, e.share, e.sig)).toBe(true);
      expect(verifyShare(gPk(e.of), r.tag, 's', e.of, 1, e.share, e.sig)).toBe(false);
    }
  });

  it('an unmask request naming fewer than t surviving neighbours; itself does not count', async () => {
    const r = roundUpTo(6, 4, true);
    const { requests } = await r.masked(r.shares(r.keys()));
    const c = r.clients[0];
    expect(requests.get(1)).toEqual({ survivors: [2, 3, 4, 5, 6], dropped: [] });
    const ask = (m: UnmaskRequest): string => reason(() => c.receiveUnmask(m));
    expect(ask({ survivors: [2, 3, 4], dropped: [5, 6] })).toBe('too_few_peers');
    expect(ask({ survivors: [1, 2, 3, 4], dropped: [5, 6] })).toBe('too_few_peers');
    expect(ask({ survivors: [], dropped: [2, 3, 4, 5, 6] })).toBe('too_few_peers');
    expect(ask({ survivors: [2, 3, 4, 5], dropped: [6] })).toBe('accepted');
  });

  it('an honest round with dropouts at every step is never refused (each survivor keeps t surviving neighbours)', async () => {
    const r = roundUpTo(9, 5, true);
    const inboxes = r.shares(r.keys(), [9]);
    const { requests } = await r.masked(inboxes, [8]);
    for (const [u, req] of requests) {
      if (u === 7) continue;
      r.server.receiveReveal(u, r.clients[u - 1].receiveUnmask(req));
    }
    const expected = new Uint32Array(L);
    r.inputs.slice(0, 7).forEach((x) => addInto(expected, x));
    expect(await r.server.closeUnmask()).toEqual(expected);
  });
});

describe('what the client rules cannot stop: split unmask requests', () => {
  /** The server's view after the attack: y_1 and whatever shares of client 1 it gathered. */
  async function splitAttack(n: number, t: number, colluders: number[]) {
    const r = roundUpTo(n, t, false);
    const rosters = r.keys();
    const { y, requests } = await r.masked(r.shares(rosters));
    const victim = 1;
    const honest = [...requests.keys()].filter((u) => u !== victim && !colluders.includes(u));
    const b: Share[] = [];
    const s: Share[] = [];
    // Honest holders: half are told the victim survived, half that it dropped. Each request still names
    // enough surviving neighbours, so every client check passes.
    honest.forEach((u, i) => {
      const others = requests.get(u)!.survivors.filter((v) => v !== victim);
      const m =
        i % 2 === 0
          ? { survivors: [victim, ...others], dropped: [] }
          : { survivors: others, dropped: [victim] };
      let rv;
      try {
        rv = r.clients[u - 1].receiveUnmask(m);
      } catch (e) {
        if (e instanceof ProtocolError && e.reason === 'too_few_peers') return; // refused
        throw e;
      }
      for (const e of rv.b) if (e.of === victim) b.push({ x: u, y: e.share });
      for (const e of rv.s) if (e.of === victim) s.push({ x: u, y: e.share });
    });
    // Colluders run modified code and hand over both shares they hold.
    for (const u of colluders) {
      const held = (r.clients[u - 1] as unknown as { held: Map<number, { s: Share; b: Share }> }).held;
      b.push(held.get(victim)!.b);
      s.push(held.get(victim)!.s);
    }
    // Both secrets strip every mask from y_victim: the self-mask and each pairwise mask.
    const unmask = async (): Promise<Uint32Array> => {
      const x = y.get(victim)!.slice();
      const terms: MaskTerm[] = [{ seed: reconstruct(b, t), domain: 'self', sign: -1 }];
      const sk = reconstruct(s, t);
      for (const peer of rosters.get(victim)!.peers)
        terms.push({
          seed: maskSeed(sk, peer.sPk, r.tag, victim, peer.index),
          domain: 'pair',
          sign: victim > peer.index ? -1 : 1,
        });
      await addMasks(x, terms);
      return x;
    };
    return { b, s, unmask, input: r.inputs[victim - 1] };
  }

  it('with t = k/2 + 1, 2t - k = 2 colluders recover one honest input exactly; raising t per maliciousThreshold stops them', async () => {
    // n = 5, k = 4, t = 3 (the honest majority): honest holders 2 and 3, colluders 4 and 5.
    const hit = await splitAttack(5, 3, [4, 5]);
    expect(hit.b.length).toBe(3);
    expect(hit.s.length).toBe(3);
    expect(await hit.unmask()).toEqual(hit.input);
    // With 2 colluders among 5 the split bound asks for 2t - 4 > 2, i.e. t = 4; then each kind gets 3 < t shares.
    const safe = maliciousThreshold(5, 4, 0.4);
    expect(safe).toMatchObject({ t: 4, colluders: 2, needed: 4 });
    expect(safe.log2Bound).toBe(-Infinity);
    const miss = await splitAttack(5, safe.t, [4, 5]);
    expect(miss.b.length).toBe(3); // client 2 and the colluders
    expect(miss.s.length).toBe(2); // client 3 refuses: calling 1 dropped leaves it 3 < t surviving neighbours
    expect(Math.max(miss.b.length, miss.s.length)).toBeLessThan(safe.t);
  });
});
