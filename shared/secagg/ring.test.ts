import { describe, expect, it } from 'vitest';
import { addInto, checkNoOverflow, decodeRingSum, encodeRing, ringBits } from './ring.ts';

describe('ring encoding', () => {
  it('chooses the widest per-client range with n * 2^bits <= 2^32', () => {
    expect(ringBits(1)).toBe(32);
    expect(ringBits(2)).toBe(31);
    expect(ringBits(10)).toBe(28);
    expect(ringBits(1000)).toBe(22);
    expect(ringBits(1024)).toBe(22);
    expect(ringBits(1025)).toBe(21);
    expect(() => ringBits(0)).toThrow();
    expect(() => checkNoOverflow(1025, 22)).toThrow(/overflow/);
  });

  it('the sum of n extreme vectors decodes exactly (no wrap at the bounds)', () => {
    const n = 1000;
    const bits = ringBits(n);
    const half = 2 ** (bits - 1);
    for (const v of [-half, half - 1, 0, -1]) {
      const enc = encodeRing(Float64Array.of(v, -v - 1 >= -half ? -v - 1 : v), bits);
      expect(enc.clamped).toBe(0);
      const acc = new Uint32Array(2);
      for (let i = 0; i < n; i++) addInto(acc, enc.ring);
      const dec = decodeRingSum(acc, n, bits);
      expect(dec[0]).toBe(n * v);
    }
  });

  it('clamps out-of-range values and counts them; refuses non-integers', () => {
    const bits = 8;
    const enc = encodeRing(Float64Array.of(-1000, 127, 128, 5), bits);
    expect(enc.clamped).toBe(2);
    expect(Array.from(enc.ring)).toEqual([0, 255, 255, 133]);
    expect(() => encodeRing(Float64Array.of(0.5), bits)).toThrow(/integer/);
  });

  it('modular addition wraps in 32 bits (masks rely on it)', () => {
    const a = Uint32Array.of(0xffffffff, 5);
    addInto(a, Uint32Array.of(2, 0xfffffffe));
    expect(Array.from(a)).toEqual([1, 3]);
  });
});
