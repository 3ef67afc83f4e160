import { afterEach, describe, expect, it, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { silenceTfjsNodeBanner } from './tfjs-banner.ts';

type CpuBackend = tf.KernelBackend & { write(v: Float32Array, shape: number[], dtype: 'float32'): unknown };

const BANNER = /running TensorFlow\.js in Node\.js/;

describe("tfjs' Node.js banner", () => {
  afterEach(() => vi.restoreAllMocks());

  it('a stock cpu backend prints it on its first tensor; the registered one, once silenced, does not', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    // tfjs' own factory, before anything silenced it: what every Node process would get.
    const stock = tf.engine().registryFactory['cpu'].factory() as CpuBackend;
    stock.write(new Float32Array([1]), [1], 'float32');
    expect(warn.mock.calls.flat().join('\n')).toMatch(BANNER); // the check can fail
    warn.mockClear();

    silenceTfjsNodeBanner();
    silenceTfjsNodeBanner(); // idempotent
    const made = tf.engine().registryFactory['cpu'].factory() as CpuBackend;
    made.write(new Float32Array([1]), [1], 'float32');
    made.write(new Float32Array([2]), [1], 'float32');
    expect(warn).not.toHaveBeenCalled();
    made.dispose();
    stock.dispose();
  });

  it('tfjs on the cpu backend still computes, and other warnings still print', async () => {
    silenceTfjsNodeBanner();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    await tf.setBackend('cpu');
    expect(Array.from(await tf.add(tf.tensor([1, 2]), tf.tensor([3, 4])).data())).toEqual([4, 6]);
    expect(warn.mock.calls.flat().join('\n')).not.toMatch(BANNER);
    tf.backend_util.warn('another warning');
    expect(warn).toHaveBeenCalledWith('another warning');
  });
});
