import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { createRng } from '../shared/data/rng.ts';
import { buildModel } from '../shared/model/build.ts';
import { MODELS, type ModelSpec } from '../shared/model/spec.ts';
import { registerWasmTrainingKernels } from './wasm-train-kernels.ts';

type Attrs = Record<string, unknown>;

/** Buffers the backend holds: one per live tensor unless a kernel leaked an intermediate. */
const dataIds = (): number => (tf.backend() as unknown as { numDataIds(): number }).numDataIds();

function randomTensor(shape: number[], seed: number): tf.Tensor {
  const rng = createRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => rng.next() * 2 - 1),
    shape,
  );
}

/** Runs one kernel on `backend` with copies of the given host arrays; returns the output values. */
async function runOn(
  backend: string,
  kernelName: string,
  inputs: Record<string, { data: Float32Array; shape: number[] }>,
  attrs: Attrs,
): Promise<{ data: Float32Array; shape: number[] }> {
  await tf.setBackend(backend);
  const ts = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  const out = tf.engine().runKernel(kernelName, ts, attrs as never) as tf.Tensor;
  const r = { data: (await out.data()) as Float32Array, shape: out.shape };
  tf.dispose([out, ...Object.values(ts)]);
  return r;
}

async function host(t: tf.Tensor): Promise<{ data: Float32Array; shape: number[] }> {
  const r = { data: (await t.data()) as Float32Array, shape: t.shape };
  t.dispose();
  return r;
}

/** max |a - b| / max(1, max |b|): float32 sums of hundreds of products differ in the last bits. */
function relErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let e = 0;
  let m = 1;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return e / m;
}

interface ConvCase {
  x: [number, number, number, number];
  f: [number, number, number, number];
  strides: number | [number, number];
  pad: 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
}

const CASES: ConvCase[] = [
  { x: [4, 8, 8, 3], f: [3, 3, 3, 5], strides: 1, pad: 'same' },
  { x: [4, 8, 8, 3], f: [3, 3, 3, 5], strides: 1, pad: 'valid' },
  { x: [2, 9, 7, 4], f: [3, 3, 4, 6], strides: 2, pad: 'same' },
  { x: [2, 9, 9, 4], f: [3, 3, 4, 6], strides: 2, pad: 'valid' }, // last row never reached: the kernel crops
  { x: [3, 10, 6, 2], f: [5, 3, 2, 3], strides: [1, 2], pad: 'same' },
  { x: [2, 7, 7, 3], f: [1, 1, 3, 8], strides: 1, pad: 'valid' },
  {
    x: [2, 6, 6, 2],
    f: [3, 3, 2, 4],
    strides: 1,
    pad: [
      [0, 0],
      [2, 0],
      [1, 2],
      [0, 0],
    ],
  },
  { x: [8, 16, 16, 16], f: [3, 3, 16, 32], strides: 1, pad: 'same' }, // the small model's second layer
];

