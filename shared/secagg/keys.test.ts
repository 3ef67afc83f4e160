import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { agree, channelKey, commitSeed, generateKeyPair, maskSeed, open, publicKeyOf, seal } from './keys.ts';

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
