import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../base/errors.ts';
import {
  BOX_BYTES,
  packInbox,
  packReveal,
  packRoster,
  packShares,
  unpackInbox,
  unpackReveal,
  unpackRoster,
  unpackShares,
} from './wire.ts';

const b = (n: number, v: number) => new Uint8Array(n).fill(v);

describe('secure-aggregation wire form', () => {
  it('round-trips every message as one blob per list', () => {
    const roster = {
      peers: [
        { index: 3, cPk: b(32, 1), sPk: b(32, 2) },
        { index: 70000, cPk: b(32, 3), sPk: b(32, 4) },
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
    const reveal = { b: [{ of: 1, share: b(33, 8) }], s: [] };
    expect(unpackReveal(packReveal(reveal), 10)).toEqual(reveal);
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
    expect(bad(() => unpackRoster({ peers: new Uint8Array(67) }, 10))).toBe('malformed');
    expect(bad(() => unpackRoster({ peers: new Uint8Array(68 * 11) }, 10))).toBe('malformed');
    expect(bad(() => unpackInbox({ shares: [1, 2] }, 10))).toBe('malformed');
    expect(bad(() => unpackReveal(null, 10))).toBe('malformed');
  });
});
