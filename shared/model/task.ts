import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { isRecord } from '../base/record.ts';
import { CHANNELS, IMAGE_SIZE, NUM_CLASSES } from '../data/dataset.ts';
import {
  isLocalOptimizer,
  LOCAL_OPTIMIZERS,
  MAX_PLAN_EPOCHS,
  type TrainConfig,
} from '../protocol/messages.ts';
import { canonicalJson } from './canonical.ts';
import { MODELS, weightShapes, type WeightShape } from './spec.ts';

/**
 * A federated task as data: the model (a built-in preset, or a tfjs Layers topology in the format
 * `model.toJSON(null, false)` returns), the shape of one example, the number of classes, and the local
 * training plan. The server loads it from --task; the client may pin it (join({ task })). Weights never
 * appear here: the server sends them each round.
 */
export interface Task {
  readonly name: string;
  readonly model: TaskModel;
  /** One example's shape, without the batch axis (e.g. [32, 32, 3], or [8] for 8 features). */
  readonly inputShape: readonly number[];
  readonly numClasses: number;
  readonly plan: TrainingPlan;
}

export type TaskModel = { readonly preset: string } | { readonly topology: LayersTopology };

/** What every client of the task trains with each round (round:start's `train` must equal it). */
export type TrainingPlan = TrainConfig;

/** tfjs' Sequential.toJSON(null, false): { class_name: 'Sequential', config: { name, layers }, ... }. */
export interface LayersTopology {
  readonly class_name: 'Sequential';
  readonly config: { readonly name?: string; readonly layers: readonly LayerJson[] };
  readonly keras_version?: string;
  readonly backend?: string;
}

export interface LayerJson {
  readonly class_name: string;
  readonly config: Readonly<Record<string, unknown>>;
}

/** A task that passed checkTask: normalised, with its weight shapes and hash. */
export interface CheckedTask {
  readonly task: Task;
  /** Weight tensors in model.getWeights() order. */
  readonly shapes: readonly WeightShape[];
  readonly numParams: number;
  /** taskHash(task), lowercase hex. */
  readonly hash: string;
}

/** Bounds a hostile server's task must stay within: the client builds nothing bigger. */
export const TASK_LIMITS = {
  maxParams: 2_000_000,
  maxLayers: 32,
  /** Canonical JSON of the whole task. */
  maxBytes: 64 * 1024,
  maxInputSize: 65_536,
  maxClasses: 1000,
  /** Largest intermediate activation per example (values). */
  maxActivation: 1 << 20,
} as const;

/**
 * Whether a layer (by class name and config) carries the model's softmax as its last layer, so clients can
 * take the logits just before it (shared/model/logits.ts): a Dense or an Activation with 'softmax'.
 * Plans with logitAdjust need it.
 */
export const isSoftmaxLayer = (className: string, activation: unknown): boolean =>
  (className === 'Dense' || className === 'Activation') && activation === 'softmax';

/** The domain tag hashed in front of the canonical task: a task hash is never confused with another. */
export const TASK_HASH_DOMAIN = 'aegisfl/task/v1\n';

export const IMAGE_SHAPE: readonly number[] = [IMAGE_SIZE, IMAGE_SIZE, CHANNELS];

/**
 * SHA-256 over TASK_HASH_DOMAIN followed by the canonical JSON (canonical.ts) of the normalised task,
 * as UTF-8; lowercase hex. Normalise first (checkTask does): a plan with proximalMu 0 and one without
 * it are the same task.
 */
export function taskHash(task: Task): string {
  return bytesToHex(sha256(utf8ToBytes(TASK_HASH_DOMAIN + canonicalJson(task))));
}

/**
 * The plan as round:start carries it: steps only when set (and then epochs 1: steps replace epochs, so two
 * plans that train alike hash alike), proximalMu only when > 0, augment and logitAdjust only when on.
 */
