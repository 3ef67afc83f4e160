import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { canonicalJson } from './canonical.ts';
import { MODELS, weightShapes } from './spec.ts';
import { buildTaskModel } from './task-build.ts';
import {
  ALLOWED_LAYERS,
  TASK_LIMITS,
  checkTask,
  presetTask,
  taskHash,
  tryCheckTask,
  type LayersTopology,
  type Task,
} from './task.ts';

const PLAN = { epochs: 1, batchSize: 32, learningRate: 0.002, optimizer: 'adam' } as const;
const blobsFile = (): Task =>
  JSON.parse(readFileSync(new URL('../../demo/tasks/blobs.task.json', import.meta.url), 'utf8')) as Task;

/** A topology task from a tfjs Sequential built by `make` (its toJSON, exactly as tfjs writes it). */
function taskOf(make: (m: tf.Sequential) => void, inputShape: number[], numClasses: number): Task {
  const m = tf.sequential({ name: 'probe' });
  make(m);
  const topology = m.toJSON(null, false) as unknown as LayersTopology;
  m.dispose();
  return { name: 'probe', model: { topology }, inputShape, numClasses, plan: PLAN };
}

/** The blobs task with its topology edited by `edit` (a deep copy). */
function editBlobs(
  edit: (t: { class_name: string; config: { name?: string; layers: any[] } }) => void,
): unknown {
  const t = structuredClone(blobsFile()) as any;
  edit(t.model.topology);
  return t;
}

describe('canonical JSON', () => {
  it('sorts keys at every depth, drops undefined members, writes numbers the shortest way', () => {
    expect(canonicalJson({ b: [1, { d: 0.1, c: -0 }], a: 'x\n', u: undefined, n: null, t: true })).toBe(
      '{"a":"x\\n","b":[1,{"c":0,"d":0.1}],"n":null,"t":true}',
    );
    expect(canonicalJson(1e-7)).toBe('1e-7');
    expect(canonicalJson(1e21)).toBe('1e+21');
    expect(canonicalJson({ é: 1, z: 2, Z: 3 })).toBe('{"Z":3,"z":2,"é":1}'); // UTF-16 code unit order
  });

  it('refuses values JSON cannot carry', () => {
    expect(() => canonicalJson(NaN)).toThrow(RangeError);
    expect(() => canonicalJson({ a: Infinity })).toThrow(RangeError);
    expect(() => canonicalJson(new Uint8Array(2))).toThrow(TypeError);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(TypeError);
  });
});

describe('task hash', () => {
  it('known answer: SHA-256 of the domain tag and the canonical task', () => {
    const t = presetTask('tiny', PLAN);
    const canonical =
      '{"inputShape":[32,32,3],"model":{"preset":"tiny"},"name":"tiny","numClasses":10,' +
      '"plan":{"batchSize":32,"epochs":1,"learningRate":0.002,"optimizer":"adam"}}';
    expect(canonicalJson(t)).toBe(canonical);
    const expected = 'fafb23e8b4fc001aa61f48143c780ae0a7266e3519235e113068c9cfe5991746';
    expect(createHash('sha256').update(`aegisfl/task/v1\n${canonical}`, 'utf8').digest('hex')).toBe(expected);
    expect(taskHash(t)).toBe(expected);
    expect(checkTask(t).hash).toBe(expected);
  });

  it('is independent of key order and of default plan fields; changes with any real difference', () => {
    const t = blobsFile();
    const h = checkTask(t).hash;
    const reverse = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(reverse)
        : v && typeof v === 'object'
          ? Object.fromEntries(
              Object.entries(v)
                .reverse()
                .map(([k, x]) => [k, reverse(x)]),
            )
          : v;
    const reordered = reverse(t) as Task;
    expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(t));
    expect(checkTask(reordered).hash).toBe(h);
    expect(
      checkTask({ ...t, plan: { ...t.plan, proximalMu: 0, augment: false, logitAdjust: false } }).hash,
    ).toBe(h);
    expect(checkTask({ ...t, plan: { ...t.plan, logitAdjust: true } }).hash).not.toBe(h);
    expect(checkTask({ ...t, plan: { ...t.plan, learningRate: 0.021 } }).hash).not.toBe(h);
    expect(checkTask({ ...t, name: 'blobs2' }).hash).not.toBe(h);
    const wider = editBlobs((top) => (top.config.layers[0].config.units = 17));
    expect(checkTask(wider).hash).not.toBe(h);
  });
});

