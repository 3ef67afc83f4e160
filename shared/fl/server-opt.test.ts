import { describe, expect, it } from 'vitest';
import {
  createServerOptimizer,
  SERVER_OPTIMIZER_DEFAULTS,
  SERVER_OPTIMIZERS,
  type ServerOptimizerName,
} from './server-opt.ts';

const opt = (name: ServerOptimizerName, lr = 0.1, over = {}) =>
  createServerOptimizer({ name, lr, ...SERVER_OPTIMIZER_DEFAULTS, ...over }, 2);
const w = Float32Array.of(1, -1);
const d1 = Float32Array.of(0.2, -0.4);
const d2 = Float32Array.of(-0.1, 0.3);

/** Every expected value below is worked by hand from the update rules (b1 = 0.9, b2 = 0.99, tau = 1e-3, v0 = tau^2). */
describe('server optimizers, against hand-computed steps', () => {
  it('FedAvg: x + lr d', () => {
    const o = opt('fedavg', 0.5);
    expect(Array.from(o.step(w, d1))).toEqual([Math.fround(1.1), Math.fround(-1.2)]);
  });

  it('FedAvgM: m1 = d1, m2 = 0.9 m1 + d2', () => {
    const o = opt('fedavgm', 0.1);
    const x1 = o.step(w, d1); // m = (0.2, -0.4) -> x = (1.02, -1.04)
    expect(x1[0]).toBeCloseTo(1.02, 6);
    expect(x1[1]).toBeCloseTo(-1.04, 6);
    const x2 = o.step(x1, d2); // m = (0.08, -0.06) -> x = (1.028, -1.046)
    expect(x2[0]).toBeCloseTo(1.028, 6);
    expect(x2[1]).toBeCloseTo(-1.046, 6);
  });

  it('FedAdam: first step m = 0.1 d, v = 0.99 tau^2 + 0.01 d^2', () => {
    const o = opt('fedadam', 0.1);
    const x1 = o.step(w, d1);
    // coord 0: m = 0.02, v = 0.99e-6 + 0.01 * 0.04 = 4.0099e-4, sqrt = 0.0200247..., step = 0.02 / 0.0210247 = 0.951261
    expect(x1[0]).toBeCloseTo(1 + 0.1 * (0.02 / (Math.sqrt(4.0099e-4) + 1e-3)), 6);
    expect(x1[0]).toBeCloseTo(1.0951261, 5);
    // coord 1: m = -0.04, v = 0.99e-6 + 0.0016 = 1.60099e-3
    expect(x1[1]).toBeCloseTo(-1 + 0.1 * (-0.04 / (Math.sqrt(1.60099e-3) + 1e-3)), 6);
  });

  it('FedAdagrad: v accumulates d^2', () => {
    const o = opt('fedadagrad', 0.1);
    o.step(w, d1);
    const x2 = o.step(w, d2);
    // coord 0: m2 = 0.9 * 0.02 + 0.1 * -0.1 = 0.008; v2 = 1e-6 + 0.04 + 0.01 = 0.050001
    expect(x2[0]).toBeCloseTo(1 + 0.1 * (0.008 / (Math.sqrt(0.050001) + 1e-3)), 6);
  });

  it('FedYogi: v moves by (1 - b2) d^2 toward d^2 (sign rule)', () => {
    const o = opt('fedyogi', 0.1);
    const x1 = o.step(w, d1);
    // coord 0: v0 = 1e-6 < d^2 = 0.04, so v1 = 1e-6 + 0.01 * 0.04 = 4.01e-4 (increases)
    expect(x1[0]).toBeCloseTo(1 + 0.1 * (0.02 / (Math.sqrt(4.01e-4) + 1e-3)), 6);
    const o2 = opt('fedyogi', 0.1);
    o2.step(w, Float32Array.of(1, 0)); // v = 1e-6 + 0.01 = 0.010001
    const x = o2.step(w, Float32Array.of(0.01, 0)); // v > d^2 = 1e-4: v = 0.010001 - 0.01 * 1e-4 = 0.010000
    const m = 0.9 * 0.1 + 0.1 * 0.01;
    expect(x[0]).toBeCloseTo(1 + 0.1 * (m / (Math.sqrt(0.010001 - 1e-6) + 1e-3)), 6);
  });

  it('refuses unknown names, bad learning rates and wrong lengths', () => {
    expect(() => opt('sgd' as ServerOptimizerName)).toThrow(/unknown/);
    expect(() => opt('fedavg', 0)).toThrow(/> 0/);
    expect(() => opt('fedavg').step(Float32Array.of(1), Float32Array.of(1))).toThrow(/2 values/);
  });

  it.each(SERVER_OPTIMIZERS)(
    '%s: restore(save()) undoes the steps taken since (a discarded model)',
    (name) => {
      const o = opt(name, 0.1);
      o.step(w, d1);
      const saved = o.save();
      const next = o.step(w, d2); // what the step after d1 gives
      o.step(w, d1); // a step whose model is then discarded
      o.restore(saved);
      expect(o.step(w, d2)).toEqual(next);
      // Every method's state differs from this one in m or v.
      expect(() => o.restore({ m: null, v: new Float64Array(2) })).toThrow(/belong/);
    },
  );
});
