/**
 * Gradient kernels that let tfjs' wasm backend train our CNNs, built from kernels it already runs fast
 * (XNNPACK convolutions): tfjs 4.22 ships no Conv2DBackpropFilter for wasm, and its Conv2DBackpropInput is
 * a scalar loop, 8x slower than the equivalent forward convolution.
 *
 * - Conv2DBackpropFilter: dW[i,j,c,o] = sum_{n,h,w} x[n, h*s+i, w*s+j, c] * dy[n,h,w,o] is itself a
 *   convolution: batch <-> channels swapped in x ([C,H,W,N]), dy as the filter ([Ho,Wo,N,O]), the forward
 *   stride as the dilation, the forward padding kept, output [C,KH,KW,O] transposed to [KH,KW,C,O].
 * - Conv2DBackpropInput (stride 1): dx = conv(dy, W rotated 180 degrees with in/out channels swapped),
 *   padded so the output has the input's size. Other strides keep the shipped kernel.
 * - MaxPoolGrad: the shipped kernel takes ~12x the forward pool's time (about a fifth of a training step of
 *   our CNNs). Ours is one pass over the pooling windows, straight on the wasm heap: find each window's
 *   first maximum, add dy there. Same arithmetic, in the same order and precision, as tfjs' cpu kernel, so
 *   the results are identical (ties and -Infinity/NaN windows included).
 * - BatchMatMul with transposeA (a dense layer's weight gradient, x^T dy): the shipped kernel sends it to
 *   a scalar loop (XNNPACK takes no transposed input), 1.1 ms for one image through `small`'s 2048x64
 *   dense layer. We transpose a with the Transpose kernel and take the XNNPACK path: 0.46 ms.
 * - GatherV2 along axis 0 (a training batch taken from the client's examples): the shipped kernel copies
 *   element by element, 5.5 ms for 32 CIFAR images (~10% of a step). Ours copies whole rows on the heap.
 */
import * as tf from '@tensorflow/tfjs';
import type { DataId, KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';

interface WasmLikeBackend {
  disposeData(dataId: DataId): boolean;
}

/** The parts of tfjs' BackendWasm that a kernel writing the heap directly needs. */
interface WasmHeapBackend extends WasmLikeBackend {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}

/** The same, for kernels that copy int32 as well as float32 (a view of the tensor's own dtype). */
interface WasmRowBackend extends WasmLikeBackend {
  makeOutput(shape: number[], dtype: 'float32' | 'int32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array;
}

type Pad =
  'valid' | 'same' | number | [[number, number], [number, number], [number, number], [number, number]];
type Explicit = [[number, number], [number, number], [number, number], [number, number]];

const BACKEND = 'wasm';

function kernel(name: string): KernelFunc {
  const k = tf.getKernel(name, BACKEND);
  if (!k) throw new Error(`wasm backend has no "${name}" kernel; is @tensorflow/tfjs-backend-wasm loaded?`);
  return k.kernelFunc;
}

/** Runs one wasm kernel by name. */
function run(
  name: string,
  backend: WasmLikeBackend,
  inputs: Record<string, TensorInfo> | TensorInfo[],
  attrs: NamedAttrMap = {},
): TensorInfo {
  return kernel(name)({ inputs: inputs as never, backend: backend as never, attrs }) as TensorInfo;
}

function dispose(backend: WasmLikeBackend, keep: TensorInfo, ...tensors: TensorInfo[]): void {
  for (const t of new Set(tensors)) if (t.dataId !== keep.dataId) backend.disposeData(t.dataId);
}

function checkNhwc(kernelName: string, dataFormat: unknown): void {
  if (dataFormat !== undefined && dataFormat !== 'NHWC')
    throw new Error(`${kernelName} on wasm supports NHWC only, got ${String(dataFormat)}`);
}

function convInfo(xShape: number[], filterShape: number[], attrs: NamedAttrMap) {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
    false,
    'channelsLast',
  );
}

/** Keeps rows [0, keep) of axis 1 and columns [0, keepW) of axis 2 of an NHWC tensor (when padding would be negative). */
function crop(backend: WasmLikeBackend, x: TensorInfo, keepH: number, keepW: number): TensorInfo {
  if (keepH === x.shape[1] && keepW === x.shape[2]) return x;
  return run('Slice', backend, { x }, { begin: [0, 0, 0, 0], size: [x.shape[0], keepH, keepW, x.shape[3]] });
}

export const conv2DBackpropFilter: KernelFunc = ({ inputs, backend, attrs = {} }) => {
  const be = backend as unknown as WasmLikeBackend;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  checkNhwc('Conv2DBackpropFilter', attrs.dataFormat);
  const info = convInfo(x.shape, attrs.filterShape as number[], attrs);
  const {
    filterHeight: kh,
    filterWidth: kw,
    outHeight: ho,
    outWidth: wo,
    strideHeight: sh,
    strideWidth: sw,
    inHeight: h,
    inWidth: w,
  } = info;
  const { top, left } = info.padInfo;
  // Output rows of the swapped convolution, h + top + bottom - (ho-1)*sh, must equal kh.
  let bottom = kh + (ho - 1) * sh - h - top;
  let right = kw + (wo - 1) * sw - w - left;
  const xt = run('Transpose', be, { x }, { perm: [3, 1, 2, 0] });
  // Rows the forward pass never reached (valid padding, stride > 1) are cut rather than padded negatively.
  const xc = crop(be, xt, h + Math.min(0, bottom), w + Math.min(0, right));
  bottom = Math.max(0, bottom);
  right = Math.max(0, right);
  const f = run('Transpose', be, { x: dy }, { perm: [1, 2, 0, 3] });
  const pad: Explicit = [
    [0, 0],
    [top, bottom],
    [left, right],
    [0, 0],
  ];
  const c = run(
    'Conv2D',
    be,
    { x: xc, filter: f },
    { strides: 1, pad, dataFormat: 'NHWC', dilations: [sh, sw], dimRoundingMode: 'floor' },
  );
  const out = run('Transpose', be, { x: c }, { perm: [1, 2, 0, 3] });
  dispose(be, out, xt, xc, f, c);
  return out;
};

function conv2DBackpropInputVia(original: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs = {} } = args;
    const be = backend as unknown as WasmLikeBackend;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    checkNhwc('Conv2DBackpropInput', attrs.dataFormat);
    const info = convInfo(attrs.inputShape as number[], filter.shape, attrs);
    const { filterHeight: kh, filterWidth: kw, outHeight: ho, outWidth: wo, inHeight: h, inWidth: w } = info;
    const top = kh - 1 - info.padInfo.top;
    const left = kw - 1 - info.padInfo.left;
    const bottom = h + kh - 1 - ho - top;
    const right = w + kw - 1 - wo - left;
    // Strided gradients need dy dilated with zeros, which has no fast wasm kernel: keep the shipped one.
    if (info.strideHeight !== 1 || info.strideWidth !== 1 || Math.min(top, left, bottom, right) < 0)
      return original(args);
    const rot = run('Reverse', be, { x: filter }, { dims: [0, 1] });
    const wt = run('Transpose', be, { x: rot }, { perm: [0, 1, 3, 2] });
    const pad: Explicit = [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ];
    const out = run(
      'Conv2D',
      be,
      { x: dy, filter: wt },
      { strides: 1, pad, dataFormat: 'NHWC', dilations: 1, dimRoundingMode: 'floor' },
    );
    dispose(be, out, rot, wt);
    return out;
  };
}

