import { createCipheriv, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { addMask, addMasks, CHUNK_BYTES, counterBlock, keystream, prgKey, type MaskDomain } from './prg.ts';

/** The specified stream, by OpenSSL: AES-256-CTR from counter block 0 under the HKDF key of the domain. */
function nodeStream(seed: Uint8Array, domain: MaskDomain, words: number): Uint32Array {
  const key = Buffer.from(hkdfSync('sha256', seed, new Uint8Array(0), `aegisfl/secagg/v1/prg/${domain}`, 32));
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const out = c.update(Buffer.alloc(words * 4));
  return new Uint32Array(Uint8Array.from(out).buffer);
}

/** Index of the first word where a and b differ (or of the shorter end); -1 when equal. Fast on 1M words. */
function firstDifference(a: Uint32Array, b: Uint32Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

const seedOf = (k: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + k) & 0xff);
const CHUNK_WORDS = CHUNK_BYTES / 4;

describe('mask PRG (AES-256-CTR through WebCrypto)', () => {
  it('the key is HKDF-SHA256(seed, salt = empty, info = "aegisfl/secagg/v1/prg/<domain>")', () => {
    const seed = seedOf(1);
    for (const d of ['self', 'pair'] as const)
      expect(prgKey(seed, d)).toEqual(
        new Uint8Array(hkdfSync('sha256', seed, new Uint8Array(0), `aegisfl/secagg/v1/prg/${d}`, 32)),
      );
    expect(prgKey(seed, 'self')).not.toEqual(prgKey(seed, 'pair'));
  });

  it('counter blocks are 0^8 || BE64(block)', () => {
    expect(Array.from(counterBlock(0))).toEqual(new Array(16).fill(0));
    expect(Array.from(counterBlock(0x0102030405))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]);
  });

  it.each([0, 1, 3, 4, 5, 1000, CHUNK_WORDS - 1, CHUNK_WORDS, CHUNK_WORDS + 1, 2 * CHUNK_WORDS + 13])(
    'keystream of %i words equals OpenSSL AES-256-CTR (chunk boundaries included)',
    async (n) => {
      const seed = seedOf(n);
      for (const d of ['self', 'pair'] as const)
        expect(firstDifference(await keystream(seed, d, n), nodeStream(seed, d, n))).toBe(-1);
    },
  );

  it('self and pair streams of one seed are unrelated (domain separation)', async () => {
    const seed = seedOf(2);
    const self = await keystream(seed, 'self', 64);
    const pair = await keystream(seed, 'pair', 64);
    expect(self.some((w, i) => w === pair[i])).toBe(false);
  });

  it('adding then subtracting a mask restores the vector, across chunks and in a subarray', async () => {
    const seed = seedOf(3);
    const n = CHUNK_WORDS + 7;
    const buf = Uint32Array.from({ length: n + 2 }, (_, i) => Math.imul(i, 2654435761) >>> 0);
    const v = buf.subarray(1, n + 1); // a view with a byte offset: the words around it stay untouched
    const orig = buf.slice();
    await addMask(v, seed, 'self', 1);
    expect(firstDifference(v, orig.subarray(1, n + 1))).toBe(0);
    const ks = nodeStream(seed, 'self', n);
    expect(Array.from(v.subarray(n - 3))).toEqual(
      Array.from(ks.subarray(n - 3), (w, i) => (orig[n - 3 + 1 + i] + w) >>> 0),
    );
    await addMask(v, seed, 'self', -1);
    expect(firstDifference(buf, orig)).toBe(-1);
  });

  it('pairwise masks cancel: +PRG(s) at one end, -PRG(s) at the other, in any order among other terms', async () => {
    const s12 = seedOf(4);
    const n = 2 * CHUNK_WORDS + 5;
    const x1 = Uint32Array.from({ length: n }, (_, i) => i);
    const x2 = Uint32Array.from({ length: n }, (_, i) => 0xffffffff - i);
    const y1 = x1.slice();
    const y2 = x2.slice();
    await addMasks(y1, [
      { seed: seedOf(5), domain: 'self', sign: 1 },
      { seed: s12, domain: 'pair', sign: -1 },
    ]);
    await addMasks(y2, [
      { seed: s12, domain: 'pair', sign: 1 },
      { seed: seedOf(6), domain: 'self', sign: 1 },
    ]);
    const sum = Uint32Array.from(y1, (v, i) => (v + y2[i]) >>> 0);
    await addMasks(sum, [
      { seed: seedOf(6), domain: 'self', sign: -1 },
      { seed: seedOf(5), domain: 'self', sign: -1 },
    ]);
    expect(
      firstDifference(
        sum,
        Uint32Array.from(x1, (v, i) => (v + x2[i]) >>> 0),
      ),
    ).toBe(-1);
  });

  it('many terms at once equal the terms one by one', async () => {
    const n = 3001;
    const terms = Array.from({ length: 9 }, (_, k) => ({
      seed: seedOf(10 + k),
      domain: (k % 2 ? 'pair' : 'self') as MaskDomain,
      sign: (k % 3 ? 1 : -1) as 1 | -1,
    }));
    const together = new Uint32Array(n);
    await addMasks(together, terms);
    const one = new Uint32Array(n);
    for (const t of terms) await addMask(one, t.seed, t.domain, t.sign);
    expect(together).toEqual(one);
    const byHand = new Uint32Array(n);
    for (const t of terms) {
      const ks = nodeStream(t.seed, t.domain, n);
      for (let i = 0; i < n; i++) byHand[i] = (byHand[i] + t.sign * ks[i]) >>> 0;
    }
    expect(together).toEqual(byHand);
  });

  it('slices masked apart (from = offset) join into the whole vector masked at once, across chunk edges', async () => {
    const n = CHUNK_WORDS * 2 + 37;
    const terms = Array.from({ length: 3 }, (_, k) => ({
      seed: seedOf(40 + k),
      domain: (k ? 'pair' : 'self') as MaskDomain,
      sign: (k === 1 ? -1 : 1) as 1 | -1,
    }));
    const whole = Uint32Array.from({ length: n }, (_, i) => i * 2654435761);
    const parts = whole.slice();
    await addMasks(whole, terms);
    for (const [a, b] of [
      [0, 1000],
      [1000, CHUNK_WORDS + 4],
      [CHUNK_WORDS + 4, n],
    ]) {
      const slice = parts.slice(a, b);
      await addMasks(slice, terms, a);
      parts.set(slice, a);
    }
    expect(firstDifference(parts, whole)).toBe(-1);
    await expect(addMasks(new Uint32Array(4), terms, 2)).rejects.toThrow(/multiple of 4/);
    await expect(addMasks(new Uint32Array(4), terms, -4)).rejects.toThrow(/multiple of 4/);
  });

  it('a keystream that fails midway leaves the target unchanged', async () => {
    const n = CHUNK_WORDS * 3;
    const v = Uint32Array.from({ length: n }, (_, i) => i);
    let calls = 0;
    const failing = () => () => {
      if (++calls === 5) throw new Error('injected: cipher failed');
      return new ArrayBuffer(CHUNK_BYTES);
    };
    const terms = [0, 1].map((k) => ({ seed: seedOf(k), domain: 'pair' as MaskDomain, sign: 1 as const }));
    await expect(addMasks(v, terms, 0, failing)).rejects.toThrow(/injected/);
    expect(
      firstDifference(
        v,
        Uint32Array.from({ length: n }, (_, i) => i),
      ),
    ).toBe(-1);
  });

  it('refuses a seed that is not 32 bytes, an unknown domain and a bad sign, before touching the target', async () => {
    const v = Uint32Array.of(1, 2, 3);
    await expect(addMask(v, new Uint8Array(16), 'self', 1)).rejects.toThrow(/32 bytes/);
    await expect(addMask(v, seedOf(0), 'other' as MaskDomain, 1)).rejects.toThrow(/domain/);
    await expect(
      addMasks(v, [
        { seed: seedOf(0), domain: 'self', sign: 1 },
        { seed: seedOf(0), domain: 'self', sign: 2 as 1 },
      ]),
    ).rejects.toThrow(/sign/);
    expect(v).toEqual(Uint32Array.of(1, 2, 3));
    await expect(keystream(seedOf(0), 'self', -1)).rejects.toThrow(/length/);
  });
});