export function normalisePlan(p: TrainConfig): TrainingPlan {
  return {
    epochs: p.steps !== undefined ? 1 : p.epochs,
    ...(p.steps !== undefined ? { steps: p.steps } : {}),
    batchSize: p.batchSize,
    learningRate: p.learningRate,
    optimizer: p.optimizer,
    ...(p.proximalMu !== undefined && p.proximalMu > 0 ? { proximalMu: p.proximalMu } : {}),
    ...(p.augment ? { augment: true } : {}),
    ...(p.logitAdjust ? { logitAdjust: true } : {}),
  };
}

/** Whether two plans are the same plan (after normalising both). */
export function samePlan(a: TrainConfig, b: TrainConfig): boolean {
  return canonicalJson(normalisePlan(a)) === canonicalJson(normalisePlan(b));
}

/** Today's task: a CIFAR-10 preset (see spec.ts) trained with `plan`. */
export function presetTask(preset: string, plan: TrainConfig): Task {
  return {
    name: preset,
    model: { preset },
    inputShape: IMAGE_SHAPE,
    numClasses: NUM_CLASSES,
    plan: normalisePlan(plan),
  };
}

export const isImageTask = (t: Pick<Task, 'inputShape' | 'numClasses'>): boolean =>
  t.numClasses === NUM_CLASSES && sameShape(t.inputShape, IMAGE_SHAPE);

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Thrown by checkTask: what is wrong with a task, in words (never echoing more than a short name). */
export class TaskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TaskError';
  }
}

const fail = (m: string): never => {
  throw new TaskError(m);
};