/**
 * dx of a 2-D max pool (NHWC, float32): for each window in (batch, row, column, channel) order, the first
 * strictly greatest input gets the window's dy added. No gradient for a window without one (all NaN or
 * -Infinity), as in tfjs' cpu kernel.
 */
export const maxPoolGrad: KernelFunc = ({ inputs, backend, attrs = {} }) => {
  const be = backend as unknown as WasmHeapBackend;
  const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
  if (input.dtype !== 'float32' || dy.dtype !== 'float32')
    throw new Error(`MaxPoolGrad on wasm supports float32 only, got ${input.dtype}`);
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
  );
  const { batchSize, inHeight: h, inWidth: w, inChannels: c, outHeight: ho, outWidth: wo } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  // Allocate first: a heap that grows detaches views taken before.
  const out = be.makeOutput(input.shape, 'float32');
  const dx = be.typedArrayFromHeap(out);
  const x = be.typedArrayFromHeap(input);
  const g = be.typedArrayFromHeap(dy);
  // Overlapping windows can send several dy to one input: sum them in float64 as the cpu kernel does.
  const overlap = sh < fh || sw < fw;
  const acc: Float32Array | Float64Array = overlap ? new Float64Array(dx.length) : dx.fill(0);
  const best = new Float32Array(c);
  const at = new Int32Array(c);
  for (let b = 0; b < batchSize; b++) {
    const xb = b * h * w * c;
    for (let yr = 0; yr < ho; yr++) {
      const r0 = yr * sh - top;
      const rMin = Math.max(0, r0);
      const rMax = Math.min(h, r0 + fh);
      for (let yc = 0; yc < wo; yc++) {
        const c0 = yc * sw - left;
        const cMin = Math.max(0, c0);
        const cMax = Math.min(w, c0 + fw);
        const gy = ((b * ho + yr) * wo + yc) * c;
        // Channels innermost: contiguous reads. Row-major window order keeps the first maximum on ties.
        best.fill(-Infinity);
        at.fill(-1);
        for (let r = rMin; r < rMax; r++) {
          for (let col = cMin; col < cMax; col++) {
            const base = xb + (r * w + col) * c;
            for (let d = 0; d < c; d++) {
              const v = x[base + d];
              if (v > best[d]) {
                best[d] = v;
                at[d] = base + d;
              }
            }
          }
        }
        for (let d = 0; d < c; d++) if (at[d] >= 0) acc[at[d]] += g[gy + d];
      }
    }
  }
  if (overlap) dx.set(acc);
  return out;
};

