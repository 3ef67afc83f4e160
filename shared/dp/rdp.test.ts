import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ORDERS,
  RdpAccountant,
  SAMPLING_ASSUMPTION,
  computeRdp,
  rdpSampledGaussian,
  rdpToEpsilon,
} from './rdp.ts';

/** Test vectors from ../shared/specs/privacy.md, section A3 (relative tolerance 1e-4). */
const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

describe('RDP of the sampled Gaussian mechanism (privacy.md A3)', () => {
  it('#1 q=0.1, z=2, T=10, alpha=5 -> 0.07737', () => {
    expect(rel(computeRdp(0.1, 2, 10, [5])[0], 0.07737)).toBeLessThan(1e-4);
  });

  it('#2 q=0.01, z=2.5, T=50, fractional and integer orders, and infinity', () => {
    const orders = [1.5, 2.5, 5, 50, 100, Infinity];
    const want = [6.70579741e-4, 1.0854871e-3, 2.18075656e-3, 2.38460375e-2, 167.416308, Infinity];
    const got = computeRdp(0.01, 2.5, 50, orders);
    for (let k = 0; k < 5; k++) expect(rel(got[k], want[k]), `order ${orders[k]}`).toBeLessThan(1e-4);
    expect(got[5]).toBe(Infinity);
  });

  it('#3 constant RDP 1.1 at orders 2..32, delta=1e-5 -> eps 1.32783806176 at order 32', () => {
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const r = rdpToEpsilon(
      orders,
      orders.map(() => 1.1),
      1e-5,
    );
    expect(rel(r.epsilon, 1.32783806176)).toBeLessThan(1e-4);
    expect(r.order).toBe(32);
  });

  it('#4 q=1, z=4.530877117, orders 1.000..99.999 step 0.001, delta=1e-6 -> eps 1.0', () => {
    const orders = Array.from({ length: 99_000 }, (_, i) => 1 + i / 1000).filter((a) => a > 1);
    const r = rdpToEpsilon(orders, computeRdp(1, 4.530877117, 1, orders), 1e-6);
    expect(rel(r.epsilon, 1.0)).toBeLessThan(1e-4);
  });

  it.each([
    ['#5', 0.01, 0.7, 120, 1e-5, 3.2392676],
    ['#6', 0.01, 0.35, 120, 1e-5, 22.6248601],
    ['#7', 1, 0.7, 2, 1e-5, 10.8602036],
  ])('%s q=%d z=%d T=%d delta=%d -> eps %d (default orders)', (_, q, z, T, delta, eps) => {
    const r = new RdpAccountant().compose(q, z, T).epsilon(delta);
    expect(rel(r.epsilon, eps)).toBeLessThan(1e-4);
    expect(DEFAULT_ORDERS).toContain(r.order);
  });
});

describe('accountant properties', () => {
  it('special cases: q=0 costs nothing, z=0 or alpha=inf is unbounded, q=1 is alpha/(2 z^2)', () => {
    expect(rdpSampledGaussian(0, 1, 10)).toBe(0);
    expect(rdpSampledGaussian(0.1, 0, 10)).toBe(Infinity);
    expect(rdpSampledGaussian(0.1, 1, Infinity)).toBe(Infinity);
    expect(rdpSampledGaussian(1, 2, 10)).toBe(10 / 8);
  });

  it('integer and fractional formulas agree where they meet', () => {
    // The fractional series at alpha = 5 + 1e-9 must approach the integer sum at 5.
    const q = 0.05,
      z = 1.3;
    expect(rel(rdpSampledGaussian(q, z, 5 + 1e-9), rdpSampledGaussian(q, z, 5))).toBeLessThan(1e-6);
  });

  it('epsilon grows with rounds and sampling rate and shrinks with noise', () => {
    const eps = (q: number, z: number, T: number) =>
      new RdpAccountant().compose(q, z, T).epsilon(1e-5).epsilon;
    expect(eps(0.01, 1, 200)).toBeGreaterThan(eps(0.01, 1, 100));
    expect(eps(0.02, 1, 100)).toBeGreaterThan(eps(0.01, 1, 100));
    expect(eps(0.01, 2, 100)).toBeLessThan(eps(0.01, 1, 100));
  });

  it('composition is additive: T steps at once equals T single compositions', () => {
    const a = new RdpAccountant().compose(0.03, 1.1, 7).epsilon(1e-6);
    const b = new RdpAccountant();
    for (let i = 0; i < 7; i++) b.compose(0.03, 1.1);
    expect(rel(b.epsilon(1e-6).epsilon, a.epsilon)).toBeLessThan(1e-12);
  });

  it('names its sampling assumption and rejects bad input', () => {
    expect(new RdpAccountant().sampling).toBe(SAMPLING_ASSUMPTION);
    expect(SAMPLING_ASSUMPTION).toBe('poisson-add-remove');
    expect(() => rdpSampledGaussian(1.5, 1, 2)).toThrow(/q must be in \[0, 1\]/);
    expect(() => rdpSampledGaussian(0.1, -1, 2)).toThrow(/noise multiplier/);
    expect(() => rdpToEpsilon([2], [1], 0)).toThrow(/delta/);
    expect(() => rdpToEpsilon([2, 3], [1], 1e-5)).toThrow(/2 orders but 1/);
  });
});
