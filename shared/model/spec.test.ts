import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { buildModel } from './build.ts';
import { MODELS, isModelSpec, modelByName, numParams, weightShapes } from './spec.ts';
import { getFlatWeights, setFlatWeights } from './weights.ts';

describe('model specs', () => {
  it('pure shape arithmetic matches the tfjs model for every preset', () => {
    for (const spec of Object.values(MODELS)) {
      const m = buildModel(spec);
      expect(m.getWeights().map((w) => w.shape)).toEqual(weightShapes(spec).map((w) => w.shape));
      expect(m.countParams()).toBe(numParams(spec));
      m.dispose();
    }
  });

  it('keeps the default browser model well under 1M parameters', () => {
    expect(numParams(MODELS.small)).toBe(136_874);
    expect(numParams(MODELS.tiny)).toBeLessThan(40_000);
    expect(numParams(MODELS.medium)).toBeLessThan(1_000_000);
    expect(numParams(MODELS.mlp)).toBe(3072 * 16 + 16 + 16 * 10 + 10);
  });

  it('validates specs from the wire', () => {
    expect(isModelSpec(MODELS.small)).toBe(true);
    expect(isModelSpec({ name: 'x', conv: [], dense: 4 })).toBe(true); // an MLP
    expect(isModelSpec({ name: 'x', conv: [8, 8, 8, 8, 8, 8], dense: 4 })).toBe(false);
    expect(isModelSpec({ name: 'x', conv: [8, 1e6], dense: 4 })).toBe(false);
    expect(() => modelByName('huge')).toThrow(/unknown model "huge"/);
  });
});

describe('flat weights', () => {
  it.each(['tiny', 'mlp'])('%s: round-trips and is order-stable', async (name) => {
    const spec = MODELS[name];
    const a = buildModel(spec, 1),
      b = buildModel(spec, 2);
    const wa = await getFlatWeights(a);
    expect(wa.length).toBe(numParams(spec));
    expect(await getFlatWeights(b)).not.toEqual(wa);
    setFlatWeights(b, spec, wa);
    expect(await getFlatWeights(b)).toEqual(wa);
    // Same weights -> same predictions.
    const x = tf.randomUniform([2, 32, 32, 3]);
    const pa = (a.predict(x) as tf.Tensor).arraySync(),
      pb = (b.predict(x) as tf.Tensor).arraySync();
    expect(pb).toEqual(pa);
    tf.dispose([x]);
    a.dispose();
    b.dispose();
  });

  it('rejects a vector of the wrong length', () => {
    const m = buildModel(MODELS.tiny);
    expect(() => setFlatWeights(m, MODELS.tiny, new Float32Array(10))).toThrow(
      /has 10 values, model "tiny" needs/,
    );
    m.dispose();
  });
});
