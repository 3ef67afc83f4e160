/**
 * Per-class results of an evaluation: the confusion matrix and each class's accuracy (recall), from the
 * true and predicted labels. Pure, over typed arrays, so the server computes it with every evaluation and
 * the page or a script can recompute it.
 */

/** The most classes a confusion matrix is built for (its size is the square of this). */
export const MAX_CLASSES = 100;

export interface ClassResults {
  numClasses: number;
  /** confusion[t][p]: test examples of true class t predicted as class p. */
  confusion: number[][];
  /** Accuracy on each class's examples; null for a class with none in the test set. */
  perClass: (number | null)[];
}

/** Row-major numClasses x numClasses counts: cell t * numClasses + p counts examples of class t predicted p. */
export function confusionMatrix(labels: Int32Array, preds: Int32Array, numClasses: number): Int32Array {
  if (!Number.isInteger(numClasses) || numClasses < 1 || numClasses > MAX_CLASSES)
    throw new RangeError(`numClasses must be a whole number in 1..${MAX_CLASSES}, got ${numClasses}`);
  if (labels.length !== preds.length)
    throw new RangeError(`${labels.length} labels but ${preds.length} predictions`);
  const m = new Int32Array(numClasses * numClasses);
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i];
    const p = preds[i];
    if (t < 0 || t >= numClasses || p < 0 || p >= numClasses)
      throw new RangeError(`example ${i}: label ${t} or prediction ${p} outside 0..${numClasses - 1}`);
    m[t * numClasses + p]++;
  }
  return m;
}

/** Each class's accuracy from a confusion matrix: its diagonal cell over its row; null for an empty row. */
export function perClassAccuracy(matrix: Int32Array, numClasses: number): (number | null)[] {
  if (matrix.length !== numClasses * numClasses)
    throw new RangeError(`a ${numClasses}-class matrix has ${numClasses ** 2} cells, got ${matrix.length}`);
  const out: (number | null)[] = [];
  for (let t = 0; t < numClasses; t++) {
    let row = 0;
    for (let p = 0; p < numClasses; p++) row += matrix[t * numClasses + p];
    out.push(row === 0 ? null : matrix[t * numClasses + t] / row);
  }
  return out;
}

/** Both, as plain arrays (what JSON carries). */
export function classResults(labels: Int32Array, preds: Int32Array, numClasses: number): ClassResults {
  const m = confusionMatrix(labels, preds, numClasses);
  const confusion: number[][] = [];
  for (let t = 0; t < numClasses; t++)
    confusion.push(Array.from(m.subarray(t * numClasses, (t + 1) * numClasses)));
  return { numClasses, confusion, perClass: perClassAccuracy(m, numClasses) };
}
