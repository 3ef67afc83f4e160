import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { bytesToBig, FIELD_PRIME } from './field.ts';
import { decode, evaluate, interpolate } from './reed-solomon.ts';

const P = FIELD_PRIME;

/** Reproducible test randomness: SHA-256 in counter mode over a fixed label. */
function seeded(label: string) {
  let ctr = 0;
  const big = (): bigint => bytesToBig(sha256(utf8ToBytes(`${label}/${ctr++}`)));
  return {
    int: (lo: number, hi: number): number => lo + Number(big() % BigInt(hi - lo + 1)),
    elem: (): bigint => ((big() << 64n) ^ big()) % P,
  };
}

/** `count` distinct share positions in 1..max. */
function distinctXs(r: ReturnType<typeof seeded>, count: number, max: number): bigint[] {
  const s = new Set<number>();
  while (s.size < count) s.add(r.int(1, max));
  return [...s].map(BigInt);
}

describe('interpolation', () => {
  it('passes through every point, with the vanishing polynomial zero exactly there', () => {
    const r = seeded('interp');
    const xs = distinctXs(r, 9, 500);
    const ys = xs.map(() => r.elem());
    const { vanishing, poly } = interpolate(xs, ys);
    expect(poly.length).toBeLessThanOrEqual(9);
    xs.forEach((x, i) => {
      expect(evaluate(poly, x)).toBe(ys[i]);
      expect(evaluate(vanishing, x)).toBe(0n);
    });
    expect(evaluate(vanishing, 501n)).not.toBe(0n);
  });
  it('known answer: the points (1, 2), (2, 4), (3, 8) give x^2 - x + 2', () => {
    expect(interpolate([1n, 2n, 3n], [2n, 4n, 8n]).poly).toEqual([2n, P - 1n, 1n]);
  });
});

describe('Gao decoding of Shamir shares (Reed–Solomon over GF(p))', () => {
  it('property: with e <= floor((m - t) / 2) corrupted shares, recovers the polynomial and names exactly the corrupted ones', () => {
    const r = seeded('decode-ok');
    for (let trial = 0; trial < 150; trial++) {
      const t = r.int(1, 6);
      const m = t + r.int(0, 9);
      const bound = Math.floor((m - t) / 2);
      const e = r.int(0, bound);
      const f = Array.from({ length: t }, () => r.elem());
      const xs = distinctXs(r, m, 2000);
      const ys = xs.map((x) => evaluate(f, x));
      const bad = new Set<number>();
      while (bad.size < e) bad.add(r.int(0, m - 1));
      for (const i of bad) ys[i] = (ys[i] + 1n + (r.elem() % (P - 1n))) % P; // any other value
      const d = decode(xs, ys, t);
      expect(d, `t=${t} m=${m} e=${e}`).not.toBeNull();
      // Compared as functions: f's top coefficients may be zero, the decoded one is trimmed.
      for (const x of [0n, 1n, 7n, ...xs]) expect(evaluate(d!.poly, x)).toBe(evaluate(f, x));
      expect(d!.errors).toEqual([...bad].sort((a, b) => a - b));
    }
  });

  it('property: with more corrupted shares than the bound (and redundancy m > t), decoding fails cleanly', () => {
    const r = seeded('decode-too-many');
    for (let trial = 0; trial < 100; trial++) {
      const t = r.int(1, 5);
      const m = t + r.int(1, 8);
      const bound = Math.floor((m - t) / 2);
      const e = r.int(bound + 1, m);
      const f = Array.from({ length: t }, () => r.elem());
      const xs = distinctXs(r, m, 2000);
      const ys = xs.map((x) => evaluate(f, x));
      const bad = new Set<number>();
      while (bad.size < e) bad.add(r.int(0, m - 1));
      for (const i of bad) ys[i] = r.elem(); // random values: no other codeword is near, except with prob ~1/p
      expect(decode(xs, ys, t), `t=${t} m=${m} e=${e}`).toBeNull();
    }
  });

  it('errors beyond the bound that agree on another polynomial decode to that one (callers must verify)', () => {
    // m = 7, t = 3: bound 2. Five shares moved onto g, which meets f at the other two points.
    const r = seeded('decode-other');
    const xs = [1n, 2n, 3n, 4n, 5n, 6n, 7n];
    const f = [r.elem(), r.elem(), r.elem()];
    const { poly: g } = interpolate([1n, 2n, 10n], [evaluate(f, 1n), evaluate(f, 2n), r.elem()]);
    const ys = xs.map((x) => evaluate(g, x));
    const d = decode(xs, ys, 3);
    expect(d!.poly).toEqual(g);
    expect(d!.errors).toEqual([]);
    expect(evaluate(d!.poly, 0n)).not.toBe(evaluate(f, 0n));
  });

  it('m = t has no redundancy: any values decode, to their interpolant, with no errors found', () => {
    const d = decode([1n, 2n, 3n], [5n, 9n, 1n], 3);
    expect(d!.errors).toEqual([]);
    expect(evaluate(d!.poly, 3n)).toBe(1n);
    expect(decode([1n, 2n], [5n, 9n], 3)).toBeNull(); // fewer than t
  });

  it('the zero polynomial and constant polynomials decode too', () => {
    expect(decode([1n, 2n, 3n, 4n, 5n], [0n, 0n, 9n, 0n, 0n], 2)).toEqual({ poly: [], errors: [2] });
    expect(decode([1n, 2n, 3n, 4n], [7n, 7n, 7n, 1n], 1)).toEqual({ poly: [7n], errors: [3] });
  });

  it('refuses inconsistent input', () => {
    expect(() => decode([1n, 2n], [1n], 1)).toThrow(/one y per x/);
    expect(() => decode([1n, 2n], [1n, 2n], 0)).toThrow(/positive integer/);
  });
});
