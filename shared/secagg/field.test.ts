import { describe, expect, it } from 'vitest';
import { hexToBytes, randomBytes } from '@noble/hashes/utils.js';
import {
  batchInvert,
  bigToBytes,
  bytesToBig,
  ELEMENT_BYTES,
  FIELD_PRIME,
  invMod,
  isFieldElement,
} from './field.ts';

/** Big-endian bytes -> bigint one byte at a time (the definition, to check the fast conversions). */
const slowBig = (b: Uint8Array): bigint => b.reduce((v, x) => (v << 8n) | BigInt(x), 0n);

describe('isFieldElement (33-byte big-endian share values)', () => {
  // p = 2^256 + 297 = 0x01 || 00 * 30 || 0x0129.
  const pHex = '01' + '00'.repeat(30) + '0129';
  it('known answers at the edges of the field', () => {
    expect(bigToBytes(FIELD_PRIME, ELEMENT_BYTES)).toEqual(hexToBytes(pHex));
    expect(isFieldElement(hexToBytes('00'.repeat(33)))).toBe(true); // 0
    expect(isFieldElement(hexToBytes('01' + '00'.repeat(30) + '0128'))).toBe(true); // p - 1
    expect(isFieldElement(hexToBytes('01' + '00'.repeat(32)))).toBe(true); // 2^256 < p
    expect(isFieldElement(hexToBytes(pHex))).toBe(false); // p
    expect(isFieldElement(hexToBytes('01' + '00'.repeat(30) + '012a'))).toBe(false); // p + 1
    expect(isFieldElement(hexToBytes('02' + '00'.repeat(32)))).toBe(false); // 2^257
    expect(isFieldElement(hexToBytes('ff'.repeat(33)))).toBe(false); // 2^264 - 1
  });
  it('property: agrees with comparing the value to p, near p and anywhere', () => {
    for (let i = 0; i < 2000; i++) {
      const b = randomBytes(ELEMENT_BYTES);
      if (i % 2) b.set(hexToBytes('01' + '00'.repeat(30)), 0); // within 2^16 of 2^256, around p
      if (i % 4 === 1) b[0] = i % 8 === 1 ? 0 : 1;
      expect(isFieldElement(b)).toBe(slowBig(b) < FIELD_PRIME);
    }
  });
  it('refuses other lengths, even for small values', () => {
    expect(isFieldElement(new Uint8Array(32))).toBe(false);
    expect(isFieldElement(new Uint8Array(34))).toBe(false);
    expect(isFieldElement(new Uint8Array(0))).toBe(false);
  });
});

describe('bytes <-> bigint', () => {
  it('property: bytesToBig is the big-endian value, bigToBytes its inverse at any length that fits', () => {
    for (const len of [0, 1, 7, 32, 33]) {
      for (let i = 0; i < 200; i++) {
        const b = randomBytes(len);
        if (i === 0) b.fill(0);
        if (i === 1) b.fill(0xff);
        const v = bytesToBig(b);
        expect(v).toBe(slowBig(b));
        expect(bigToBytes(v, len)).toEqual(b);
      }
    }
  });
  it('bigToBytes refuses a value that does not fit and a negative one', () => {
    expect(() => bigToBytes(256n, 1)).toThrow(/does not fit/);
    expect(() => bigToBytes(2n ** 264n, 33)).toThrow(/does not fit/);
    expect(() => bigToBytes(-1n, 4)).toThrow(/does not fit/);
    expect(bigToBytes(255n, 1)).toEqual(Uint8Array.of(255));
  });
});

describe('batchInvert (Montgomery trick)', () => {
  it('agrees with one inversion per element, including negative and unreduced inputs', () => {
    const a = [1n, 2n, 3n, FIELD_PRIME - 1n, 12345678901234567890123n, -5n, FIELD_PRIME + 7n];
    const inv = batchInvert(a);
    expect(inv).toEqual(a.map(invMod));
    a.forEach((x, i) => expect((((x % FIELD_PRIME) + FIELD_PRIME) * inv[i]) % FIELD_PRIME).toBe(1n));
  });
  it('handles the empty list and refuses a zero anywhere', () => {
    expect(batchInvert([])).toEqual([]);
    expect(() => batchInvert([3n, 0n, 5n])).toThrow(/no inverse/);
    expect(() => batchInvert([FIELD_PRIME])).toThrow(/no inverse/);
  });
});
