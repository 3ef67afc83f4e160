/**
 * Attacks on the secure-aggregation layer, found by an adversarial review; each failed against the code
 * of that time and now pins the fix (or, where stated, the documented limit).
 * A malicious client is modelled as a real session whose code was changed (a prototype patch); a malicious
 * server is modelled by driving honest client sessions by hand with the messages it chooses.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ProtocolError } from '../base/errors.ts';
import { SecAggClientSession, type ClientSessionConfig } from './client-session.ts';
import {
  countSurvivorSignatures,
  generateSigningKeyPair,
  signShare,
  survivorsMessage,
  verifyRoundKeys,
  type SigningKeyPair,
} from './consistency.ts';
import { harary } from './graph.ts';
import { runInMemoryRound, type DropPoint, type InMemoryRoundInput } from './in-memory-round.ts';
import { channelKey, maskSeed, open, seal, type KeyPair } from './keys.ts';
import { addMask, addMasks, type MaskTerm } from './prg.ts';
import { SecAggServerSession } from './server-session.ts';
import { bigToBytes, bytesToBig, FIELD_PRIME, reconstruct, SHARE_BYTES } from './shamir.ts';
import type { AdvertiseKeys, Inbox, PeerKeys, Reveal, UnmaskRequest } from './types.ts';

const full = (n: number): number[][] => harary(n, n - 1).map((l) => l.map((v) => v + 1));
const inputs = (n: number, L: number): Uint32Array[] =>
  Array.from({ length: n }, () => Uint32Array.from(randomBytes(L), (b) => b * 4099)); // small, offset-encoded-like

afterEach(() => vi.restoreAllMocks());

/**
 * Turns client `d` into a malicious dealer: after it builds its honest share boxes, `edit` may replace the
 * share of s_d^SK and/or b_d inside the box for `to`, which is then sealed again under the same channel key
 * (the dealer holds that key, so the box opens fine at `to`). With `resign`, the dealer also signs what it
 * put in (it holds its own signing key); without, the old signatures stay.
 */
function maliciousDealer(
  d: number,
  edit: (to: number, s: Uint8Array, b: Uint8Array) => { s?: Uint8Array; b?: Uint8Array },
  resign: boolean,
): void {
  const orig = SecAggClientSession.prototype.receiveRoster;
  vi.spyOn(SecAggClientSession.prototype, 'receiveRoster').mockImplementation(function (
    this: SecAggClientSession,
    raw: unknown,
  ) {
    const out = orig.call(this, raw);
    const self = this as unknown as {
      cfg: ClientSessionConfig;
      c: KeyPair;
      g: SigningKeyPair;
      roster: Map<number, PeerKeys>;
    };
    if (self.cfg.index !== d) return out;
    const { tag } = self.cfg;
    const aad = utf8ToBytes(tag);
    const [S, B, SIG_S, SIG_B] = [8, 8 + SHARE_BYTES, 8 + 2 * SHARE_BYTES, 8 + 2 * SHARE_BYTES + 64];
    return {
      ...out,
      shares: out.shares.map(({ to, ct }) => {
        const key = channelKey(self.c.secretKey, self.roster.get(to)!.cPk, tag, d, to);
        const plain = open(key, ct, aad);
        const e = edit(to, plain.slice(S, B), plain.slice(B, SIG_S));
        if (e.s) plain.set(e.s, S);
        if (e.b) plain.set(e.b, B);
        if (resign) {
          plain.set(signShare(self.g.secretKey, tag, 's', d, to, plain.slice(S, B)), SIG_S);
          plain.set(signShare(self.g.secretKey, tag, 'b', d, to, plain.slice(B, SIG_S)), SIG_B);
        }
        return { to, ct: seal(key, plain, aad) };
      }),
    };
  });
}

const plusOne = (y: Uint8Array): Uint8Array => bigToBytes((bytesToBig(y) + 1n) % FIELD_PRIME, SHARE_BYTES);

