import { randomBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { bigToBytes, bytesToBig, FIELD_PRIME, invMod, reconstruct, SHARE_BYTES, split } from './shamir.ts';

function modpow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  for (; e > 0n; e >>= 1n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
  }
  return r;
}

/** Deterministic "randomness" for known answers: every call returns bytes 0x00, 0x11, 0x22, ... */
const fixedRand = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 17) & 0xff);

describe('field', () => {
  it('p = 2^256 + 297 passes Miller-Rabin for the first 16 prime bases, and every 32-byte secret fits', () => {
    const p = FIELD_PRIME;
    let d = p - 1n;
    let s = 0;
    while (!(d & 1n)) ((d >>= 1n), s++);
    for (const a of [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n, 41n, 43n, 47n, 53n]) {
      let x = modpow(a, d, p);
      let ok = x === 1n || x === p - 1n;
      for (let i = 1; i < s && !ok; i++) ok = (x = (x * x) % p) === p - 1n;
      expect(ok).toBe(true);
    }
    expect(2n ** 256n - 1n < p).toBe(true);
    // The odd numbers between 2^256 and p are composite (p is the next prime): spot-check a witness.
    expect(modpow(2n, 2n ** 256n + 295n - 1n, 2n ** 256n + 295n)).not.toBe(1n);
  });
  it('invMod inverts', () => {
    for (const a of [1n, 2n, 12345678901234567890n, FIELD_PRIME - 1n])
      expect((a * invMod(a)) % FIELD_PRIME).toBe(1n);
    expect(() => invMod(0n)).toThrow();
  });
  it('bytes <-> bigint round-trip', () => {
    const b = randomBytes(33);
    expect(bigToBytes(bytesToBig(b), 33)).toEqual(b);
    expect(() => bigToBytes(2n ** 256n, 32)).toThrow();
  });
});

describe('Shamir', () => {
  it('known answer: t = 2, shares are s + a1 * x mod p with a1 from the (fixed) randomness', () => {
    const secret = Uint8Array.from({ length: 32 }, (_, i) => i);
    const shares = split(secret, 2, [1, 2, 5], fixedRand);
    const a1 = bytesToBig(fixedRand(33)); // < p, so accepted on the first draw
    const s = bytesToBig(secret);
    for (const sh of shares) expect(bytesToBig(sh.y)).toBe((s + a1 * BigInt(sh.x)) % FIELD_PRIME);
    // Expected values computed independently (Python big integers).
    const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    expect(shares.map((sh) => hex(sh.y))).toEqual([
      '0011233547596b7d8fa1b3c5d7e9fc0d1f31435567798b9dafc1d3e5f80a1b2d3f',
      '002245688baed1f5183b5e81a4c7eb0c2f527598bbdf0225486b8eb1d4f8193c5f',
      '0055ac0258af055bb2085eb50b61b8095fb60c62b90f65bc1268bf156bc21369bf',
    ]);
  });

  it('any t of k shares reconstruct the secret (every subset, several t)', () => {
    const secret = randomBytes(32);
    const xs = [3, 7, 8, 11, 20, 31];
    for (const t of [1, 2, 3, 6]) {
      const shares = split(secret, t, xs);
      expect(shares.every((s) => s.y.length === SHARE_BYTES)).toBe(true);
      for (let mask = 0; mask < 1 << xs.length; mask++) {
        const sub = shares.filter((_, i) => mask & (1 << i));
        if (sub.length < t) continue;
        expect(reconstruct(sub, t)).toEqual(secret);
      }
    }
  });

  it('reconstructs the all-ones secret (largest 32-byte value) and the zero secret', () => {
    for (const secret of [new Uint8Array(32).fill(0xff), new Uint8Array(32)]) {
      const shares = split(secret, 3, [1, 2, 3, 4]);
      expect(reconstruct([shares[3], shares[0], shares[2]], 3)).toEqual(secret);
    }
  });

  it('t - 1 shares fit every secret equally: with the same randomness, two secrets give the same t-1 shares shifted by a constant', () => {
    // For t = 2 a single share is s + a1 x; with a1 uniform it is uniform whatever s is. We check the
    // structure: changing s by D changes every share by exactly D (so one share carries no information).
    const s1 = randomBytes(32);
    const s2 = randomBytes(32);
    const a = split(s1, 2, [4, 9], fixedRand)[0];
    const b = split(s2, 2, [4, 9], fixedRand)[0];
    const D = (bytesToBig(s2) - bytesToBig(s1) + FIELD_PRIME) % FIELD_PRIME;
    expect((bytesToBig(b.y) - bytesToBig(a.y) + FIELD_PRIME) % FIELD_PRIME).toBe(D);
  });

  it('refuses bad input: short secret, threshold out of range, duplicate or zero x, too few shares', () => {
    expect(() => split(new Uint8Array(31), 2, [1, 2])).toThrow(/32 bytes/);
    expect(() => split(new Uint8Array(32), 3, [1, 2])).toThrow(/threshold/);
    expect(() => split(new Uint8Array(32), 1, [0, 2])).toThrow(/x must be/);
    expect(() => split(new Uint8Array(32), 1, [2, 2])).toThrow(/duplicate/);
    const sh = split(new Uint8Array(32), 3, [1, 2, 3]);
    expect(() => reconstruct(sh.slice(0, 2), 3)).toThrow(/need 3/);
    expect(() => reconstruct([sh[0], sh[0], sh[1]], 3)).toThrow(/duplicate/);
  });

  it('a tampered share changes the result (callers verify against a commitment)', () => {
    const secret = randomBytes(32);
    const sh = split(secret, 2, [1, 2]);
    sh[1].y[32] ^= 1;
    let out: Uint8Array | Error;
    try {
      out = reconstruct(sh, 2);
    } catch (e) {
      out = e as Error;
    }
    expect(out).not.toEqual(secret);
  });
});
