import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import {
  bigToBytes,
  bytesToBig,
  decodeChecked,
  FIELD_PRIME,
  invMod,
  lagrangeAtZero,
  prepareLagrange,
  reconstruct,
  reconstructChecked,
  SHARE_BYTES,
  split,
  type LagrangeCache,
  type Share,
} from './shamir.ts';

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

describe('Lagrange weights at 0', () => {
  it('known answer: points 1, 2, 3 give 3, -3, 1', () => {
    expect(lagrangeAtZero([1, 2, 3])).toEqual([3n, FIELD_PRIME - 3n, 1n]);
  });
  it('agree with the direct formula (one inversion each), and sum to 1', () => {
    const xs = [4, 9, 17, 2, 33, 100, 7];
    const w = lagrangeAtZero(xs);
    xs.forEach((xi, i) => {
      let n = 1n;
      let d = 1n;
      for (const xj of xs)
        if (xj !== xi) {
          n = (n * BigInt(xj)) % FIELD_PRIME;
          d = (d * ((BigInt(xj - xi) + FIELD_PRIME) % FIELD_PRIME)) % FIELD_PRIME;
        }
      expect(w[i]).toBe((n * invMod(d)) % FIELD_PRIME);
    });
    expect(w.reduce((a, b) => a + b, 0n) % FIELD_PRIME).toBe(1n);
  });
});