/** BatchMatMul with transposeA as Transpose + the shipped kernel's fast (untransposed-a) path. */
function batchMatMulVia(original: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs = {} } = args;
    if (!attrs.transposeA) return original(args);
    const be = backend as unknown as WasmLikeBackend;
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const r = a.shape.length;
    const inner = a.shape[r - 2];
    const innerB = attrs.transposeB ? b.shape[b.shape.length - 1] : b.shape[b.shape.length - 2];
    // What the shipped kernel refuses (with its own message) or does not run through XNNPACK (an empty
    // inner dimension, whose output XNNPACK leaves unwritten) stays with it.
    if (r < 2 || inner !== innerB || !(inner > 0) || a.dtype !== 'float32' || b.dtype !== 'float32')
      return original(args);
    const perm = [...a.shape.keys()];
    [perm[r - 2], perm[r - 1]] = [r - 1, r - 2];
    const at = run('Transpose', be, { x: a }, { perm });
    try {
      return original({
        ...args,
        inputs: { a: at, b },
        attrs: { ...attrs, transposeA: false },
      }) as TensorInfo;
    } finally {
      be.disposeData(at.dataId);
    }
  };
}

/** GatherV2 of whole rows (axis 0, no batch dims) as row copies on the heap; anything else: the shipped kernel. */
function gatherV2Via(original: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs = {} } = args;
    const be = backend as unknown as WasmRowBackend;
    const { x, indices } = inputs as { x: TensorInfo; indices: TensorInfo };
    const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
    if (
      axis !== 0 ||
      (attrs.batchDims ?? 0) !== 0 ||
      indices.dtype !== 'int32' ||
      (x.dtype !== 'float32' && x.dtype !== 'int32')
    )
      return original(args);
    // Empty x or indices need no special case: no rows to copy, or every index refused (rows = 0), with
    // the cpu kernel's output shape (the shipped kernel returns its flattened 4-d shape for an empty x).
    const rows = x.shape[0];
    const row = tf.util.sizeFromShape(x.shape.slice(1));
    // Allocate first: a heap that grows detaches views taken before.
    const out = be.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    const idx = be.typedArrayFromHeap(indices) as Int32Array;
    // The shipped kernel's check and message: an index outside the rows is an error, never a read past them.
    for (const i of idx)
      if (!(i >= 0 && i <= rows - 1)) {
        be.disposeData(out.dataId);
        throw new Error(`GatherV2: the index value ${i} is not in [0, ${rows - 1}]`);
      }
    const src = be.typedArrayFromHeap(x);
    const dst = be.typedArrayFromHeap(out);
    for (let k = 0; k < idx.length; k++) dst.set(src.subarray(idx[k] * row, (idx[k] + 1) * row), k * row);
    return out;
  };
}

let registered = false;

/**
 * Registers the kernels above for the wasm backend (idempotent). Call after importing
 * @tensorflow/tfjs-backend-wasm; before or after the backend initialises.
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  const input = tf.getKernel('Conv2DBackpropInput', BACKEND);
  if (!input)
    throw new Error(
      'register the wasm backend (import @tensorflow/tfjs-backend-wasm) before its training kernels',
    );
  if (!tf.getKernel('Conv2DBackpropFilter', BACKEND)) {
    tf.registerKernel({
      kernelName: 'Conv2DBackpropFilter',
      backendName: BACKEND,
      kernelFunc: conv2DBackpropFilter,
    });
  }
  const pool = tf.getKernel('MaxPoolGrad', BACKEND);
  if (pool) tf.unregisterKernel('MaxPoolGrad', BACKEND);
  tf.registerKernel({ kernelName: 'MaxPoolGrad', backendName: BACKEND, kernelFunc: maxPoolGrad });
  // Replacing keeps the shipped setupFunc (it binds the wasm export the fallback calls).
  const replacement: KernelConfig = { ...input, kernelFunc: conv2DBackpropInputVia(input.kernelFunc) };
  tf.unregisterKernel('Conv2DBackpropInput', BACKEND);
  tf.registerKernel(replacement);
  const matMul = tf.getKernel('BatchMatMul', BACKEND);
  if (matMul) {
    tf.unregisterKernel('BatchMatMul', BACKEND);
    tf.registerKernel({ ...matMul, kernelFunc: batchMatMulVia(matMul.kernelFunc) });
  }
  const gather = tf.getKernel('GatherV2', BACKEND);
  if (gather) {
    tf.unregisterKernel('GatherV2', BACKEND);
    tf.registerKernel({ ...gather, kernelFunc: gatherV2Via(gather.kernelFunc) });
  }
  registered = true;
}
