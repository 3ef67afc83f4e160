import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { buildModel } from '../shared/model/build.ts';
import { MODELS } from '../shared/model/spec.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import { Evaluator, evalBackendNote, initEvalBackend, SAMPLE_COUNT } from './evaluator.ts';

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

  it('per-class results agree with the accuracy; the sample strip is the first test examples', async () => {
    await tf.setBackend('cpu');
    const spec = MODELS.tiny;
    const test = syntheticDataset({ seed: 5, count: 200 });
    const e = new Evaluator(spec, test, 64);
    const r = await e.evaluate(await getFlatWeights(buildModel(spec, 3)));
    e.dispose();
    const c = r.classes!;
    expect(c.numClasses).toBe(10);
    expect(c.confusion).toHaveLength(10);
    const trace = c.confusion.reduce((s, row, t) => s + row[t], 0);
    expect(trace / 200).toBeCloseTo(r.accuracy, 12);
    for (let t = 0; t < 10; t++) {
      const count = test.y.filter((y) => y === t).length;
      expect(c.confusion[t].reduce((a, b) => a + b, 0)).toBe(count);
    }
    expect(r.sampleLabels).toEqual(Array.from(test.y.subarray(0, SAMPLE_COUNT)));
    expect(r.samplePreds).toHaveLength(SAMPLE_COUNT);
    for (const [i, p] of r.samplePreds!.entries())
      expect(c.confusion[r.sampleLabels![i]][p]).toBeGreaterThan(0);
  });
});
