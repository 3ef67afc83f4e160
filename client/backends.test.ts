import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { MODELS } from '../shared/model/spec.ts';
import { selectBackend } from './backends.ts';
import { trainingStepProbe } from './trainer.ts';
import { registerWasmTrainingKernels } from './wasm-train-kernels.ts';

describe('selectBackend', () => {
  it('skips unregistered backends and those that cannot train, with reasons; wasm trains once its kernels are registered', async () => {
    // In Node webgpu/webgl are not registered. Stock wasm lacks Conv2DBackpropFilter, so cpu is chosen ...
    const stock = await selectBackend(() => trainingStepProbe(MODELS.tiny), ['webgpu', 'webgl', 'wasm', 'cpu']);
    expect(stock.backend).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(stock.skipped.map((s) => s.backend)).toEqual(['webgpu', 'webgl', 'wasm']);
    expect(stock.skipped[0].reason).toMatch(/not registered/);
    expect(stock.skipped[2].reason).toMatch(/cannot train: .*Conv2DBackpropFilter/);
    // ... and with our gradient kernels wasm is.
    registerWasmTrainingKernels();
    const ours = await selectBackend(() => trainingStepProbe(MODELS.tiny), ['webgpu', 'webgl', 'wasm', 'cpu']);
    expect(ours.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(ours.skipped.map((s) => s.backend)).toEqual(['webgpu', 'webgl']);
  });

  it('throws a message listing every failure when nothing works', async () => {
    await expect(selectBackend(async () => Promise.reject(new Error('boom')), ['cpu'])).rejects.toThrow(/no tfjs backend can train here: cpu \(cannot train: boom\)/);
  });

  it.each(['cpu', 'wasm'])('the probe does not leak tensors on %s', async (backend) => {
    registerWasmTrainingKernels();
    await tf.setBackend(backend);
    const before = tf.memory().numTensors;
    await trainingStepProbe(MODELS.tiny);
    expect(tf.memory().numTensors).toBe(before);
  });
});
