import { beforeEach, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { ABSENT_LOG_PRIOR, logLabelPrior, logitAdjustedCrossentropy } from './loss.ts';
import './wasm-backend.ts';

describe('logLabelPrior', () => {
  it('is log of each class share of the labels, ABSENT_LOG_PRIOR for classes not held', () => {
    expect(Array.from(logLabelPrior([0, 0, 1, 3], 4))).toEqual(
      [Math.log(0.5), Math.log(0.25), ABSENT_LOG_PRIOR, Math.log(0.25)].map(Math.fround),
    );
  });

  it('refuses a label outside the classes', () => {
    expect(() => logLabelPrior([0, 4], 4)).toThrow(/label 4 is outside 0..3/);
    expect(() => logLabelPrior([-1], 4)).toThrow(/outside/);
    expect(() => logLabelPrior([1.5], 4)).toThrow(/outside/);
  });
});

describe('logitAdjustedCrossentropy', () => {
  beforeEach(async () => {
    await tf.setBackend('wasm');
  });
  const loss = (y: number[][], z: number[][], labels: number[], classes: number): number =>
    tf.tidy(
      () =>
        logitAdjustedCrossentropy(
          tf.tensor2d(y),
          tf.tensor2d(z),
          tf.tensor1d(logLabelPrior(labels, classes)),
        ).dataSync()[0],
    );
  const log = (p: number[]): number[] => p.map(Math.log);

  it('known answer: -log(p_y pi_y / sum_c p_c pi_c) for p = softmax(z)', () => {
    // p = [0.5, 0.3, 0.2], pi = [0.25, 0.75, 0], y = 0: -log(0.125 / (0.125 + 0.225)) = log(2.8).
    const labels = [0, 1, 1, 1];
    expect(loss([[1, 0, 0]], [log([0.5, 0.3, 0.2])], labels, 3)).toBeCloseTo(Math.log(2.8), 5);
    // The batch mean: y = 1 on the same logits is -log(0.225 / 0.35).
    const y = [
      [1, 0, 0],
      [0, 1, 0],
    ];
    const z = [log([0.5, 0.3, 0.2]), log([0.5, 0.3, 0.2])];
    expect(loss(y, z, labels, 3)).toBeCloseTo((Math.log(2.8) - Math.log(0.225 / 0.35)) / 2, 5);
  });

  it('with balanced labels it is plain cross-entropy of softmax(z)', () => {
    const z = [
      [1.2, -0.3, 0.4, 2.0],
      [-1.0, 0.5, 0.1, 0.0],
      [0.3, 0.3, -2.0, 1.1],
    ];
    const y = [
      [0, 0, 0, 1],
      [0, 1, 0, 0],
      [1, 0, 0, 0],
    ];
    const plain = tf.tidy(
      () =>
        tf.metrics
          .categoricalCrossentropy(tf.tensor2d(y), tf.softmax(tf.tensor2d(z)))
          .mean()
          .dataSync()[0],
    );
    expect(loss(y, z, [0, 1, 2, 3, 3, 2, 1, 0], 4)).toBeCloseTo(plain, 6);
  });

  it('gradient on the logits is q - y (q = softmax(z + log pi)): exactly zero for classes the client lacks', () => {
    const prior = tf.tensor1d(logLabelPrior([0, 0, 0, 1, 1], 4)); // pi = [0.6, 0.4, 0, 0]
    const y = tf.tensor2d([[0, 1, 0, 0]]);
    const grad = (z: number[]): number[] =>
      Array.from(
        tf
          .grad((logits: tf.Tensor) => logitAdjustedCrossentropy(y, logits, prior))(tf.tensor2d([z]))
          .dataSync(),
      );
    const expected = (z: number[]): number[] => {
      const e = [Math.exp(z[0]) * 0.6, Math.exp(z[1]) * 0.4];
      return [e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1]) - 1, 0, 0];
    };
    // Ordinary logits, then a confidently wrong model: p_y ~ 1e-13 and most of p on an absent class. A
    // loss written on clipped probabilities would push that absent class up; on logits it stays at 0.
    for (const z of [
      [0.7, -0.2, 1.5, 0.1],
      [5, -20, 10, 30],
    ]) {
      const g = grad(z);
      expect(g[0]).toBeCloseTo(expected(z)[0], 6);
      expect(g[1]).toBeCloseTo(expected(z)[1], 6);
      expect(g[2]).toBe(0);
      expect(g[3]).toBe(0);
    }
    // Plain cross-entropy pushes the same absent logits down.
    const plain = tf.grad((logits: tf.Tensor) =>
      tf.metrics.categoricalCrossentropy(y, tf.softmax(logits)).mean(),
    )(tf.tensor2d([[0.7, -0.2, 1.5, 0.1]]));
    expect(plain.dataSync()[2]).toBeGreaterThan(0.1);
    tf.dispose([prior, y, plain]);
  });
});