describe('culprit naming with dealer-signed shares: honest clients are never named', () => {
  const round = (n: number, t: number, extra: Partial<InMemoryRoundInput> = {}) =>
    runInMemoryRound({
      tag: `attack/${Math.random()}`,
      neighbours: full(n),
      t,
      minSurvivors: t,
      inputs: inputs(n, 16),
      ...extra,
    });

  it('a dealer that puts a non-field share (33 x 0xff), signed, in one box: the holder sets the box aside, nobody is named', async () => {
    // Full graph n = 7, t = 4. Client 1 is malicious; client 2 is honest. Had 2 revealed the share, the
    // server would have refused 2's whole reveal (malformed_share) and named 2.
    maliciousDealer(1, (to) => (to === 2 ? { b: new Uint8Array(SHARE_BYTES).fill(0xff) } : {}), true);
    const r = await round(7, 4);
    expect(r.sum).toEqual(r.expected);
    expect(r.clients[1].badBoxes).toEqual([{ from: 1, reason: 'share outside the field' }]);
    expect(r.rejected).toEqual([]);
    expect(r.server.culprits).toEqual([]);
  });

  it('a dealer that puts a wrong share in one box without signing it: the holder sets the box aside, nobody is named', async () => {
    maliciousDealer(1, (to, _s, b) => (to === 2 ? { b: plusOne(b) } : {}), false);
    const r = await round(7, 4);
    expect(r.sum).toEqual(r.expected);
    expect(r.clients[1].badBoxes).toEqual([{ from: 1, reason: 'bad signature' }]);
    expect(r.server.culprits).toEqual([]);
  });

  it('a dealer that SIGNS a wrong share for one holder: the holder is not named, the dealer is (inconsistent_dealer), the sum is exact', async () => {
    // Before signed shares the server could not tell this from holder 2 lying, and named 2. Now 2 reveals
    // 1's signature with the share: 6 signed shares of b_1, one off the polynomial the other 5 agree on,
    // is proof against the dealer, and decoding (t = 4, m = 6: one error corrected) still rebuilds b_1.
    maliciousDealer(1, (to, _s, b) => (to === 2 ? { b: plusOne(b) } : {}), true);
    const r = await round(7, 4);
    expect(r.clients[1].badBoxes).toEqual([]);
    expect(r.sum).toEqual(r.expected);
    expect(r.server.culpritEvidence).toEqual([{ index: 1, kind: 'inconsistent_dealer' }]);
  });

  it('a surviving dealer whose signed shares cannot be rebuilt consistently: the attempt aborts cleanly, the dealer (only) named', async () => {
    // Two of six holders get wrong signed shares of b_1: beyond what t = 4 lets decoding correct.
    maliciousDealer(1, (to, _s, b) => (to === 2 || to === 3 ? { b: plusOne(b) } : {}), true);
    let server: SecAggServerSession | undefined;
    await expect(round(7, 4, { onServer: (s) => (server = s) })).rejects.toThrow(
      /self-mask seed of client 1 does not match its commitment .*\(inconsistent dealer\)/,
    );
    expect(server!.phase).toBe('failed');
    expect(server!.culpritEvidence).toEqual([{ index: 1, kind: 'inconsistent_dealer' }]);
  });

  it('a dropped dealer whose signed key shares are inconsistent: the same, for its mask key', async () => {
    maliciousDealer(1, (to, s) => (to === 2 || to === 3 ? { s: plusOne(s) } : {}), true);
    let server: SecAggServerSession | undefined;
    const drops = new Map<number, DropPoint>([[1, 'after-shares']]);
    await expect(round(7, 4, { drops, onServer: (s) => (server = s) })).rejects.toThrow(
      /mask key of dropped client 1 does not match its public key .*\(inconsistent dealer\)/,
    );
    expect(server!.culpritEvidence).toEqual([{ index: 1, kind: 'inconsistent_dealer' }]);
  });

  it('a dealer whose signed shares agree but do not match its commitment: abort, the dealer named', async () => {
    const r = () =>
      round(7, 4, {
        tamper: { shares: (u, m) => (u === 1 ? { ...m, commit: randomBytes(32) } : m) },
        onServer: (s) => (server = s),
      });
    let server: SecAggServerSession | undefined;
    await expect(r()).rejects.toThrow(
      /client 1 does not match its commitment .* the 6 shares client 1 signed do not rebuild it/,
    );
    expect(server!.culpritEvidence).toEqual([{ index: 1, kind: 'inconsistent_dealer' }]);
  });

  it("t - 1 colluding holders shift their shares by g with g(0) = 0: the shifted shares lack the dealer's signature, so the colluders are named, not honest holders", async () => {
    // Full graph n = 10 (k = 9), t = 5: the self-mask seed of client 10 has m = 9 holders 1..9. Colluders
    // 1..4 (t - 1, the most the threshold is meant to tolerate) add g(x) = x (x - 6)(x - 7)(x - 8) to their
    // true shares. Without signatures, f' = f + g agrees with 1..4 and honest 6, 7, 8 (7 of 9 points, within
    // Gao's bound) and has the right secret, so decoding alone puts honest 5 and 9 "off" it
    // (shamir.test.ts pins that). The colluders cannot sign f' for client 10.
    const n = 10;
    const target = 10;
    const colluders = [1, 2, 3, 4];
    const g = (x: number): bigint => {
      const X = BigInt(x);
      return (((X * (X - 6n) * (X - 7n) * (X - 8n)) % FIELD_PRIME) + FIELD_PRIME) % FIELD_PRIME;
    };
    const shift = (holder: number, m: Reveal): Reveal => ({
      b: m.b.map((e) =>
        e.of === target
          ? { ...e, share: bigToBytes((bytesToBig(e.share) + g(holder)) % FIELD_PRIME, SHARE_BYTES) }
          : e,
      ),
      s: m.s,
    });
    const r = await round(n, 5, { tamper: { reveal: (u, m) => (colluders.includes(u) ? shift(u, m) : m) } });
    expect(r.sum).toEqual(r.expected);
    expect(r.server.culpritEvidence).toEqual(colluders.map((index) => ({ index, kind: 'altered_share' })));
  });

  it("a signature is bound to its holder: a colluder revealing its partner's share and signature is named", async () => {
    // Holder 2 reveals, for every secret, the share (on the polynomial, at x = 1) that 1 holds, with
    // the dealer's signature on it for holder 1.
    const seen = new Map<number, Reveal>();
    const r = await round(7, 4, {
      tamper: {
        reveal: (u, m) => {
          seen.set(u, m);
          if (u !== 2) return m;
          const of1 = new Map(seen.get(1)!.b.map((e) => [e.of, e]));
          return { b: m.b.map((e) => (of1.has(e.of) ? { ...of1.get(e.of)!, of: e.of } : e)), s: m.s };
        },
      },
    });
    expect(r.sum).toEqual(r.expected);
    expect(r.server.culpritEvidence).toEqual([{ index: 2, kind: 'altered_share' }]);
  });

  it('the happy path checks no signature: an honest round whose revealed signatures are all garbled completes, nobody named', async () => {
    // Signatures are checked only for a secret whose first t shares fail; garbling them all changes nothing
    // here, which shows the server did not verify them.
    const garble = (l: Reveal['b']): Reveal['b'] => l.map((e) => ({ ...e, sig: new Uint8Array(64) }));
    const r = await round(7, 4, {
      drops: new Map<number, DropPoint>([[7, 'after-shares']]),
      tamper: { reveal: (_u, m) => ({ b: garble(m.b), s: garble(m.s) }) },
    });
    expect(r.sum).toEqual(r.expected);
    expect(r.server.culprits).toEqual([]);
  });
});

