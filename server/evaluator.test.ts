import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { buildModel } from '../shared/model/build.ts';
import { MODELS } from '../shared/model/spec.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import { Evaluator, evalBackendNote, initEvalBackend } from './evaluator.ts';

describe('evaluation backend', () => {
  it('falls back to wasm when the optional tfjs-node packages are absent, and says why', async () => {
    const r = await initEvalBackend();
    // CI installs no native TensorFlow: the fallback is the path that must work.
    expect(r.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(r.tried.join('\n')).toMatch(/tfjs-node-gpu: .*Cannot find/);
    expect(r.tried.join('\n')).toMatch(/tfjs-node: .*Cannot find/);
  });

  it('reads absent optional bindings as information, and other failures as they are', async () => {
    const r = await initEvalBackend();
    expect(evalBackendNote(r.tried)).toBe(
      'optional @tensorflow/tfjs-node-gpu, @tensorflow/tfjs-node not installed',
    );
    expect(evalBackendNote(['tfjs-node: libtensorflow.so: cannot open shared object file'])).toBe(
      'unavailable: tfjs-node: libtensorflow.so: cannot open shared object file',
    );
  });

  it('wasm evaluation agrees with the cpu reference to float precision', async () => {
    const spec = MODELS.tiny;
    const test = syntheticDataset({ seed: 4, count: 300 });
    const w = await getFlatWeights(buildModel(spec, 21));
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const e = new Evaluator(spec, test, 128); // 128 -> the last batch is partial
      const r = await e.evaluate(w);
      e.dispose();
      return r;
    };
    const cpu = await run('cpu');
    const wasm = await run('wasm');
    expect(cpu.examples).toBe(300);
    expect(wasm.accuracy).toBeCloseTo(cpu.accuracy, 2);
    expect(wasm.loss).toBeCloseTo(cpu.loss, 4);
    // Untrained 10-class model: loss near ln(10).
    expect(cpu.loss).toBeGreaterThan(2.0);
    expect(cpu.loss).toBeLessThan(2.7);
  });
});