describe('checkTask: what it accepts', () => {
  it('presets: the CIFAR-10 shapes and the weight shapes of spec.ts', () => {
    for (const name of Object.keys(MODELS)) {
      const c = checkTask(presetTask(name, PLAN));
      expect(c.shapes).toEqual(weightShapes(MODELS[name]));
    }
  });

  it('the blobs task file: 8 features, 4 classes, 212 parameters, built by tfjs with the derived shapes', async () => {
    const c = checkTask(blobsFile());
    expect(c.numParams).toBe(8 * 16 + 16 + 16 * 4 + 4);
    const rt = await buildTaskModel(c);
    expect(rt.model.getWeights().map((w) => w.shape)).toEqual(c.shapes.map((s) => s.shape));
    rt.model.dispose();
  });

  it.each([
    [
      'conv + pooling + global average',
      (m: tf.Sequential) => {
        m.add(
          tf.layers.conv2d({
            inputShape: [12, 10, 2],
            filters: 4,
            kernelSize: 3,
            padding: 'same',
            activation: 'relu',
          }),
        );
        m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
        m.add(tf.layers.conv2d({ filters: 5, kernelSize: [3, 2], strides: 2, useBias: false }));
        m.add(tf.layers.averagePooling2d({ poolSize: 1, padding: 'same' }));
        m.add(tf.layers.globalAveragePooling2d({}));
        m.add(tf.layers.dense({ units: 3 }));
        m.add(tf.layers.activation({ activation: 'softmax' }));
      },
      [12, 10, 2],
      3,
    ],
    [
      'text: embedding + layer norm + global average 1D',
      (m: tf.Sequential) => {
        m.add(tf.layers.embedding({ inputShape: [6], inputDim: 50, outputDim: 4 }));
        m.add(tf.layers.layerNormalization({}));
        m.add(tf.layers.globalAveragePooling1d({}));
        m.add(tf.layers.dropout({ rate: 0.2 }));
        m.add(tf.layers.dense({ units: 5, activation: 'softmax' }));
      },
      [6],
      5,
    ],
    [
      'reshape + flatten + dense on a rank-2 input',
      (m: tf.Sequential) => {
        m.add(tf.layers.reshape({ inputShape: [12], targetShape: [3, 4] }));
        m.add(tf.layers.dense({ units: 2, activation: 'tanh' }));
        m.add(tf.layers.flatten({}));
        m.add(tf.layers.dense({ units: 2, activation: 'softmax' }));
      },
      [12],
      2,
    ],
  ])('%s: derived shapes equal what tfjs builds', async (_name, make, inputShape, classes) => {
    const t = taskOf(make, inputShape, classes);
    const c = checkTask(t);
    const rt = await buildTaskModel(c);
    expect(rt.model.getWeights().map((w) => w.shape)).toEqual(c.shapes.map((s) => s.shape));
    expect(rt.model.countParams()).toBe(c.numParams);
    const out = rt.model.predict(tf.zeros([1, ...inputShape])) as tf.Tensor;
    expect(out.shape).toEqual([1, classes]);
    tf.dispose(out);
    rt.model.dispose();
  });

  it('covers every allowed layer class in the cases above', () => {
    expect([...ALLOWED_LAYERS].sort()).toEqual(
      [
        'Activation',
        'AveragePooling2D',
        'Conv2D',
        'Dense',
        'Dropout',
        'Embedding',
        'Flatten',
        'GlobalAveragePooling1D',
        'GlobalAveragePooling2D',
        'LayerNormalization',
        'MaxPooling2D',
        'Reshape',
      ].sort(),
    );
  });
});

