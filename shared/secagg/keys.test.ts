import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { hexToBytes, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  agree,
  agreeMany,
  channelKey,
  checkPublicKey,
  commitSeed,
  eightTimesIsZero,
  generateKeyPair,
  maskSeed,
  maskSeeds,
  open,
  publicKeyOf,
  publicKeysOf,
  seal,
  useNobleX25519,
  x25519Backend,
} from './keys.ts';

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

describe('X25519 (RFC 7748 section 6.1)', () => {
  const aSk = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const bSk = hexToBytes('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  it('derives the published public keys and shared secret', () => {
    expect(hex(publicKeyOf(aSk))).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(hex(publicKeyOf(bSk))).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(hex(agree(aSk, publicKeyOf(bSk)))).toBe(k);
    expect(hex(agree(bSk, publicKeyOf(aSk)))).toBe(k);
  });
  it('refuses a low-order peer key (all-zero shared secret) and a wrong-length key', () => {
    expect(() => agree(aSk, new Uint8Array(32))).toThrow();
    expect(() => agree(aSk, new Uint8Array(31))).toThrow(/32 bytes/);
  });
});

describe('batched X25519 (agreeMany, publicKeysOf, maskSeeds), on WebCrypto and on noble', () => {
  const aSk = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const bSk = hexToBytes('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  afterEach(() => useNobleX25519(false));
  it('Node 20 has X25519 in WebCrypto, so the batched calls use it here', async () => {
    expect(await x25519Backend()).toBe('webcrypto');
    useNobleX25519(true);
    expect(await x25519Backend()).toBe('noble');
  });
  for (const noble of [false, true]) {
    const name = noble ? 'noble' : 'webcrypto';
    it(`${name}: RFC 7748 section 6.1 public keys and shared secret`, async () => {
      useNobleX25519(noble);
      const [aPk, bPk] = await publicKeysOf([aSk, bSk]);
      expect(hex(aPk)).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
      expect(hex(bPk)).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
      expect((await agreeMany(aSk, [bPk, bPk])).map(hex)).toEqual([k, k]);
      expect(await agreeMany(aSk, [])).toEqual([]);
    });
    it(`${name}: equals agree() on random keys, in order, and rejects low-order and short keys`, async () => {
      useNobleX25519(noble);
      const me = generateKeyPair();
      const peers = Array.from({ length: 20 }, () => generateKeyPair());
      const got = await agreeMany(
        me.secretKey,
        peers.map((p) => p.publicKey),
      );
      expect(got.map(hex)).toEqual(peers.map((p) => hex(agree(me.secretKey, p.publicKey))));
      expect((await publicKeysOf(peers.map((p) => p.secretKey))).map(hex)).toEqual(
        peers.map((p) => hex(p.publicKey)),
      );
      await expect(agreeMany(me.secretKey, [peers[0].publicKey, new Uint8Array(32)])).rejects.toThrow();
      const one = new Uint8Array(32);
      one[0] = 1;
      await expect(agreeMany(me.secretKey, [one])).rejects.toThrow();
      await expect(agreeMany(me.secretKey, [new Uint8Array(31)])).rejects.toThrow(/32 bytes/);
      await expect(agreeMany(new Uint8Array(31), [peers[0].publicKey])).rejects.toThrow(/32 bytes/);
    });
    it(`${name}: maskSeeds equals maskSeed peer by peer`, async () => {
      useNobleX25519(noble);
      const u = generateKeyPair();
      const peers = [2, 9, 5].map((index) => ({ index, ...generateKeyPair() }));
      const seeds = await maskSeeds(
        u.secretKey,
        peers.map((p) => ({ index: p.index, sPk: p.publicKey })),
        'r1',
        7,
      );
      expect(seeds.map(hex)).toEqual(
        peers.map((p) => hex(maskSeed(u.secretKey, p.publicKey, 'r1', 7, p.index))),
      );
      expect(hex(seeds[1])).toBe(hex(maskSeed(peers[1].secretKey, u.publicKey, 'r1', 9, 7)));
    });
  }
});

describe('HKDF-SHA256 (RFC 5869 test case 1)', () => {
  it('gives the published OKM', () => {
    const okm = hkdf(
      sha256,
      new Uint8Array(22).fill(0x0b),
      hexToBytes('000102030405060708090a0b0c'),
      hexToBytes('f0f1f2f3f4f5f6f7f8f9'),
      42,
    );
    expect(hex(okm)).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    );
  });
});

