import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { generateSigningKeyPair, signShare, verifyShare } from './consistency.ts';
import { recoverSecret, type SignedShare } from './recover.ts';
import { bigToBytes, bytesToBig, FIELD_PRIME, SHARE_BYTES, split } from './shamir.ts';

const TAG = 'aegisfl/recover-test/1.1';
const DEALER = 7;

/** Reproducible choices: SHA-256 in counter mode over a fixed label. */
function seeded(label: string) {
  let ctr = 0;
  const next = (): Uint8Array => sha256(utf8ToBytes(`${label}/${ctr++}`));
  const int = (lo: number, hi: number): number => lo + Number(bytesToBig(next()) % BigInt(hi - lo + 1));
  return { int, bytes: next };
}

const wrong = (y: Uint8Array): Uint8Array =>
  bigToBytes((bytesToBig(y) + 1n + bytesToBig(randomBytes(16))) % FIELD_PRIME, SHARE_BYTES);

/** An honest dealer's signed b-shares for holders `xs`, a check against its commitment, and a signature check that counts its calls. */
function deal(secret: Uint8Array, t: number, xs: number[]) {
  const key = generateSigningKeyPair();
  const shares: SignedShare[] = split(secret, t, xs).map((s) => ({
    ...s,
    sig: signShare(key.secretKey, TAG, 'b', DEALER, s.x, s.y),
  }));
  const commit = sha256(secret);
  const verify = (s: Uint8Array): boolean => sha256(s).every((b, i) => b === commit[i]);
  let checks = 0;
  const signed = (s: SignedShare): boolean => {
    checks++;
    return verifyShare(key.publicKey, TAG, 'b', DEALER, s.x, s.y, s.sig);
  };
  /** What a dishonest dealer does: sign another value for holder x. */
  const dealerSigns = (x: number, y: Uint8Array): SignedShare => ({
    x,
    y,
    sig: signShare(key.secretKey, TAG, 'b', DEALER, x, y),
  });
  return { shares, verify, signed, checks: () => checks, dealerSigns };
}

describe('recoverSecret: dealer-signed shares decide who is at fault', () => {
  it('honest shares: the first t give the secret and no signature is checked', () => {
    const secret = randomBytes(32);
    const d = deal(secret, 4, [1, 2, 3, 4, 5, 6]);
    expect(recoverSecret(d.shares, 4, d.verify, d.signed)).toEqual({
      secret,
      fast: true,
      altered: [],
      signed: 0,
      dealerAtFault: false,
    });
    expect(d.checks()).toBe(0);
  });

  it('a holder that alters its share: every signature is checked, the holder named, the secret rebuilt', () => {
    const secret = randomBytes(32);
    const d = deal(secret, 4, [1, 2, 3, 4, 5, 6]);
    const shares = d.shares.map((s) => (s.x === 2 ? { ...s, y: wrong(s.y) } : s));
    expect(recoverSecret(shares, 4, d.verify, d.signed)).toEqual({
      secret,
      fast: false,
      altered: [2],
      signed: 5,
      dealerAtFault: false,
    });
    expect(d.checks()).toBe(6);
  });

  it('a dealer that signed a share off its polynomial: the dealer is at fault, no holder is named', () => {
    const secret = randomBytes(32);
    const d = deal(secret, 4, [1, 2, 3, 4, 5, 6]);
    const shares = d.shares.map((s) => (s.x === 2 ? d.dealerSigns(2, wrong(s.y)) : s));
    expect(recoverSecret(shares, 4, d.verify, d.signed)).toEqual({
      secret,
      fast: false,
      altered: [],
      signed: 6,
      dealerAtFault: true,
    });
  });

  it('fewer than t signed shares: no secret, only the alterers named (nothing is known of the dealer)', () => {
    const secret = randomBytes(32);
    const d = deal(secret, 4, [1, 2, 3, 4, 5]);
    const shares = d.shares.map((s) => (s.x <= 2 ? { ...s, y: wrong(s.y) } : s));
    expect(recoverSecret(shares, 4, d.verify, d.signed)).toEqual({
      secret: null,
      fast: false,
      altered: [1, 2],
      signed: 3,
      dealerAtFault: false,
    });
  });

  it('a signature check that throws counts as an invalid signature', () => {
    const secret = randomBytes(32);
    const d = deal(secret, 2, [1, 2, 3]);
    const shares = d.shares.map((s) => (s.x === 1 ? { ...s, y: wrong(s.y) } : s));
    const r = recoverSecret(shares, 2, d.verify, (s) => {
      if (s.x === 1) throw new Error('boom');
      return d.signed(s);
    });
    expect(r).toMatchObject({ secret, altered: [1], dealerAtFault: false });
  });

  it('property: altering holders and dealer inconsistency, in any mix, are told apart; honest parties never named', () => {
    const r = seeded('recover-mix');
    for (let trial = 0; trial < 50; trial++) {
      const m = r.int(3, 12);
      const t = r.int(Math.floor(m / 2) + 1, m); // t > m / 2, as clients require
      const xs = Array.from({ length: m }, (_, i) => 2 * i + 1 + r.int(0, 1));
      const secret = r.bytes();
      const d = deal(secret, t, xs);
      const honestDealer = r.int(0, 1) === 0;
      const role = xs.map(() => r.int(0, 5)); // 0: alters its share; 1: dealt a bad one (if the dealer cheats)
      const altered = xs.filter((_, i) => role[i] === 0);
      const offByDealer = honestDealer ? [] : xs.filter((_, i) => role[i] === 1);
      const shares = d.shares.map((s) =>
        altered.includes(s.x)
          ? { ...s, y: wrong(s.y) }
          : offByDealer.includes(s.x)
            ? d.dealerSigns(s.x, wrong(s.y))
            : s,
      );
      const got = recoverSecret(shares, t, d.verify, d.signed);
      const what = `m=${m} t=${t} altered=${altered} off=${offByDealer}`;
      const firstTClean = xs.slice(0, t).every((x) => !altered.includes(x) && !offByDealer.includes(x));
      if (firstTClean) {
        expect(got, what).toMatchObject({ secret, fast: true, altered: [], dealerAtFault: false });
        continue;
      }
      const signed = m - altered.length;
      expect(got.altered, what).toEqual(altered);
      expect(got.signed, what).toBe(signed);
      if (signed < t) {
        expect(got, what).toMatchObject({ secret: null, dealerAtFault: false });
        continue;
      }
      expect(got.dealerAtFault, what).toBe(offByDealer.length > 0);
      const correctable = offByDealer.length <= Math.floor((signed - t) / 2);
      expect(got.secret, what).toEqual(correctable ? secret : null);
    }
  });
});
