import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { MODELS } from '../shared/model/spec.ts';
import { selectBackend } from './backends.ts';
import { trainingStepProbe } from './trainer.ts';

describe('selectBackend', () => {
  it('skips unregistered backends and those that cannot train, with reasons', async () => {
    // In Node: webgpu/webgl are not registered; stock wasm lacks Conv2DBackpropFilter; cpu trains.
    const choice = await selectBackend(() => trainingStepProbe(MODELS.tiny), ['webgpu', 'webgl', 'wasm', 'cpu']);
    expect(choice.backend).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(choice.skipped.map((s) => s.backend)).toEqual(['webgpu', 'webgl', 'wasm']);
    expect(choice.skipped[0].reason).toMatch(/not registered/);
    expect(choice.skipped[2].reason).toMatch(/cannot train: .*Conv2DBackpropFilter/);
  });

  it('throws a message listing every failure when nothing works', async () => {
    await expect(selectBackend(async () => Promise.reject(new Error('boom')), ['cpu'])).rejects.toThrow(/no tfjs backend can train here: cpu \(cannot train: boom\)/);
  });

  it('the probe does not leak tensors', async () => {
    await tf.setBackend('cpu');
    const before = tf.memory().numTensors;
    await trainingStepProbe(MODELS.tiny);
    expect(tf.memory().numTensors).toBe(before);
  });
});