describe('derived keys', () => {
  const u = generateKeyPair();
  const v = generateKeyPair();
  it('pairwise mask seeds agree on both sides and depend on the round tag', () => {
    expect(maskSeed(u.secretKey, v.publicKey, 'r1', 3, 9)).toEqual(
      maskSeed(v.secretKey, u.publicKey, 'r1', 9, 3),
    );
    expect(maskSeed(u.secretKey, v.publicKey, 'r1', 3, 9)).not.toEqual(
      maskSeed(u.secretKey, v.publicKey, 'r2', 3, 9),
    );
  });
  it('channel keys are per direction', () => {
    expect(channelKey(u.secretKey, v.publicKey, 't', 1, 2)).toEqual(
      channelKey(v.secretKey, u.publicKey, 't', 1, 2),
    );
    expect(channelKey(u.secretKey, v.publicKey, 't', 1, 2)).not.toEqual(
      channelKey(u.secretKey, v.publicKey, 't', 2, 1),
    );
  });
  it('commitments bind the round, the client and the seed', () => {
    const s = new Uint8Array(32).fill(1);
    expect(commitSeed(s, 't', 1)).not.toEqual(commitSeed(s, 't', 2));
    expect(commitSeed(s, 't', 1)).not.toEqual(commitSeed(s, 'u', 1));
    expect(commitSeed(s, 't', 1)).toEqual(commitSeed(s.slice(), 't', 1));
  });
});

describe('AEAD (ChaCha20-Poly1305)', () => {
  const key = new Uint8Array(32).fill(5);
  const aad = utf8ToBytes('round 7');
  const msg = utf8ToBytes('a share');
  it('round-trips and uses a fresh nonce each time', () => {
    const a = seal(key, msg, aad);
    const b = seal(key, msg, aad);
    expect(a).not.toEqual(b);
    expect(open(key, a, aad)).toEqual(msg);
  });
  it('rejects a flipped bit, the wrong key and other associated data', () => {
    const box = seal(key, msg, aad);
    const bad = box.slice();
    bad[15] ^= 1;
    expect(() => open(key, bad, aad)).toThrow();
    expect(() => open(new Uint8Array(32), box, aad)).toThrow();
    expect(() => open(key, box, utf8ToBytes('round 8'))).toThrow();
    expect(() => open(key, box.subarray(0, 20), aad)).toThrow(/too short/);
  });
});

