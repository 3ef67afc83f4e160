import { describe, expect, it } from 'vitest';
import { messageDigest } from './resend.ts';

describe('messageDigest', () => {
  it('is the same for the same content however it was decoded (key order, Buffer or ArrayBuffer)', () => {
    const bytes = Uint8Array.from([1, 2, 3, 250]);
    const a = messageDigest({ round: 1, attempt: 2, b: [{ of: 3, share: Buffer.from(bytes) }] });
    const b = messageDigest({ b: [{ share: bytes.slice().buffer, of: 3 }], attempt: 2, round: 1 });
    expect(a.equals(b)).toBe(true);
    expect(a.length).toBe(32);
  });

  it('differs for any change of value, type, length or nesting', () => {
    const base = { round: 1, v: [1, 2], s: 'ab', bin: Uint8Array.from([1, 2]) };
    const d = messageDigest(base);
    const variants: unknown[] = [
      { ...base, round: 2 },
      { ...base, round: '1' },
      { ...base, v: [1, 2, 0] },
      { ...base, v: [[1], 2] },
      { ...base, s: 'a', t: 'b' },
      { ...base, bin: Uint8Array.from([1, 2, 0]) },
      { ...base, bin: Uint8Array.from([2, 1]) },
      { ...base, extra: null },
      { ...base, extra: undefined },
      { ...base, round: -0 },
      [base],
    ];
    for (const v of variants) expect(messageDigest(v).equals(d)).toBe(false);
  });

  it('refuses absurd nesting instead of recursing without end', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(() => messageDigest(deep)).toThrow(/nested too deeply/);
  });
});