/** What a malicious server needs from an honest round up to R2, with hooks for the messages it sends. */
async function toMasked(n: number, t: number, L: number, inboxFor: (u: number, m: Inbox) => Inbox) {
  const tag = `attack/${Math.random()}`;
  const server = new SecAggServerSession({
    tag,
    n,
    neighbours: full(n),
    t,
    vectorLength: L,
    minSurvivors: t,
  });
  const clients = Array.from(
    { length: n },
    (_, i) => new SecAggClientSession({ tag, index: i + 1, n, t, vectorLength: L }),
  );
  const keys = new Map<number, AdvertiseKeys>();
  clients.forEach((c, i) => {
    const k = c.advertise();
    keys.set(i + 1, k);
    server.receiveKeys(i + 1, k);
  });
  const rosters = server.closeKeys();
  clients.forEach((c, i) => server.receiveShares(i + 1, c.receiveRoster(rosters.get(i + 1))));
  const inboxes = server.closeShares();
  const xs = inputs(n, L);
  const ys = new Map<number, Uint32Array>();
  for (const [i, c] of clients.entries()) {
    c.receiveInbox(inboxFor(i + 1, inboxes.get(i + 1)!));
    ys.set(i + 1, await c.mask(xs[i]));
  }
  return { tag, clients, keys, xs, ys };
}