describe('wasm training kernels', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('stock wasm cannot differentiate a convolution (the reason these kernels exist)', async () => {
    await tf.setBackend('wasm');
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
    const x = tf.ones([1, 4, 4, 1]);
    const f = tf.ones([3, 3, 1, 1]);
    expect(() =>
      tf.grad((w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same').sum())(f),
    ).toThrow(/Conv2DBackpropFilter/);
    tf.dispose([x, f]);
    registerWasmTrainingKernels();
    registerWasmTrainingKernels(); // idempotent
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  it.each(CASES)('Conv2DBackpropFilter and Conv2DBackpropInput match the cpu backend: x %j', async (c) => {
    registerWasmTrainingKernels();
    await tf.setBackend('cpu');
    const outShape = tf.tidy(
      () => tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.f) as tf.Tensor4D, c.strides, c.pad).shape,
    );
    const x = await host(randomTensor(c.x, 1));
    const w = await host(randomTensor(c.f, 2));
    const dy = await host(randomTensor(outShape, 3));
    const common = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
    const fAttrs = { ...common, filterShape: c.f };
    const gwCpu = await runOn('cpu', 'Conv2DBackpropFilter', { x, dy }, fAttrs);
    const gwWasm = await runOn('wasm', 'Conv2DBackpropFilter', { x, dy }, fAttrs);
    expect(gwWasm.shape).toEqual(c.f);
    expect(relErr(gwWasm.data, gwCpu.data)).toBeLessThan(1e-5);
    const iAttrs = { ...common, inputShape: c.x };
    const gxCpu = await runOn('cpu', 'Conv2DBackpropInput', { dy, filter: w }, iAttrs);
    const gxWasm = await runOn('wasm', 'Conv2DBackpropInput', { dy, filter: w }, iAttrs);
    expect(gxWasm.shape).toEqual(c.x);
    expect(relErr(gxWasm.data, gxCpu.data)).toBeLessThan(1e-5);
  });

  it.each([
    { a: [1, 2048], b: [1, 64], ta: true, tb: false }, // small's dense weight gradient, one image
    { a: [32, 50], b: [32, 7], ta: true, tb: false },
    { a: [9, 5], b: [7, 9], ta: true, tb: true },
    { a: [3, 6, 4], b: [3, 6, 5], ta: true, tb: false }, // batched
    { a: [2, 4, 6], b: [2, 5, 6], ta: false, tb: true }, // untransposed a: the shipped kernel as it is
  ])('BatchMatMul with transposeA matches the cpu backend and frees its transpose: %j', async (c) => {
    registerWasmTrainingKernels();
    const a = await host(randomTensor(c.a, 21));
    const b = await host(randomTensor(c.b, 22));
    const attrs = { transposeA: c.ta, transposeB: c.tb };
    const cpu = await runOn('cpu', 'BatchMatMul', { a, b }, attrs);
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    const wasm = await runOn('wasm', 'BatchMatMul', { a, b }, attrs);
    expect(wasm.shape).toEqual(cpu.shape);
    expect(relErr(wasm.data, cpu.data)).toBeLessThan(1e-5);
    expect(tf.memory().numTensors).toBe(before);
    expect(dataIds()).toBe(tf.memory().numTensors);
  });

  it('BatchMatMul with transposeA: an empty inner dimension gives zeros, a shape mismatch throws and leaks nothing', async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
    const before = dataIds();
    const [e4, e5] = [tf.zeros([0, 4]), tf.zeros([0, 5])];
    const z = tf.matMul(e4, e5, true);
    expect(z.shape).toEqual([4, 5]);
    expect(Array.from(await z.data())).toEqual(new Array(20).fill(0));
    tf.dispose([z, e4, e5]);
    const [a, b] = [tf.ones([3, 4]), tf.ones([5, 6])];
    expect(() => tf.matMul(a, b, true)).toThrow(/3,4 and 5,6 and transposeA=true/);
    tf.dispose([a, b]);
    expect(dataIds()).toBe(before);
  });

  it.each([
    { x: [6, 4, 4, 3], idx: [5, 0, 0, 3], axis: 0 }, // a batch of images, one twice
    {
      x: [10, 7],
      idx: [
        [9, 1],
        [2, 2],
      ],
      axis: 0,
    }, // 2-d indices
    { x: [5], idx: [4, 1], axis: -1 }, // rank 1: axis -1 is axis 0
    { x: [5, 0], idx: [1, 2], axis: 0 }, // empty rows
    { x: [0, 3], idx: [], axis: 0 }, // no rows, no indices
    { x: [4, 6], idx: [5, 0], axis: 1 }, // another axis: the shipped kernel as it is
  ])('GatherV2 matches the cpu backend bit for bit and leaks nothing: %j', async (c) => {
    registerWasmTrainingKernels();
    const x = await host(randomTensor(c.x, 31));
    const gatherOn = async (backend: string): Promise<{ data: Float32Array; shape: number[] }> => {
      await tf.setBackend(backend);
      const [xt, it] = [tf.tensor(x.data, x.shape), tf.tensor(c.idx, undefined, 'int32')];
      const out = tf.gather(xt, it, c.axis);
      const r = { data: (await out.data()) as Float32Array, shape: out.shape };
      tf.dispose([xt, it, out]);
      return r;
    };
    const cpu = await gatherOn('cpu');
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    const wasm = await gatherOn('wasm');
    expect(wasm.shape).toEqual(cpu.shape);
    expect(Array.from(wasm.data)).toEqual(Array.from(cpu.data));
    expect(tf.memory().numTensors).toBe(before);
    expect(dataIds()).toBe(tf.memory().numTensors);
  });

  it('GatherV2 copies int32 rows and refuses an index outside the rows, leaking nothing', async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32');
    const g = tf.gather(x, tf.tensor1d([2, 0], 'int32'));
    expect(g.dtype).toBe('int32');
    expect(Array.from(await g.data())).toEqual([5, 6, 1, 2]);
    g.dispose();
    const bad = [3, -1].map((b) => tf.tensor1d([0, b], 'int32'));
    const before = dataIds();
    for (const [k, b] of [3, -1].entries())
      expect(() => tf.gather(x, bad[k])).toThrow(new RegExp(`index value ${b} is not in \\[0, 2\\]`));
    expect(dataIds()).toBe(before); // the output the kernel made before it checked is freed
    tf.dispose(bad);
    x.dispose();
  });

  it('the kernels free every intermediate they allocate', async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
    const x = randomTensor([2, 8, 8, 3], 4);
    const dy = randomTensor([2, 8, 8, 5], 5);
    const w = randomTensor([3, 3, 3, 5], 6);
    const before = tf.memory().numBytes;
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC' };
    for (let i = 0; i < 3; i++) {
      tf.dispose(
        tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
          ...attrs,
          filterShape: [3, 3, 3, 5],
        } as never) as tf.Tensor,
      );
      tf.dispose(
        tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, {
          ...attrs,
          inputShape: [2, 8, 8, 3],
        } as never) as tf.Tensor,
      );
    }
    const px = randomTensor([2, 8, 8, 3], 7);
    const pdy = randomTensor([2, 4, 4, 3], 8);
    for (let i = 0; i < 3; i++)
      tf.dispose(
        tf.engine().runKernel('MaxPoolGrad', { dy: pdy, input: px, output: pdy }, {
          filterSize: 2,
          strides: 2,
          pad: 'valid',
        } as never) as tf.Tensor,
      );
    tf.dispose([px, pdy]);
    expect(tf.memory().numBytes).toBe(before);
    // The wasm heap's own tensor table agrees: no data ids leaked inside the backend.
    expect(dataIds()).toBe(tf.memory().numTensors);
    tf.dispose([x, dy, w]);
  });

  interface PoolCase {
    x: [number, number, number, number];
    filterSize: number | [number, number];
    strides: number | [number, number];
    pad: 'same' | 'valid';
    /** Values drawn from this few levels: ties inside windows. */
    levels?: number;
  }
  const POOLS: PoolCase[] = [
    { x: [4, 32, 32, 16], filterSize: 2, strides: 2, pad: 'valid' }, // the models' first pool
    { x: [3, 16, 16, 8], filterSize: 2, strides: 2, pad: 'valid', levels: 3 }, // many ties
    { x: [2, 9, 7, 5], filterSize: 2, strides: 2, pad: 'valid' }, // odd sizes: last row/column unused
    { x: [2, 9, 7, 5], filterSize: 2, strides: 2, pad: 'same', levels: 4 },
    { x: [2, 11, 10, 3], filterSize: 3, strides: 2, pad: 'same', levels: 5 }, // overlapping windows
    { x: [1, 8, 9, 4], filterSize: [3, 2], strides: [1, 2], pad: 'valid', levels: 2 },
    { x: [2, 5, 5, 6], filterSize: 3, strides: 1, pad: 'same' },
  ];

  it.each(POOLS)('MaxPoolGrad equals the cpu backend bit for bit: x %j', async (c) => {
    registerWasmTrainingKernels();
    const rng = createRng(c.x.reduce((a, b) => a * 31 + b, 7));
    const n = c.x.reduce((a, b) => a * b, 1);
    const xData = Float32Array.from({ length: n }, () =>
      c.levels ? Math.floor(rng.next() * c.levels) : rng.next() * 2 - 1,
    );
    await tf.setBackend('cpu');
    const attrs = { filterSize: c.filterSize, strides: c.strides, pad: c.pad, dimRoundingMode: undefined };
    const y = await host(
      tf.engine().runKernel('MaxPool', { x: tf.tensor(xData, c.x) }, attrs as never) as tf.Tensor,
    );
    const dy = await host(randomTensor(y.shape, 11));
    const inputs = { dy, input: { data: xData, shape: c.x }, output: y };
    const cpu = await runOn('cpu', 'MaxPoolGrad', inputs, attrs);
    const wasm = await runOn('wasm', 'MaxPoolGrad', inputs, attrs);
    expect(wasm.shape).toEqual(c.x);
    expect(wasm.data).toEqual(cpu.data);
    // Every window's dy landed somewhere: the gradient is not trivially zero.
    expect(cpu.data.some((v) => v !== 0)).toBe(true);
  });

  it('MaxPoolGrad gives windows without a maximum (all -Infinity or NaN) no gradient, as cpu does', async () => {
    registerWasmTrainingKernels();
    const xData = Float32Array.from([-Infinity, -Infinity, -Infinity, -Infinity, NaN, NaN, NaN, NaN]);
    const x = { data: xData, shape: [1, 2, 4, 1] };
    const dy = { data: Float32Array.from([5, 7]), shape: [1, 1, 2, 1] };
    const attrs = { filterSize: 2, strides: 2, pad: 'valid', dimRoundingMode: undefined };
    const inputs = { dy, input: x, output: { data: new Float32Array(2), shape: [1, 1, 2, 1] } };
    const cpu = await runOn('cpu', 'MaxPoolGrad', inputs, attrs);
    const wasm = await runOn('wasm', 'MaxPoolGrad', inputs, attrs);
    expect(wasm.data).toEqual(cpu.data);
    expect(Array.from(wasm.data)).toEqual(new Array(8).fill(0));
  });

  async function modelGrads(spec: ModelSpec, backend: string): Promise<Float32Array[]> {
    await tf.setBackend(backend);
    const model = buildModel(spec, 9);
    const x = randomTensor([3, 32, 32, 3], 10);
    const y = tf.oneHot(tf.tensor1d([0, 5, 9], 'int32'), 10);
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const { grads } = tf.variableGrads(
      () =>
        tf.metrics
          .categoricalCrossentropy(y, model.apply(x, { training: true }) as tf.Tensor)
          .mean() as tf.Scalar,
      vars,
    );
    const out = await Promise.all(vars.map((v) => grads[v.name].data() as Promise<Float32Array>));
    tf.dispose([x, y, ...Object.values(grads)]);
    model.dispose();
    return out;
  }

  it.each(['tiny', 'small', 'medium'])(
    'every gradient of the %s model on wasm matches the cpu backend',
    async (name) => {
      registerWasmTrainingKernels();
      const cpu = await modelGrads(MODELS[name], 'cpu');
      const wasm = await modelGrads(MODELS[name], 'wasm');
      expect(wasm).toHaveLength(cpu.length);
      cpu.forEach((g, i) => expect(relErr(wasm[i], g), `weight ${i}`).toBeLessThan(1e-4));
      // Not all zero: the comparison is of real gradients.
      expect(cpu.every((g) => g.some((v) => v !== 0))).toBe(true);
    },
  );
});