describe('reconstructChecked (first t shares) and decodeChecked (all shares, Gao)', () => {
  /** Reproducible choices: SHA-256 in counter mode over a fixed label. */
  function seeded(label: string) {
    let ctr = 0;
    const next = (): Uint8Array => sha256(utf8ToBytes(`${label}/${ctr++}`));
    const int = (lo: number, hi: number): number => lo + Number(bytesToBig(next()) % BigInt(hi - lo + 1));
    return { int, bytes: next };
  }
  const commitTo = (s: Uint8Array): Uint8Array => sha256(s);
  const verifier = (secret: Uint8Array) => {
    const c = commitTo(secret);
    return (s: Uint8Array): boolean => commitTo(s).every((b, i) => b === c[i]);
  };
  /** Another field element than `y`, still a valid 33-byte share value. */
  const wrong = (y: Uint8Array): Uint8Array =>
    bigToBytes((bytesToBig(y) + 1n + bytesToBig(randomBytes(16))) % FIELD_PRIME, SHARE_BYTES);
  const outOfField = (): Uint8Array => new Uint8Array(SHARE_BYTES).fill(0xff);

  it('honest shares: the first t give the secret; all of them decode consistently', () => {
    const secret = randomBytes(32);
    const shares = split(secret, 3, [1, 2, 3, 4, 5]);
    expect(reconstructChecked(shares, 3, verifier(secret))).toEqual(secret);
    expect(decodeChecked(shares, 3, verifier(secret))).toEqual({ secret, consistent: true, off: [] });
  });

  it('a wrong share among the first t: the fast path gives null; decoding corrects it and says it is off', () => {
    const secret = randomBytes(32);
    const shares = split(secret, 3, [1, 2, 3, 4, 5]);
    shares[1] = { x: 2, y: wrong(shares[1].y) };
    expect(reconstruct(shares, 3)).not.toEqual(secret); // the plain path is fooled
    expect(reconstructChecked(shares, 3, verifier(secret))).toBeNull();
    expect(decodeChecked(shares, 3, verifier(secret))).toEqual({ secret, consistent: false, off: [2] });
  });

  it('property: e <= floor((m - t) / 2) wrong shares anywhere are corrected and exactly they are off', () => {
    const r = seeded('verified-ok');
    for (let trial = 0; trial < 60; trial++) {
      const t = r.int(1, 5);
      const m = t + r.int(0, 8);
      const e = r.int(0, Math.floor((m - t) / 2));
      const secret = r.bytes();
      const xs = Array.from({ length: m }, (_, i) => 3 * i + 1 + r.int(0, 2));
      const shares = split(secret, t, xs);
      const bad = new Set<number>();
      while (bad.size < e) bad.add(r.int(0, m - 1));
      for (const i of bad) shares[i] = { x: shares[i].x, y: wrong(shares[i].y) };
      const what = `t=${t} m=${m} e=${e}`;
      // The fast path reads only the first t: it succeeds exactly when none of them is wrong.
      const firstT = [...bad].some((i) => i < t);
      expect(reconstructChecked(shares, t, verifier(secret)), what).toEqual(firstT ? null : secret);
      const got = decodeChecked(shares, t, verifier(secret));
      expect(got.secret, what).toEqual(secret);
      expect(got.consistent, what).toBe(e === 0);
      expect(got.off, what).toEqual([...bad].map((i) => xs[i]).sort((a, b) => a - b));
    }
  });

  it('property: more wrong shares than the bound give no secret (and no throw)', () => {
    const r = seeded('verified-too-many');
    for (let trial = 0; trial < 40; trial++) {
      const t = r.int(1, 4);
      const m = t + r.int(0, 6);
      const e = r.int(Math.floor((m - t) / 2) + 1, m);
      const secret = r.bytes();
      const xs = Array.from({ length: m }, (_, i) => i + 1);
      const shares = split(secret, t, xs);
      for (let i = 0; i < e; i++) shares[i] = { x: shares[i].x, y: wrong(shares[i].y) };
      const got = decodeChecked(shares, t, verifier(secret));
      expect(got.secret, `t=${t} m=${m} e=${e}`).toBeNull();
      // m = t points always fit one polynomial of degree < t; with redundancy, random errors never do.
      expect(got.consistent, `t=${t} m=${m} e=${e}`).toBe(m === t);
      expect(reconstructChecked(shares, t, verifier(secret))).toBeNull();
    }
  });

  it('colluders beyond the bound who agree on another secret: consistent, but the check refuses it', () => {
    // m = 7, t = 3, bound 2: all shares move onto a polynomial with another secret that meets the true
    // one at holders 1 and 2, so decoding alone would accept it.
    const secret = randomBytes(32);
    const xs = [1, 2, 3, 4, 5, 6, 7];
    const shares = split(secret, 3, xs);
    const fake = randomBytes(32);
    // g(x) = f(x) + (fake - secret) * (x - 1)(x - 2) / 2: g(0) = fake, g(1) = f(1), g(2) = f(2).
    const D = (bytesToBig(fake) - bytesToBig(secret) + FIELD_PRIME) % FIELD_PRIME;
    const half = invMod(2n);
    const forged: Share[] = shares.map((s) => {
      const x = BigInt(s.x);
      const shift = (((D * (x - 1n) * (x - 2n)) % FIELD_PRIME) * half) % FIELD_PRIME;
      return { x: s.x, y: bigToBytes((bytesToBig(s.y) + shift) % FIELD_PRIME, SHARE_BYTES) };
    });
    expect(reconstruct(forged, 3)).toEqual(fake);
    expect(reconstructChecked(forged, 3, verifier(secret))).toBeNull();
    expect(decodeChecked(forged, 3, verifier(secret))).toEqual({ secret: null, consistent: true, off: [] });
  });

  it('"off" is not blame: t - 1 colluders shifting by g with g(0) = 0 steer decoding to put two HONEST holders off', () => {
    // Why recover.ts decodes only dealer-signed shares. m = 9, t = 5, bound 2. Colluders 1..4 add
    // g(x) = x (x - 6)(x - 7)(x - 8): f + g has degree < t, the same secret, and agrees with 1..4 and 6, 7, 8.
    const secret = randomBytes(32);
    const shares = split(secret, 5, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const g = (x: bigint): bigint =>
      (((x * (x - 6n) * (x - 7n) * (x - 8n)) % FIELD_PRIME) + FIELD_PRIME) % FIELD_PRIME;
    const shifted = shares.map((s) =>
      s.x <= 4 ? { x: s.x, y: bigToBytes((bytesToBig(s.y) + g(BigInt(s.x))) % FIELD_PRIME, SHARE_BYTES) } : s,
    );
    expect(decodeChecked(shifted, 5, verifier(secret))).toEqual({ secret, consistent: false, off: [5, 9] });
  });

  it('shares that are not field elements: the fast path gives null if it needs one; decoding refuses them', () => {
    const secret = randomBytes(32);
    const shares = split(secret, 2, [1, 2, 3, 4]);
    shares[0] = { x: 1, y: outOfField() };
    expect(reconstructChecked(shares, 2, verifier(secret))).toBeNull();
    expect(reconstructChecked(shares.slice(1), 2, verifier(secret))).toEqual(secret);
    expect(() => decodeChecked(shares, 2, verifier(secret))).toThrow(/not a field element/);
    expect(() => decodeChecked([{ x: 1, y: new Uint8Array(5) }], 1, verifier(secret))).toThrow(
      /not a field element/,
    );
  });

  it('m = t: one wrong share cannot be corrected or even seen; fewer than t fix no secret', () => {
    const secret = randomBytes(32);
    const shares = split(secret, 3, [1, 2, 3]);
    shares[2] = { x: 3, y: wrong(shares[2].y) };
    expect(reconstructChecked(shares, 3, verifier(secret))).toBeNull();
    expect(decodeChecked(shares, 3, verifier(secret))).toEqual({ secret: null, consistent: true, off: [] });
    expect(reconstructChecked(shares.slice(0, 2), 3, verifier(secret))).toBeNull();
    expect(decodeChecked(shares.slice(0, 2), 3, verifier(secret))).toEqual({
      secret: null,
      consistent: true,
      off: [],
    });
  });

  it('a verifier that throws counts as a failed check; bad arguments still throw', () => {
    const shares = split(randomBytes(32), 2, [1, 2, 3]);
    const boom = (): boolean => {
      throw new Error('boom');
    };
    expect(reconstructChecked(shares, 2, boom)).toBeNull();
    expect(decodeChecked(shares, 2, boom).secret).toBeNull();
    expect(() => reconstructChecked([shares[0], shares[0]], 1, () => true)).toThrow(/duplicate/);
    expect(() => reconstructChecked(shares, 0, () => true)).toThrow(/threshold/);
    expect(() => decodeChecked([shares[0], shares[0]], 1, () => true)).toThrow(/duplicate/);
    expect(() => decodeChecked(shares, 0, () => true)).toThrow(/threshold/);
  });

  it('weights are cached by holder set and reused across secrets', () => {
    const cache: LagrangeCache = new Map();
    for (let i = 0; i < 5; i++) {
      const secret = randomBytes(32);
      expect(reconstructChecked(split(secret, 3, [2, 5, 9, 11]), 3, verifier(secret), cache)).toEqual(secret);
    }
    expect([...cache.keys()]).toEqual(['2,5,9']);
  });

  it('prepareLagrange: one batch for many holder sets gives the weights lagrangeAtZero gives each', () => {
    const r = seeded('prepare');
    const sets: number[][] = [];
    for (let k = 0; k < 40; k++) {
      const xs = new Set<number>();
      const t = r.int(1, 12);
      while (xs.size < t) xs.add(r.int(1, 2000));
      sets.push([...xs]);
    }
    sets.push(sets[3].slice(), [0xffffffff, 1, 0xfffffffe]); // a repeat, and the widest differences
    const cache: LagrangeCache = new Map([['7,8', [1n, 2n]]]); // present entries are left alone
    prepareLagrange(cache, [...sets, [7, 8]]);
    expect(cache.get('7,8')).toEqual([1n, 2n]);
    expect(cache.size).toBe(new Set(sets.map((xs) => xs.join(','))).size + 1);
    for (const xs of sets) expect(cache.get(xs.join(','))).toEqual(lagrangeAtZero(xs));
    // Secrets rebuilt through the prepared cache are right, whichever set each uses.
    for (const xs of sets.slice(0, 10)) {
      const secret = randomBytes(32);
      const shares = split(secret, xs.length, xs);
      expect(reconstructChecked(shares, xs.length, verifier(secret), cache)).toEqual(secret);
    }
    expect(() => prepareLagrange(new Map(), [[1, 1]])).toThrow(/duplicate/);
    prepareLagrange(cache, []); // nothing to do
  });
});
