import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { MODELS } from '../shared/model/spec.ts';
import { isSoftwareRenderer, selectBackend } from './backends.ts';
import { trainingStepProbe } from './trainer.ts';
import { registerWasmTrainingKernels } from './wasm-train-kernels.ts';

describe('selectBackend', () => {
  it('skips unregistered backends and those that cannot train, with reasons; wasm trains once its kernels are registered', async () => {
    // In Node webgpu/webgl are not registered. Stock wasm lacks Conv2DBackpropFilter, so cpu is chosen ...
    const stock = await selectBackend(
      () => trainingStepProbe(MODELS.tiny),
      ['webgpu', 'webgl', 'wasm', 'cpu'],
    );
    expect(stock.backend).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(stock.skipped.map((s) => s.backend)).toEqual(['webgpu', 'webgl', 'wasm']);
    expect(stock.skipped[0].reason).toMatch(/not registered/);
    expect(stock.skipped[2].reason).toMatch(/cannot train: .*Conv2DBackpropFilter/);
    // ... and with our gradient kernels wasm is.
    registerWasmTrainingKernels();
    const ours = await selectBackend(
      () => trainingStepProbe(MODELS.tiny),
      ['webgpu', 'webgl', 'wasm', 'cpu'],
    );
    expect(ours.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(ours.skipped.map((s) => s.backend)).toEqual(['webgpu', 'webgl']);
  });

  it('a precheck passes over a backend with its reason before it is tried', async () => {
    registerWasmTrainingKernels();
    const asked: string[] = [];
    const choice = await selectBackend(
      () => trainingStepProbe(MODELS.tiny),
      ['cpu', 'wasm'],
      async (b) => {
        asked.push(b);
        return b === 'cpu' ? 'software GPU (test): wasm is faster' : null;
      },
    );
    expect(choice.backend).toBe('wasm');
    expect(choice.skipped).toEqual([{ backend: 'cpu', reason: 'software GPU (test): wasm is faster' }]);
    expect(asked).toEqual(['cpu', 'wasm']);
  });

  it('tells GPUs emulated on the CPU from real ones by their renderer strings', () => {
    for (const s of [
      'Google Inc. (Google) ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)',
      'google swiftshader  ',
      'Mesa llvmpipe (LLVM 15.0.6, 256 bits)',
      'Microsoft Basic Render Driver',
      'apple common  software fallback adapter',
    ])
      expect(isSoftwareRenderer(s), s).toBe(true);
    for (const s of [
      'Google Inc. (NVIDIA) ANGLE (NVIDIA, NVIDIA GeForce RTX 3080 (0x00002206) Direct3D11 vs_5_0 ps_5_0, D3D11)',
      'Apple Inc. Apple M1',
      'Intel(R) UHD Graphics 620',
      'nvidia ampere  ',
      '',
    ])
      expect(isSoftwareRenderer(s), s).toBe(false);
  });

  it('throws a message listing every failure when nothing works', async () => {
    await expect(selectBackend(async () => Promise.reject(new Error('boom')), ['cpu'])).rejects.toThrow(
      /no tfjs backend can train here: cpu \(cannot train: boom\)/,
    );
  });

  it.each(['cpu', 'wasm'])('the probe does not leak tensors on %s', async (backend) => {
    registerWasmTrainingKernels();
    await tf.setBackend(backend);
    const before = tf.memory().numTensors;
    await trainingStepProbe(MODELS.tiny);
    expect(tf.memory().numTensors).toBe(before);
  });
});