/** Runs `attack`; false when an honest client refused a step (ProtocolError), else what it returned. */
async function attempt(attack: () => Promise<boolean>): Promise<boolean> {
  try {
    return await attack();
  } catch (e) {
    if (e instanceof ProtocolError) return false;
    throw e;
  }
}

const sharesOf = (reveals: Map<number, Reveal>, of: number, kind: 'b' | 's') =>
  [...reveals].flatMap(([holder, rv]) =>
    rv[kind].filter((e) => e.of === of).map((e) => ({ x: holder, y: e.share })),
  );

describe('what a client accepts from a malicious server', () => {
  it('an EMPTY inbox: the client masks with no pairwise masks, and its b-shares alone unmask its input', async () => {
    // n = 5 full graph, t = 3. The server gives client 5 an inbox with no boxes (Bonawitz R2: abort if
    // |U2| < t); 5 masks with PRG(b_5) only. The server then asks 5's neighbours, consistently, for b-shares
    // of 5 (it did send a masked input), reconstructs b_5 and reads x_5. No split view, nothing for R3 to see.
    const leaked = await attempt(async () => {
      const n = 5;
      const { clients, xs, ys } = await toMasked(n, 3, 32, (u, m) => (u === 5 ? { shares: [] } : m));
      const reveals = new Map<number, Reveal>();
      for (const w of [1, 2, 3, 4]) {
        const req: UnmaskRequest = { survivors: [1, 2, 3, 4, 5].filter((v) => v !== w), dropped: [] };
        reveals.set(w, clients[w - 1].receiveUnmask(req));
      }
      const b5 = reconstruct(sharesOf(reveals, 5, 'b'), 3);
      const x5 = ys.get(5)!.slice();
      await addMask(x5, b5, 'self', -1);
      return x5.every((v, i) => v === xs[4][i]);
    });
    expect(leaked).toBe(false);
  });

  it('a server-chosen threshold with 2t <= |neighbours|: two disjoint honest groups, each with a consistent view, give b_v and s_v', async () => {
    // The threshold comes from the server (SecAggRoundInfo.t) and the client only checks roster >= t.
    // n = 5 full graph, t = 2: holders 1, 2 are told "5 survived" (b-shares), holders 3, 4 "5 dropped"
    // (s-shares). No holder is asked for both, so every client-side check passes; x_5 is recovered.
    const leaked = await attempt(async () => {
      const n = 5;
      const t = 2;
      const { tag, clients, keys, xs, ys } = await toMasked(n, t, 32, (_u, m) => m);
      const reveals = new Map<number, Reveal>();
      for (const w of [1, 2, 3, 4]) {
        const others = [1, 2, 3, 4, 5].filter((v) => v !== w);
        const req: UnmaskRequest =
          w <= 2
            ? { survivors: others, dropped: [] }
            : { survivors: others.filter((v) => v !== 5), dropped: [5] };
        reveals.set(w, clients[w - 1].receiveUnmask(req));
      }
      const b5 = reconstruct(sharesOf(reveals, 5, 'b'), t);
      const sk5 = reconstruct(sharesOf(reveals, 5, 's'), t);
      const x5 = ys.get(5)!.slice();
      const terms: MaskTerm[] = [{ seed: b5, domain: 'self', sign: -1 }];
      for (const w of [1, 2, 3, 4])
        terms.push({ seed: maskSeed(sk5, keys.get(w)!.sPk, tag, 5, w), domain: 'pair', sign: -1 });
      await addMasks(x5, terms);
      return x5.every((v, i) => v === xs[4][i]);
    });
    expect(leaked).toBe(false);
  });

  it('a roster with a small-order cPk is refused with a ProtocolError (the client trusts the server to have checked)', () => {
    const c = new SecAggClientSession({ tag: 'x', index: 1, n: 4, t: 2, vectorLength: 4 });
    const good = (): Uint8Array =>
      new SecAggClientSession({ tag: 'x', index: 2, n: 4, t: 2, vectorLength: 4 }).advertise().cPk;
    const gPk = (): Uint8Array => generateSigningKeyPair().publicKey;
    const peers = [2, 3, 4].map((index) => ({ index, cPk: good(), sPk: good(), gPk: gPk() }));
    peers[0].cPk = new Uint8Array(32); // u = 0, order 2
    expect(() => c.receiveRoster({ peers })).toThrow(ProtocolError);
    expect(() => c.receiveRoster({ peers })).toThrow(/roster key of client 2 is unusable \(low_order\)/);
  });
});