const isInt = (v: unknown, lo: number, hi: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
const isNum = (v: unknown, lo: number, hi: number): v is number =>
  typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi;
/** Names are echoed in errors and logs: short and plain, so a hostile one cannot flood or forge lines. */
const NAME = /^[A-Za-z0-9_.\-/]{1,128}$/;
const short = (v: unknown): string =>
  String(v)
    .slice(0, 40)
    .replace(/[^\x20-\x7e]/g, '?');

/** Most local steps a plan may ask for. */
export const MAX_PLAN_STEPS = 10_000;
/**
 * Most example-passes a plan with steps may ask of any client (steps x batchSize), 100 epochs of 2 560
 * images. A client also refuses more than MAX_PLAN_EPOCHS epochs of its own data (client/trainer.ts).
 */
export const MAX_PLAN_STEP_PASSES = 256_000;

function checkPlan(v: unknown): TrainingPlan {
  if (!isRecord(v)) return fail('plan must be an object');
  for (const k of Object.keys(v))
    if (
      ![
        'epochs',
        'steps',
        'batchSize',
        'learningRate',
        'optimizer',
        'proximalMu',
        'augment',
        'logitAdjust',
      ].includes(k)
    )
      fail(`plan has an unknown field "${short(k)}"`);
  if (!isInt(v.epochs, 1, MAX_PLAN_EPOCHS)) fail(`plan.epochs must be an integer in 1..${MAX_PLAN_EPOCHS}`);
  if (!isInt(v.batchSize, 1, 4096)) fail('plan.batchSize must be an integer in 1..4096');
  // A hostile server's plan must not keep a visitor's CPU busy without end, whatever the visitor's data.
  if (v.steps !== undefined && !isInt(v.steps, 1, MAX_PLAN_STEPS))
    fail(`plan.steps must be an integer in 1..${MAX_PLAN_STEPS}`);
  if (v.steps !== undefined && (v.steps as number) * (v.batchSize as number) > MAX_PLAN_STEP_PASSES)
    fail(`plan.steps x plan.batchSize must be at most ${MAX_PLAN_STEP_PASSES}`);
  if (!isNum(v.learningRate, 1e-7, 10)) fail('plan.learningRate must be a number in 1e-7..10');
  if (!isLocalOptimizer(v.optimizer)) fail(`plan.optimizer must be one of ${LOCAL_OPTIMIZERS.join(', ')}`);
  if (v.proximalMu !== undefined && !isNum(v.proximalMu, 0, 1000))
    fail('plan.proximalMu must be a number in 0..1000');
  if (v.augment !== undefined && typeof v.augment !== 'boolean') fail('plan.augment must be true or false');
  if (v.logitAdjust !== undefined && typeof v.logitAdjust !== 'boolean')
    fail('plan.logitAdjust must be true or false');
  return normalisePlan(v as unknown as TrainConfig);
}

/**
 * Checks a task from a file or the wire, strictly: a hostile server writes it, and the client builds and
 * trains whatever it describes on its visitor's data. Returns the normalised task with its weight shapes
 * and hash; throws TaskError saying what is wrong. Topologies may use only the stock layers in LAYERS,
 * with the config keys each allows; every shape is derived here (no tfjs), so a task too big to build is
 * refused before anything is allocated.
 */
export function checkTask(v: unknown): CheckedTask {
  if (!isRecord(v)) return fail('a task must be an object');
  for (const k of Object.keys(v))
    if (!['name', 'model', 'inputShape', 'numClasses', 'plan'].includes(k))
      fail(`task has an unknown field "${short(k)}"`);
  if (typeof v.name !== 'string' || !NAME.test(v.name))
    fail('task name must be 1-128 letters, digits or _ . - /');
  const inputShape = v.inputShape;
  if (!Array.isArray(inputShape) || inputShape.length < 1 || inputShape.length > 3)
    return fail('inputShape must be an array of 1 to 3 dimensions');
  if (!inputShape.every((d) => isInt(d, 1, TASK_LIMITS.maxInputSize)))
    fail('inputShape dimensions must be positive integers');
  if (product(inputShape as number[]) > TASK_LIMITS.maxInputSize)
    fail(`an example may hold at most ${TASK_LIMITS.maxInputSize} values`);
  if (!isInt(v.numClasses, 2, TASK_LIMITS.maxClasses))
    fail(`numClasses must be an integer in 2..${TASK_LIMITS.maxClasses}`);
  const numClasses = v.numClasses as number;
  const plan = checkPlan(v.plan);
  if (plan.augment && !sameShape(inputShape, IMAGE_SHAPE))
    fail(`plan.augment (crop + mirror) needs ${IMAGE_SHAPE.join('x')} images`);
  const m = v.model;
  if (!isRecord(m) || Object.keys(m).length !== 1) return fail('model must be { preset } or { topology }');
  let model: TaskModel;
  let shapes: WeightShape[];
  if ('preset' in m) {
    const spec = typeof m.preset === 'string' && Object.hasOwn(MODELS, m.preset) ? MODELS[m.preset] : null;
    if (!spec)
      return fail(`unknown preset "${short(m.preset)}"; choose one of ${Object.keys(MODELS).join(', ')}`);
    if (!isImageTask({ inputShape: inputShape as number[], numClasses }))
      fail(`preset "${spec.name}" takes ${IMAGE_SHAPE.join('x')} images and ${NUM_CLASSES} classes`);
    model = { preset: spec.name };
    shapes = weightShapes(spec);
  } else if ('topology' in m) {
    const t = checkTopology(m.topology, inputShape as number[], numClasses);
    model = { topology: m.topology as LayersTopology };
    shapes = t;
    // Clients take the logits just before the softmax (shared/model/logits.ts): it must be the last layer.
    const last = (
      m.topology as { config: { layers: { class_name: string; config: Record<string, unknown> }[] } }
    ).config.layers.at(-1)!;
    if (plan.logitAdjust && !isSoftmaxLayer(last.class_name, last.config.activation))
      fail('plan.logitAdjust needs the softmax on the last layer (a Dense or an Activation)');
  } else return fail('model must be { preset } or { topology }');
  const task: Task = { name: v.name as string, model, inputShape: inputShape as number[], numClasses, plan };
  const json = canonicalJson(task);
  if (json.length > TASK_LIMITS.maxBytes) fail(`the task is over ${TASK_LIMITS.maxBytes} bytes of JSON`);
  const numParams = shapes.reduce((s, w) => s + w.size, 0);
  if (numParams > TASK_LIMITS.maxParams)
    fail(`the model has ${numParams} parameters; at most ${TASK_LIMITS.maxParams} are allowed`);
  return { task, shapes, numParams, hash: taskHash(task) };
}

/** checkTask without the throw: the reason in words, for refusals. */
export function tryCheckTask(v: unknown): { ok: true; value: CheckedTask } | { ok: false; message: string } {
  try {
    return { ok: true, value: checkTask(v) };
  } catch (e) {
    if (e instanceof TaskError) return { ok: false, message: e.message };
    return { ok: false, message: `unreadable task (${short((e as Error).message)})` };
  }
}

const product = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

// ---- topologies ------------------------------------------------------------------------------------------

/** Activations a layer may name (tfjs' serialized names). */
const ACTIVATIONS = new Set([
  'linear',
  'relu',
  'relu6',
  'elu',
  'selu',
  'sigmoid',
  'tanh',
  'softmax',
  'softplus',
  'softsign',
  'swish',
]);
const INITIALIZERS = new Set([
  'VarianceScaling',
  'GlorotUniform',
  'GlorotNormal',
  'HeNormal',
  'HeUniform',
  'LeCunNormal',
  'LeCunUniform',
  'Zeros',
  'Ones',
  'Constant',
  'RandomUniform',
  'RandomNormal',
  'TruncatedNormal',
]);

type Shape = number[];
type Check = (
  c: Readonly<Record<string, unknown>>,
  input: Shape,
  add: (name: string, s: Shape) => void,
) => Shape;

/** Keys every layer config may carry. */
const COMMON = ['name', 'trainable', 'dtype', 'batch_input_shape'];

interface LayerRule {
  keys: readonly string[];
  out: Check;
}

const initializer = (v: unknown, what: string): void => {
  if (
    !isRecord(v) ||
    typeof v.class_name !== 'string' ||
    !INITIALIZERS.has(v.class_name) ||
    !isRecord(v.config)
  )
    fail(`${what} must be a stock initializer`);
  for (const x of Object.values((v as { config: Record<string, unknown> }).config))
    if (!(x === null || typeof x === 'number' || (typeof x === 'string' && x.length <= 32)))
      fail(`${what} has a config value that is not a number or a short string`);
};
/** Regularizers: none, or L1L2 with finite weights. */
const regularizer = (v: unknown, what: string): void => {
  if (v === null || v === undefined) return;
  const c = isRecord(v) && v.class_name === 'L1L2' && isRecord(v.config) ? v.config : null;
  if (!c || !isNum(c.l1 ?? 0, 0, 1e3) || !isNum(c.l2 ?? 0, 0, 1e3)) fail(`${what} must be null or L1L2`);
};
const nullish = (v: unknown, what: string): void => {
  if (v !== null && v !== undefined) fail(`${what} must be null`);
};
const activation = (v: unknown): void => {
  if (v !== undefined && !(typeof v === 'string' && ACTIVATIONS.has(v)))
    fail(`activation "${short(v)}" is not one of ${[...ACTIVATIONS].join(', ')}`);
};
const pair = (v: unknown, what: string, hi: number): [number, number] => {
  const p = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => isInt(x, 1, hi)))
    return fail(`${what} must be one or two integers in 1..${hi}`);
  return p as [number, number];
};
const channelsLast = (c: Readonly<Record<string, unknown>>): void => {
  if (c.data_format !== undefined && c.data_format !== 'channels_last')
    fail('data_format must be channels_last');
};
const rank = (input: Shape, r: number, layer: string): void => {
  if (input.length !== r) fail(`${layer} needs an input of rank ${r}, got [${input.join(', ')}]`);
};
/** Output side of a window (conv or pool) along one axis. */
const windowOut = (n: number, k: number, s: number, padding: unknown, layer: string): number => {
  if (padding !== 'valid' && padding !== 'same') fail(`${layer} padding must be valid or same`);
  const o = padding === 'same' ? Math.ceil(n / s) : Math.floor((n - k) / s) + 1;
  if (o < 1) fail(`${layer} window ${k} does not fit an input of ${n}`);
  return o;
};

