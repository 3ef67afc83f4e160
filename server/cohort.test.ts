import { describe, expect, it } from 'vitest';
import { createRng } from '../shared/data/rng.ts';
import { createSecureRandom } from '../shared/dp/secure-random.ts';
import { chooseCohort } from './cohort.ts';

const ids = Array.from({ length: 1000 }, (_, i) => i);

describe('chooseCohort: poisson', () => {
  it('includes each client independently with probability q', () => {
    const random = createSecureRandom(new Uint8Array(32).fill(7));
    const q = 0.05;
    const draws = 400;
    const hits = new Uint32Array(ids.length);
    const sizes: number[] = [];
    for (let r = 0; r < draws; r++) {
      const d = chooseCohort(ids, { kind: 'poisson', q, random }, { min: 0, max: ids.length });
      if (!d.ok) throw new Error('unexpected skip');
      sizes.push(d.chosen.length);
      for (const i of d.chosen) hits[i]++;
    }
    // Size ~ Binomial(1000, 0.05): mean 50, sd 6.9; the mean of 400 draws has sd 0.34.
    const mean = sizes.reduce((a, b) => a + b, 0) / draws;
    expect(Math.abs(mean - 50)).toBeLessThan(1.5);
    const variance = sizes.reduce((a, b) => a + (b - mean) ** 2, 0) / (draws - 1);
    expect(variance).toBeGreaterThan(47.5 * 0.7);
    expect(variance).toBeLessThan(47.5 * 1.3);
    // Per client: hits ~ Binomial(400, 0.05), mean 20; first and second half of the ids alike.
    const half = (a: number, b: number) => hits.slice(a, b).reduce((s, v) => s + v, 0) / (b - a);
    expect(Math.abs(half(0, 500) - 20)).toBeLessThan(1);
    expect(Math.abs(half(500, 1000) - 20)).toBeLessThan(1);
  });

  it('never trims a draw: outside the bounds the round is skipped', () => {
    const random = createSecureRandom(new Uint8Array(32).fill(1));
    const small = chooseCohort(ids, { kind: 'poisson', q: 0.001, random }, { min: 10, max: 1000 });
    expect(small).toMatchObject({ ok: false, reason: 'too_few' });
    const big = chooseCohort(ids, { kind: 'poisson', q: 0.9, random }, { min: 1, max: 100 });
    expect(big).toMatchObject({ ok: false, reason: 'too_many' });
    if (!big.ok) expect(big.drawn).toBeGreaterThan(800);
  });

  it('q = 1 takes everyone; q outside (0, 1] is refused', () => {
    expect(chooseCohort(ids.slice(0, 5), { kind: 'poisson', q: 1 }, { min: 1, max: 10 })).toEqual({
      ok: true,
      chosen: [0, 1, 2, 3, 4],
    });
    expect(() => chooseCohort(ids, { kind: 'poisson', q: 0 }, { min: 1, max: 10 })).toThrow(RangeError);
    expect(() => chooseCohort(ids, { kind: 'poisson', q: 1.5 }, { min: 1, max: 10 })).toThrow(RangeError);
  });
});

describe('chooseCohort: fixed', () => {
  it('a seeded uniform subset of the requested size, reproducible', () => {
    const a = chooseCohort(ids, { kind: 'fixed', size: 10, rng: createRng(3) }, { min: 2, max: 100 });
    const b = chooseCohort(ids, { kind: 'fixed', size: 10, rng: createRng(3) }, { min: 2, max: 100 });
    expect(a).toEqual(b);
    if (!a.ok) throw new Error('skip');
    expect(new Set(a.chosen).size).toBe(10);
  });
  it('takes everyone when fewer are eligible, and skips below the minimum', () => {
    const d = chooseCohort([1, 2, 3], { kind: 'fixed', size: 10, rng: createRng(1) }, { min: 2, max: 100 });
    expect(d.ok && [...d.chosen].sort()).toEqual([1, 2, 3]);
    expect(chooseCohort([1], { kind: 'fixed', size: 10, rng: createRng(1) }, { min: 2, max: 100 })).toEqual({
      ok: false,
      drawn: 1,
      reason: 'too_few',
    });
  });
});
