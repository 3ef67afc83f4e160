import * as tf from '@tensorflow/tfjs';
import { buildModel } from './build.ts';
import { NUM_CLASSES } from '../data/dataset.ts';
import { MODELS, weightShapes, type ModelSpec, type WeightShape } from './spec.ts';
import { IMAGE_SHAPE, type CheckedTask } from './task.ts';

/**
 * A task's model, built: what trainers and evaluators run. `model` belongs to whoever holds the runtime
 * (they dispose it); `shapes` are the checked task's, which the built model is verified to have.
 */
export interface ModelRuntime {
  readonly name: string;
  readonly model: tf.LayersModel;
  readonly shapes: readonly WeightShape[];
  readonly inputShape: readonly number[];
  readonly numClasses: number;
}

/**
 * Builds a checked task's model: a preset from this code's own table (seeded), a topology through tfjs'
 * stock deserializer (no weights are loaded: the server sends them). The built model must have exactly
 * the weight shapes checkTask derived, or it is refused.
 */
export async function buildTaskModel(c: CheckedTask, seed = 1): Promise<ModelRuntime> {
  const { task } = c;
  const model =
    'preset' in task.model
      ? buildModel(MODELS[task.model.preset], seed)
      : await tf.models.modelFromJSON({
          modelTopology: task.model.topology as unknown as tf.io.ModelJSON['modelTopology'],
        } as never);
  const got = model.getWeights().map((w) => w.shape.join('x'));
  const want = c.shapes.map((s) => s.shape.join('x'));
  if (got.join(',') !== want.join(',')) {
    model.dispose();
    throw new Error(
      `task "${task.name}": the built model's weights [${got}] differ from the checked [${want}]`,
    );
  }
  return {
    name: task.name,
    model,
    shapes: c.shapes,
    inputShape: task.inputShape,
    numClasses: task.numClasses,
  };
}

/** A CIFAR preset as a runtime, built at once (presets need no deserializer). */
export function presetRuntime(spec: ModelSpec, seed = 1): ModelRuntime {
  return {
    name: spec.name,
    model: buildModel(spec, seed),
    shapes: weightShapes(spec),
    inputShape: IMAGE_SHAPE,
    numClasses: NUM_CLASSES,
  };
}

/** A preset spec or a built runtime, as a runtime (trainers and evaluators take either). */
export const asRuntime = (m: ModelSpec | ModelRuntime, seed = 1): ModelRuntime =>
  'model' in m ? m : presetRuntime(m, seed);