const pooling = (layer: string): LayerRule => ({
  keys: ['pool_size', 'padding', 'strides', 'data_format'],
  out: (c, input) => {
    rank(input, 3, layer);
    channelsLast(c);
    const [ph, pw] = pair(c.pool_size, `${layer} pool_size`, 64);
    const [sh, sw] =
      c.strides === null || c.strides === undefined ? [ph, pw] : pair(c.strides, `${layer} strides`, 64);
    return [
      windowOut(input[0], ph, sh, c.padding ?? 'valid', layer),
      windowOut(input[1], pw, sw, c.padding ?? 'valid', layer),
      input[2],
    ];
  },
});

/** Config keys tfjs writes for every layer with a kernel and a bias (Dense, Conv2D). */
const WEIGHT_KEYS = [
  'use_bias',
  'kernel_initializer',
  'bias_initializer',
  'kernel_regularizer',
  'bias_regularizer',
  'activity_regularizer',
  'kernel_constraint',
  'bias_constraint',
] as const;

/** The stock tfjs layers a topology may use, each with its config keys and its shape arithmetic. */
const LAYERS: Readonly<Record<string, LayerRule>> = {
  Dense: {
    keys: ['units', 'activation', ...WEIGHT_KEYS],
    out: (c, input, add) => {
      if (!isInt(c.units, 1, 65_536)) fail('Dense units must be an integer in 1..65536');
      activation(c.activation);
      const units = c.units as number;
      const last = input[input.length - 1];
      add('kernel', [last, units]);
      if (c.use_bias !== false) add('bias', [units]);
      return [...input.slice(0, -1), units];
    },
  },
  Conv2D: {
    keys: [
      'filters',
      'kernel_size',
      'strides',
      'padding',
      'data_format',
      'dilation_rate',
      'activation',
      ...WEIGHT_KEYS,
    ],
    out: (c, input, add) => {
      rank(input, 3, 'Conv2D');
      channelsLast(c);
      if (!isInt(c.filters, 1, 4096)) fail('Conv2D filters must be an integer in 1..4096');
      activation(c.activation);
      const [kh, kw] = pair(c.kernel_size, 'Conv2D kernel_size', 15);
      const [sh, sw] = c.strides === undefined ? [1, 1] : pair(c.strides, 'Conv2D strides', 15);
      if (c.dilation_rate !== undefined) {
        const d = pair(c.dilation_rate, 'Conv2D dilation_rate', 1);
        if (d[0] !== 1 || d[1] !== 1) fail('Conv2D dilation_rate must be 1');
      }
      const filters = c.filters as number;
      add('kernel', [kh, kw, input[2], filters]);
      if (c.use_bias !== false) add('bias', [filters]);
      const pad = c.padding ?? 'valid';
      return [
        windowOut(input[0], kh, sh, pad, 'Conv2D'),
        windowOut(input[1], kw, sw, pad, 'Conv2D'),
        filters,
      ];
    },
  },
  MaxPooling2D: pooling('MaxPooling2D'),
  AveragePooling2D: pooling('AveragePooling2D'),
  Flatten: { keys: ['data_format'], out: (c, input) => (channelsLast(c), [product(input)]) },
  Dropout: {
    keys: ['rate', 'noise_shape', 'seed'],
    out: (c, input) => {
      if (!isNum(c.rate, 0, 0.99)) fail('Dropout rate must be a number in 0..0.99');
      nullish(c.noise_shape, 'Dropout noise_shape');
      if (c.seed !== null && c.seed !== undefined && !isInt(c.seed, 0, 2 ** 31))
        fail('Dropout seed must be an integer');
      return input;
    },
  },
  Activation: {
    keys: ['activation'],
    out: (c, input) => {
      if (c.activation === undefined) fail('Activation needs an activation');
      activation(c.activation);
      return input;
    },
  },
  Embedding: {
    keys: [
      'input_dim',
      'output_dim',
      'embeddings_initializer',
      'embeddings_regularizer',
      'activity_regularizer',
      'embeddings_constraint',
      'mask_zero',
      'input_length',
    ],
    out: (c, input, add) => {
      rank(input, 1, 'Embedding');
      if (!isInt(c.input_dim, 1, 1_000_000)) fail('Embedding input_dim must be an integer in 1..1000000');
      if (!isInt(c.output_dim, 1, 4096)) fail('Embedding output_dim must be an integer in 1..4096');
      if (c.mask_zero !== null && c.mask_zero !== undefined && c.mask_zero !== false)
        fail('Embedding mask_zero is not supported');
      if (c.input_length !== null && c.input_length !== undefined && c.input_length !== input[0])
        fail('Embedding input_length must match the input');
      add('embeddings', [c.input_dim as number, c.output_dim as number]);
      return [input[0], c.output_dim as number];
    },
  },
  GlobalAveragePooling1D: {
    keys: [],
    out: (_c, input) => (rank(input, 2, 'GlobalAveragePooling1D'), [input[1]]),
  },
  GlobalAveragePooling2D: {
    keys: ['data_format'],
    out: (c, input) => (rank(input, 3, 'GlobalAveragePooling2D'), channelsLast(c), [input[2]]),
  },
  LayerNormalization: {
    keys: [
      'axis',
      'epsilon',
      'center',
      'scale',
      'beta_initializer',
      'gamma_initializer',
      'beta_regularizer',
      'gamma_regularizer',
    ],
    out: (c, input, add) => {
      // Only the last axis (tfjs writes it with the batch axis counted: input rank, or -1).
      const ax = Array.isArray(c.axis) && c.axis.length === 1 ? c.axis[0] : c.axis;
      if (ax !== -1 && ax !== input.length) fail('LayerNormalization must normalise the last axis');
      if (c.epsilon !== undefined && !isNum(c.epsilon, 1e-12, 1))
        fail('LayerNormalization epsilon must be in 1e-12..1');
      const last = input[input.length - 1];
      if (c.scale !== false) add('gamma', [last]);
      if (c.center !== false) add('beta', [last]);
      return input;
    },
  },
  Reshape: {
    keys: ['target_shape'],
    out: (c, input) => {
      const t = c.target_shape;
      if (
        !Array.isArray(t) ||
        t.length < 1 ||
        t.length > 3 ||
        !t.every((d) => isInt(d, 1, TASK_LIMITS.maxActivation))
      )
        return fail('Reshape target_shape must be 1 to 3 positive integers');
      if (product(t as number[]) !== product(input))
        fail('Reshape target_shape must hold as many values as its input');
      return t as number[];
    },
  },
};

