import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../base/errors.ts';
import {
  BOX_BYTES,
  packInbox,
  packReveal,
  packRoster,
  packShares,
  packUnmask,
  unpackInbox,
  unpackReveal,
  unpackRoster,
  unpackShares,
  unpackUnmask,
} from './wire.ts';

const b = (n: number, v: number) => new Uint8Array(n).fill(v);

describe('secure-aggregation wire form', () => {
  it('round-trips every message as one blob per list', () => {
    const roster = {
      peers: [
        { index: 3, cPk: b(32, 1), sPk: b(32, 2), gPk: b(32, 10) },
        { index: 70000, cPk: b(32, 3), sPk: b(32, 4), gPk: b(32, 11) },
      ],
    };
    expect(unpackRoster(packRoster(roster), 10)).toEqual(roster);
    const shares = { commit: b(32, 9), shares: [{ to: 2, ct: b(BOX_BYTES, 5) }] };
    expect(unpackShares(packShares(shares), 10)).toEqual(shares);
    const inbox = {
      shares: [
        { from: 4, ct: b(BOX_BYTES, 6) },
        { from: 5, ct: b(BOX_BYTES, 7) },
      ],
    };
    expect(unpackInbox(packInbox(inbox), 10)).toEqual(inbox);
    const reveal = {
      b: [{ of: 1, share: b(33, 8), sig: b(64, 12) }],
      s: [{ of: 2, share: b(33, 13), sig: b(64, 14) }],
    };
    expect(unpackReveal(packReveal(reveal), 10)).toEqual(reveal);
  });

  it('records have fixed sizes: roster 100, box 234, revealed share 101 bytes', () => {
    const peer = { index: 1, cPk: b(32, 1), sPk: b(32, 2), gPk: b(32, 3) };
    expect(packRoster({ peers: [peer] }).peers.length).toBe(4 + 3 * 32);
    expect(BOX_BYTES).toBe(12 + 8 + 2 * 33 + 2 * 64 + 16);
    expect(packInbox({ shares: [{ from: 1, ct: b(BOX_BYTES, 1) }] }).shares.length).toBe(4 + BOX_BYTES);
    expect(packReveal({ b: [{ of: 1, share: b(33, 1), sig: b(64, 2) }], s: [] }).b.length).toBe(4 + 33 + 64);
    // A field of the wrong length would shift every later record: refused when packing.
    expect(() => packRoster({ peers: [{ ...peer, gPk: b(31, 3) }] })).toThrow(RangeError);
    expect(() => packReveal({ b: [{ of: 1, share: b(33, 1), sig: b(63, 2) }], s: [] })).toThrow(RangeError);
    expect(() => packReveal({ b: [{ of: 1, share: b(32, 1), sig: b(64, 2) }], s: [] })).toThrow(RangeError);
  });

  it('refuses ragged, oversized or non-binary lists as malformed', () => {
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof ProtocolError ? e.reason : 'other';
      }
      return 'accepted';
    };
    expect(bad(() => unpackRoster({ peers: new Uint8Array(99) }, 10))).toBe('malformed');
    expect(bad(() => unpackRoster({ peers: new Uint8Array(68) }, 10))).toBe('malformed'); // the old record size
    expect(bad(() => unpackRoster({ peers: new Uint8Array(100 * 11) }, 10))).toBe('malformed');
    expect(bad(() => unpackReveal({ b: new Uint8Array(37), s: new Uint8Array(0) }, 10))).toBe('malformed');
    expect(bad(() => unpackInbox({ shares: [1, 2] }, 10))).toBe('malformed');
    expect(bad(() => unpackReveal(null, 10))).toBe('malformed');
  });

  it('consistency round: roster attestations ride in a second blob of 164-byte records, signatures in 68', () => {
    const auth = (v: number) => ({ idPk: b(32, v), attestation: b(64, v + 1), keysSig: b(64, v + 2) });
    const roster = {
      peers: [
        { index: 3, cPk: b(32, 1), sPk: b(32, 2), gPk: b(32, 10), auth: auth(20) },
        { index: 9, cPk: b(32, 3), sPk: b(32, 4), gPk: b(32, 11), auth: auth(30) },
      ],
    };
    const wire = packRoster(roster);
    expect(wire.peers.length).toBe(2 * 100);
    expect(wire.auth!.length).toBe(2 * (4 + 32 + 64 + 64));
    expect(unpackRoster(wire, 10)).toEqual(roster);
    // Attestations of other peers, or in another order, than the keys they vouch for: refused.
    const swapped = packRoster({ peers: [roster.peers[1], roster.peers[0]] });
    expect(() => unpackRoster({ peers: wire.peers, auth: swapped.auth }, 10)).toThrow(ProtocolError);
    expect(() => unpackRoster({ peers: wire.peers, auth: wire.auth!.subarray(0, 164) }, 10)).toThrow(
      ProtocolError,
    );
    expect(() => packRoster({ peers: [roster.peers[0], { ...roster.peers[1], auth: undefined }] })).toThrow(
      RangeError,
    );
    const req = { survivors: [1, 2], dropped: [4], signatures: [{ index: 2, sig: b(64, 7) }] };
    const w = packUnmask(req);
    expect(w.signatures!.length).toBe(68);
    expect(unpackUnmask(w, 10)).toEqual(req);
    expect(() => unpackUnmask({ ...w, signatures: new Uint8Array(67) }, 10)).toThrow(ProtocolError);
  });
});