describe('checkTask: hostile tasks are refused', () => {
  const refused = (v: unknown): string => {
    const r = tryCheckTask(v);
    expect(r.ok).toBe(false);
    return r.ok ? '' : r.message;
  };

  it('custom and non-stock layers (a Lambda, a registered custom class, a recurrent layer)', () => {
    for (const cls of [
      'Lambda',
      'MemorizeInputs',
      'SimpleRNN',
      'BatchNormalization',
      'constructor',
      '__proto__',
    ])
      expect(refused(editBlobs((t) => (t.config.layers[1].class_name = cls)))).toMatch(/only stock layers/);
  });

  it('config keys, initializers, regularizers and constraints outside the whitelist', () => {
    expect(refused(editBlobs((t) => (t.config.layers[1].config.function = 'x => x')))).toMatch(
      /unknown config key/,
    );
    expect(
      refused(
        editBlobs(
          (t) => (t.config.layers[0].config.kernel_initializer = { class_name: 'Custom', config: {} }),
        ),
      ),
    ).toMatch(/stock initializer/);
    expect(
      refused(
        editBlobs(
          (t) => (t.config.layers[0].config.kernel_constraint = { class_name: 'MaxNorm', config: {} }),
        ),
      ),
    ).toMatch(/must be null/);
    expect(refused(editBlobs((t) => (t.config.layers[0].config.activation = 'eval')))).toMatch(/activation/);
    expect(refused(editBlobs((t) => (t.config.layers[0].config.trainable = false)))).toMatch(/trainable/);
    expect(refused(editBlobs((t) => (t.config.layers[1].config.name = 'hidden')))).toMatch(
      /repeats the name/,
    );
    expect(refused(editBlobs((t) => (t.config.layers[1].config.name = '\u001b[31mred')))).toMatch(
      /name must be/,
    );
  });

  it('models too big to build: huge layers, too many parameters, too many layers, too much JSON', () => {
    // 8 -> 65536 -> 65536 would be 4.3e9 parameters: refused from the arithmetic, nothing allocated.
    const huge = editBlobs((t) => {
      t.config.layers[0].config.units = 65_536;
      t.config.layers.splice(1, 0, { class_name: 'Dense', config: { units: 65_536, name: 'wide' } });
    });
    expect(refused(huge)).toMatch(/parameters/);
    const deep = editBlobs((t) => {
      for (let i = 0; i < TASK_LIMITS.maxLayers; i++)
        t.config.layers.splice(1, 0, { class_name: 'Dropout', config: { rate: 0, name: `d${i}` } });
    });
    expect(refused(deep)).toMatch(/1 to 32 layers/);
    const fat = editBlobs(
      (t) =>
        (t.config.layers[1].config.bias_initializer = {
          class_name: 'Zeros',
          config: Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`k${i}`, 'x'.repeat(30)])),
        }),
    );
    expect(refused(fat)).toMatch(/bytes of JSON/);
  });

  it('shapes that do not match the task: input, classes, missing softmax', () => {
    const t = blobsFile();
    expect(refused({ ...t, inputShape: [9] })).toMatch(/batch_input_shape must be \[null, 9\]/);
    expect(refused({ ...t, numClasses: 3 })).toMatch(/outputs \[4\]; the task has 3 classes/);
    expect(refused(editBlobs((x) => (x.config.layers[1].config.activation = 'linear')))).toMatch(/softmax/);
    expect(refused(editBlobs((x) => delete x.config.layers[0].config.batch_input_shape))).toMatch(
      /batch_input_shape/,
    );
    expect(refused({ ...presetTask('tiny', PLAN), inputShape: [8] })).toMatch(/takes 32x32x3 images/);
    expect(refused({ ...presetTask('tiny', PLAN), model: { preset: 'huge' } })).toMatch(/unknown preset/);
    expect(refused({ ...t, model: { topology: { ...t.model, class_name: 'Model' } } })).toMatch(/Sequential/);
  });

  it('plans and fields outside the rules', () => {
    const t = blobsFile();
    expect(refused({ ...t, plan: { ...t.plan, epochs: 1000 } })).toMatch(/epochs/);
    expect(refused({ ...t, plan: { ...t.plan, optimizer: 'rmsprop' } })).toMatch(/optimizer/);
    for (const steps of [0, 1.5, 10_001, '16', null])
      expect(refused({ ...t, plan: { ...t.plan, steps } })).toMatch(
        /plan.steps must be an integer in 1..10000/,
      );
    const stepped = checkTask({ ...t, plan: { ...t.plan, steps: 16 } });
    expect(stepped.task.plan.steps).toBe(16);
    // Steps replace epochs: epochs is normalised to 1, so plans that train alike pin one hash.
    expect(checkTask({ ...t, plan: { ...t.plan, epochs: 5, steps: 16 } }).hash).toBe(stepped.hash);
    expect(stepped.task.plan.epochs).toBe(1);
    // Steps x batch is bounded as 100 epochs of 2 560 images are: a plan cannot ask more of a small client.
    expect(checkTask({ ...t, plan: { ...t.plan, steps: 1000, batchSize: 256 } }).task.plan.steps).toBe(1000);
    expect(refused({ ...t, plan: { ...t.plan, steps: 1001, batchSize: 256 } })).toMatch(
      /plan.steps x plan.batchSize must be at most 256000/,
    );
    expect(refused({ ...t, plan: { ...t.plan, steps: 10_000, batchSize: 4096 } })).toMatch(
      /plan.steps x plan.batchSize must be at most 256000/,
    );
    // A plan with steps is another task: the clients pin its hash, so the server cannot swap it silently.
    expect(stepped.hash).not.toBe(checkTask(t).hash);
    expect(checkTask(t).task.plan).not.toHaveProperty('steps');
    for (const optimizer of ['sgd', 'momentum', 'adam'])
      expect(checkTask({ ...t, plan: { ...t.plan, optimizer } }).task.plan.optimizer).toBe(optimizer);
    expect(refused({ ...t, plan: { ...t.plan, augment: true } })).toMatch(/augment.*32x32x3/);
    expect(refused({ ...t, plan: { ...t.plan, secret: 1 } })).toMatch(/unknown field/);
    expect(refused({ ...t, plan: { ...t.plan, logitAdjust: 'yes' } })).toMatch(
      /logitAdjust must be true or false/,
    );
    expect(checkTask({ ...t, plan: { ...t.plan, logitAdjust: true } }).task.plan.logitAdjust).toBe(true);
    const dropoutLast = structuredClone(t) as any;
    dropoutLast.model.topology.config.layers.push({ class_name: 'Dropout', config: { rate: 0.1 } });
    expect(checkTask(dropoutLast).task.plan.logitAdjust).toBeUndefined();
    expect(refused({ ...dropoutLast, plan: { ...t.plan, logitAdjust: true } })).toMatch(
      /logitAdjust needs the softmax on the last layer/,
    );
    expect(refused({ ...t, weights: [1, 2] })).toMatch(/unknown field/);
    expect(refused({ ...t, numClasses: 1 })).toMatch(/numClasses/);
    expect(refused({ ...t, inputShape: [300, 300] })).toMatch(/at most 65536 values/);
    expect(refused(null)).toMatch(/object/);
  });
});