/** The stock layer classes a topology may use. */
export const ALLOWED_LAYERS: readonly string[] = Object.keys(LAYERS);

/** Checks every config value the rule does not interpret itself: initializers, regularizers, constraints. */
function checkAuxiliary(cls: string, c: Readonly<Record<string, unknown>>): void {
  for (const [k, v] of Object.entries(c)) {
    if (k.endsWith('_initializer')) initializer(v, `${cls} ${k}`);
    else if (k.endsWith('_regularizer')) regularizer(v, `${cls} ${k}`);
    else if (k.endsWith('_constraint')) nullish(v, `${cls} ${k}`);
  }
  if (c.name !== undefined && !(typeof c.name === 'string' && NAME.test(c.name)))
    fail(`${cls} name must be 1-128 letters, digits or _ . - /`);
  if (c.trainable !== undefined && c.trainable !== true) fail(`${cls} must be trainable`);
  if (c.dtype !== undefined && c.dtype !== 'float32') fail(`${cls} dtype must be float32`);
  if (c.use_bias !== undefined && typeof c.use_bias !== 'boolean')
    fail(`${cls} use_bias must be true or false`);
  for (const k of ['center', 'scale'])
    if (c[k] !== undefined && typeof c[k] !== 'boolean') fail(`${cls} ${k} must be true or false`);
}

