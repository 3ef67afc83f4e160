import { afterEach, describe, expect, it } from 'vitest';
import { useJsWords, WordSum, WORDS_WASM, wordsBackend } from './words.ts';

/** The reference: BigInt arithmetic mod 2^32, nothing shared with the code under test. */
function reference(init: Uint32Array, ops: { v: Uint32Array; sign: 1 | -1; off: number }[]): Uint32Array {
  const out = init.slice();
  for (const { v, sign, off } of ops)
    for (let i = 0; i < v.length; i++)
      out[off + i] = Number(BigInt.asUintN(32, BigInt(out[off + i]) + BigInt(sign) * BigInt(v[i])));
  return out;
}

function randomWords(n: number, seed: number): Uint32Array {
  let x = seed >>> 0 || 1;
  return Uint32Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  });
}

describe('WordSum (bulk addition mod 2^32)', () => {
  afterEach(() => useJsWords(false));

  it('the module validates, and Node runs it (wasm SIMD), unless told to use the JS loop', () => {
    expect(WebAssembly.validate(WORDS_WASM)).toBe(true);
    expect(wordsBackend()).toBe('wasm-simd');
    useJsWords(true);
    expect(wordsBackend()).toBe('js');
  });

  for (const js of [false, true]) {
    const name = js ? 'js loop' : 'wasm simd';
    it(`${name}: equals BigInt mod 2^32 for lengths with tails, offsets, signs and wrap-around`, () => {
      useJsWords(js);
      for (const [length, scratch] of [
        [1, 4],
        [3, 4],
        [17, 8],
        [1001, 64],
        [4099, 1 << 18],
      ]) {
        const init = randomWords(length, length);
        const ops: { v: Uint32Array; sign: 1 | -1; off: number }[] = [];
        for (let j = 0; j < 12; j++) {
          const n = 1 + ((j * 7919 + length) % length);
          const off = (j * 31) % (length - n + 1);
          ops.push({ v: randomWords(n, j + 1), sign: (j % 3 ? 1 : -1) as 1 | -1, off });
        }
        ops.push({ v: new Uint32Array(length).fill(0xffffffff), sign: 1, off: 0 });
        const s = new WordSum(length, init, scratch);
        for (const o of ops) s.add(o.v, o.sign, o.off);
        const out = new Uint32Array(length);
        s.copyTo(out);
        expect(out).toEqual(reference(init, ops));
      }
    });
  }

  it('adds from subarray views with odd byte offsets of their buffer, and leaves its init untouched', () => {
    const big = randomWords(100, 9);
    const init = randomWords(40, 3);
    const keep = init.slice();
    const s = new WordSum(40, init, 16);
    const v = big.subarray(13, 53);
    s.add(v);
    const out = new Uint32Array(40);
    s.copyTo(out);
    expect(out).toEqual(reference(keep, [{ v, sign: 1, off: 0 }]));
    expect(init).toEqual(keep);
  });

  it('refuses operands that do not fit and targets of the wrong length', () => {
    const s = new WordSum(10);
    expect(() => s.add(new Uint32Array(11))).toThrow(/does not fit/);
    expect(() => s.add(new Uint32Array(5), 1, 6)).toThrow(/does not fit/);
    expect(() => s.add(new Uint32Array(1), 1, -1)).toThrow(/does not fit/);
    expect(() => s.copyTo(new Uint32Array(9))).toThrow(/9 words/);
    expect(() => new WordSum(3, new Uint32Array(4))).toThrow(/4 words/);
    expect(() => new WordSum(-1)).toThrow(/length/);
    expect(() => s.add(new Uint32Array(1), 0 as 1)).toThrow(/sign/);
  });
});