describe('consistency.ts encodings and signatures', () => {
  it('a small-order identity key admits a universal signature (R = identity, S = 0) under the default zip215 verify', () => {
    // A visitor that gets a small-order identity key attested lets ANYONE (e.g. the server) sign any round
    // keys and any survivor set in its name.
    const smallOrder = new Uint8Array(32);
    smallOrder[0] = 1; // the identity point
    const forged = new Uint8Array(64);
    forged[0] = 1; // R = identity, S = 0
    const anyKey = randomBytes(32);
    expect(verifyRoundKeys(smallOrder, 'r', 3, anyKey, anyKey, anyKey, forged)).toBe(false);
    const keys = new Map([[3, smallOrder]]);
    const counted = countSurvivorSignatures('r', [1, 3, 7], [{ index: 3, sig: forged }], keys);
    expect(counted.valid).toEqual([]);
    // Sanity: the same check with RFC 8032 strict decoding refuses it.
    expect(ed25519.verify(forged, survivorsMessage('r', [1, 3, 7]), smallOrder, { zip215: false })).toBe(
      false,
    );
  });

  it('"one set has one encoding": indices that are not uint32 integers are refused, not silently wrapped', () => {
    // DataView.setUint32 truncates and wraps: [1, 2^32 + 2] encodes as [1, 2], [0.5] as [0], [-1] as [2^32 - 1].
    expect(() => survivorsMessage('t', [1, 2 ** 32 + 2])).toThrow(RangeError);
    expect(() => survivorsMessage('t', [0.5])).toThrow(RangeError);
    expect(() => survivorsMessage('t', [-1])).toThrow(RangeError);
    expect(() => survivorsMessage('t', [Number.NaN])).toThrow(RangeError);
  });

  it('(control) a real key signs and verifies, so the tests above do not fail for a trivial reason', () => {
    const id = generateSigningKeyPair();
    const sig = ed25519.sign(survivorsMessage('r', [1, 3]), id.secretKey);
    const keys = new Map([[1, id.publicKey]]);
    expect(countSurvivorSignatures('r', [1, 3], [{ index: 1, sig }], keys).valid).toEqual([1]);
  });
});
