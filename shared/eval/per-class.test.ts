import { describe, expect, it } from 'vitest';
import { createRng } from '../data/rng.ts';
import { classResults, confusionMatrix, perClassAccuracy } from './per-class.ts';

const i32 = (a: number[]): Int32Array => Int32Array.from(a);

describe('confusion matrix and per-class accuracy', () => {
  it('known answer: 3 classes', () => {
    // true:  0 0 0 1 1 2
    // pred:  0 1 0 1 2 2
    const m = confusionMatrix(i32([0, 0, 0, 1, 1, 2]), i32([0, 1, 0, 1, 2, 2]), 3);
    expect(Array.from(m)).toEqual([2, 1, 0, 0, 1, 1, 0, 0, 1]);
    expect(perClassAccuracy(m, 3)).toEqual([2 / 3, 1 / 2, 1]);
  });

  it('a class absent from the test set has no accuracy (null), not 0', () => {
    const r = classResults(i32([0, 0, 2]), i32([0, 1, 1]), 3);
    expect(r.perClass).toEqual([0.5, null, 0]);
    expect(r.confusion).toEqual([
      [1, 1, 0],
      [0, 0, 0],
      [0, 1, 0],
    ]);
  });

  it('properties on random labels: cells sum to n, rows to class counts, the trace to the correct count', () => {
    const rng = createRng(7);
    const k = 10;
    const n = 1000;
    const labels = new Int32Array(n);
    const preds = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      labels[i] = Math.floor(rng.next() * k);
      preds[i] = rng.next() < 0.4 ? labels[i] : Math.floor(rng.next() * k);
    }
    const { confusion, perClass } = classResults(labels, preds, k);
    expect(confusion.flat().reduce((a, b) => a + b, 0)).toBe(n);
    let correct = 0;
    for (let i = 0; i < n; i++) if (labels[i] === preds[i]) correct++;
    expect(confusion.reduce((s, row, t) => s + row[t], 0)).toBe(correct);
    for (let t = 0; t < k; t++) {
      const count = labels.filter((l) => l === t).length;
      expect(confusion[t].reduce((a, b) => a + b, 0)).toBe(count);
      expect(perClass[t]).toBeCloseTo(confusion[t][t] / count, 12);
    }
  });

  it('rejects mismatched lengths, out-of-range labels and a bad class count', () => {
    expect(() => confusionMatrix(i32([0]), i32([0, 1]), 2)).toThrow(/1 labels but 2 predictions/);
    expect(() => confusionMatrix(i32([2]), i32([0]), 2)).toThrow(/label 2 or prediction 0 outside 0..1/);
    expect(() => confusionMatrix(i32([0]), i32([-1]), 2)).toThrow(/outside/);
    expect(() => confusionMatrix(i32([]), i32([]), 0)).toThrow(/numClasses/);
    expect(() => confusionMatrix(i32([]), i32([]), 101)).toThrow(/numClasses/);
    expect(() => perClassAccuracy(new Int32Array(5), 2)).toThrow(/4 cells, got 5/);
  });
});
