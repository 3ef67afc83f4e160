import { checkDataset, toFloat, type Dataset } from './dataset.ts';

/**
 * Examples of any task: n rows of prod(inputShape) float32 features, and n integer labels. What a host
 * page's data provider gives (join({ data })), and what non-image tasks train and evaluate on.
 */
export interface Examples {
  readonly x: Float32Array;
  readonly y: Int32Array;
  readonly n: number;
}

/** One example as a page holds it: its features (flattened, row-major) and its class. */
export interface Example {
  readonly x: ArrayLike<number>;
  readonly y: number;
}

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Checks examples against a task's shape and classes: lengths, finite features, labels in range. */
export function checkExamples(e: Examples, inputShape: readonly number[], numClasses: number): Examples {
  const d = size(inputShape);
  if (!Number.isInteger(e.n) || e.n < 1) throw new RangeError('there must be at least one example');
  if (!(e.x instanceof Float32Array) || e.x.length !== e.n * d)
    throw new RangeError(`features must be a Float32Array of ${e.n} x ${d} values`);
  if (!(e.y instanceof Int32Array) || e.y.length !== e.n)
    throw new RangeError(`labels must be an Int32Array of ${e.n} values`);
  for (let i = 0; i < e.x.length; i++)
    if (!Number.isFinite(e.x[i]))
      throw new RangeError(`example ${Math.floor(i / d)} has a feature that is not finite`);
  for (let i = 0; i < e.n; i++)
    if (!(e.y[i] >= 0 && e.y[i] < numClasses))
      throw new RangeError(`example ${i} has label ${e.y[i]}, outside 0..${numClasses - 1}`);
  return e;
}

/** Packs a page's array of examples (each of prod(inputShape) features) into Examples, checked. */
export function packExamples(
  list: readonly Example[],
  inputShape: readonly number[],
  numClasses: number,
): Examples {
  if (!Array.isArray(list)) throw new TypeError('data() must resolve to an array of { x, y } examples');
  const d = size(inputShape);
  const x = new Float32Array(list.length * d);
  const y = new Int32Array(list.length);
  list.forEach((ex, i) => {
    if (!ex || typeof ex !== 'object' || ex.x?.length !== d)
      throw new RangeError(`example ${i} must have ${d} features (inputShape [${inputShape.join(', ')}])`);
    if (!Number.isInteger(ex.y)) throw new RangeError(`example ${i} has a label that is not an integer`);
    for (let j = 0; j < d; j++) x[i * d + j] = ex.x[j];
    y[i] = ex.y;
  });
  return checkExamples({ x, y, n: list.length }, inputShape, numClasses);
}

/** CIFAR-style images (bytes) as Examples: features scaled to [0, 1], the model's input convention. */
export function examplesFromDataset(d: Dataset): Examples {
  checkDataset(d);
  return { x: toFloat(d.x), y: Int32Array.from(d.y), n: d.n };
}