/**
 * Weight shapes of a Sequential topology, in getWeights() order, after checking it describes a model
 * from `inputShape` to a softmax over `numClasses`.
 */
export function checkTopology(v: unknown, inputShape: readonly number[], numClasses: number): WeightShape[] {
  if (!isRecord(v) || v.class_name !== 'Sequential' || !isRecord(v.config))
    return fail('topology must be a tfjs Sequential model (model.toJSON(null, false))');
  for (const k of Object.keys(v))
    if (!['class_name', 'config', 'keras_version', 'backend'].includes(k))
      fail(`topology has an unknown field "${short(k)}"`);
  for (const k of ['keras_version', 'backend'])
    if (v[k] !== undefined && !(typeof v[k] === 'string' && (v[k] as string).length <= 64))
      fail(`topology ${k} must be a short string`);
  const cfg = v.config;
  for (const k of Object.keys(cfg))
    if (k !== 'name' && k !== 'layers') fail(`topology config has an unknown field "${short(k)}"`);
  if (cfg.name !== undefined && !(typeof cfg.name === 'string' && NAME.test(cfg.name)))
    fail('topology name must be 1-128 letters, digits or _ . - /');
  const layers = cfg.layers;
  if (!Array.isArray(layers) || layers.length < 1 || layers.length > TASK_LIMITS.maxLayers)
    return fail(`a topology has 1 to ${TASK_LIMITS.maxLayers} layers`);
  const out: WeightShape[] = [];
  const names = new Set<string>();
  let shape: Shape = [...inputShape];
  let lastActivation: unknown = undefined;
  layers.forEach((l: unknown, i) => {
    if (!isRecord(l) || typeof l.class_name !== 'string' || !isRecord(l.config))
      fail(`layer ${i} must be { class_name, config }`);
    const { class_name: cls, config: c } = l as { class_name: string; config: Record<string, unknown> };
    const rule = Object.hasOwn(LAYERS, cls) ? LAYERS[cls] : null;
    if (!rule)
      return fail(
        `layer ${i} is a ${short(cls)}: only stock layers are allowed (${ALLOWED_LAYERS.join(', ')})`,
      );
    for (const k of Object.keys(c))
      if (!COMMON.includes(k) && !rule.keys.includes(k))
        fail(`layer ${i} (${cls}) has an unknown config key "${short(k)}"`);
    checkAuxiliary(cls, c);
    if (typeof c.name === 'string') {
      if (names.has(c.name)) fail(`layer ${i} repeats the name "${c.name}"`);
      names.add(c.name);
    }
    const bis = c.batch_input_shape;
    if (i === 0) {
      if (!Array.isArray(bis) || bis[0] !== null || !sameShape(bis.slice(1), inputShape))
        fail(
          `the first layer's batch_input_shape must be [null, ${inputShape.join(', ')}] (the task's inputShape)`,
        );
    } else if (bis !== undefined) fail(`layer ${i}: only the first layer has a batch_input_shape`);
    shape = rule.out(c, shape, (name, s) =>
      out.push({
        name: `${typeof c.name === 'string' ? c.name : `layer${i}`}/${name}`,
        shape: s,
        size: product(s),
      }),
    );
    if (product(shape) > TASK_LIMITS.maxActivation)
      fail(`layer ${i} (${cls}) outputs over ${TASK_LIMITS.maxActivation} values`);
    if ('activation' in c) lastActivation = c.activation;
    else if (cls !== 'Dropout') lastActivation = undefined;
    const params = out.reduce((s, w) => s + w.size, 0);
    if (params > TASK_LIMITS.maxParams)
      fail(`the model has over ${TASK_LIMITS.maxParams} parameters (at layer ${i}, ${cls})`);
  });
  if (!sameShape(shape, [numClasses]))
    fail(`the model outputs [${shape.join(', ')}]; the task has ${numClasses} classes`);
  if (lastActivation !== 'softmax')
    fail('the model must end in a softmax (clients train with cross-entropy on it)');
  return out;
}