describe('checkPublicKey (small-order and non-canonical X25519 keys)', () => {
  const p = 2n ** 255n - 19n;
  const le = (u: bigint): Uint8Array => {
    const b = new Uint8Array(32);
    for (let i = 0; i < 32; i++) b[i] = Number((u >> BigInt(8 * i)) & 0xffn);
    return b;
  };
  const uOf = (b: Uint8Array): bigint => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);

  /**
   * RFC 7748 section 5 X25519, written out here without any small-order check, so the vectors below are
   * checked against the definition and not against the library's own blocklist.
   */
  function rfcX25519(k: Uint8Array, uBytes: Uint8Array): Uint8Array {
    const m = (a: bigint): bigint => ((a % p) + p) % p;
    const kc = k.slice();
    kc[0] &= 248;
    kc[31] = (kc[31] & 127) | 64;
    const scalar = uOf(kc);
    const ub = uBytes.slice();
    ub[31] &= 127;
    const x1 = m(uOf(ub));
    let [x2, z2, x3, z3, swap] = [1n, 0n, x1, 1n, 0n];
    for (let t = 254n; t >= 0n; t--) {
      const kt = (scalar >> t) & 1n;
      if (swap ^ kt) [x2, x3, z2, z3] = [x3, x2, z3, z2];
      swap = kt;
      const A = x2 + z2;
      const AA = m(A * A);
      const B = x2 - z2;
      const BB = m(B * B);
      const E = AA - BB;
      const C = x3 + z3;
      const D = x3 - z3;
      const DA = m(D * A);
      const CB = m(C * B);
      x3 = m((DA + CB) ** 2n);
      z3 = m(x1 * (DA - CB) ** 2n);
      x2 = m(AA * BB);
      z2 = m(E * (AA + 121665n * E));
    }
    if (swap) [x2, z2] = [x3, z3];
    let inv = 1n;
    for (let e = p - 2n, b = z2; e > 0n; e >>= 1n, b = m(b * b)) if (e & 1n) inv = m(inv * b);
    return le(m(x2 * inv));
  }

  // libsodium, src/libsodium/crypto_scalarmult/curve25519/ref10/x25519_ref10.c, has_small_order():
  // the seven u-coordinates of its blacklist (little-endian), which RFC 7748 section 6.1's all-zero
  // check also catches: 0, 1, two points of order 8, p - 1, and the non-canonical p and p + 1.
  const LIBSODIUM_BLACKLIST = [
    '0000000000000000000000000000000000000000000000000000000000000000',
    '0100000000000000000000000000000000000000000000000000000000000000',
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  ].map(hexToBytes);
  const withTopBit = (b: Uint8Array): Uint8Array => {
    const c = b.slice();
    c[31] |= 0x80;
    return c;
  };
  const aSk = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');

  it('the reference ladder reproduces RFC 7748 section 6.1, and gives all-zero for every blacklisted point', () => {
    const nine = le(9n);
    expect(hex(rfcX25519(aSk, nine))).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    for (const pk of LIBSODIUM_BLACKLIST) {
      expect(rfcX25519(aSk, pk)).toEqual(new Uint8Array(32));
      expect(rfcX25519(randomBytes(32), withTopBit(pk))).toEqual(new Uint8Array(32));
    }
  });

  it('batched agreements (WebCrypto and noble) refuse every blacklisted point, also with bit 255 set', async () => {
    for (const noble of [false, true]) {
      useNobleX25519(noble);
      for (const pk of LIBSODIUM_BLACKLIST) {
        await expect(agreeMany(aSk, [pk])).rejects.toThrow();
        await expect(agreeMany(aSk, [withTopBit(pk)])).rejects.toThrow();
      }
    }
    useNobleX25519(false);
  });

  it('refuses every blacklisted point as low_order, also with bit 255 set (non-canonical spelling)', () => {
    for (const pk of LIBSODIUM_BLACKLIST) {
      expect(checkPublicKey(pk)).toBe('low_order');
      expect(checkPublicKey(withTopBit(pk))).toBe('low_order');
    }
  });

  it('the fixed-scalar check (8 * P is the identity) flags exactly the small-order points, independently of the list', () => {
    for (const pk of LIBSODIUM_BLACKLIST) expect(eightTimesIsZero(uOf(pk))).toBe(true);
    for (let i = 0; i < 50; i++) expect(eightTimesIsZero(uOf(generateKeyPair().publicKey))).toBe(false);
    expect(eightTimesIsZero(9n)).toBe(false); // the base point has prime order
  });

  it('accepts real keys: the RFC 7748 keys and freshly generated ones', () => {
    expect(
      checkPublicKey(hexToBytes('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a')),
    ).toBe(null);
    expect(
      checkPublicKey(hexToBytes('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f')),
    ).toBe(null);
    for (let i = 0; i < 100; i++) expect(checkPublicKey(generateKeyPair().publicKey)).toBe(null);
  });

  it('refuses non-canonical encodings of ordinary points and wrong lengths', () => {
    const good = generateKeyPair().publicKey;
    expect(checkPublicKey(withTopBit(good))).toBe('non_canonical');
    expect(checkPublicKey(le(p + 2n))).toBe('non_canonical'); // 2 mod p, spelled u >= p
    expect(checkPublicKey(le(2n))).toBe(null); // 2 itself is not of small order
    expect(checkPublicKey(le(2n ** 255n - 1n))).toBe('non_canonical'); // the largest 255-bit value
    expect(checkPublicKey(new Uint8Array(31))).toBe('wrong_length');
    expect(checkPublicKey(new Uint8Array(33))).toBe('wrong_length');
  });
});
