import * as tf from '@tensorflow/tfjs';
import '../client/wasm-backend.ts';
import { Evaluator } from '../server/evaluator.ts';
import { readCifar10Dir} from '../server/datasets.ts';
import { buildModel } from '../shared/model/build.ts';
import { MODELS } from '../shared/model/spec.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
await tf.setBackend('wasm');
const d = await readCifar10Dir('../shared/data/cifar10');
const e = new Evaluator(MODELS.small, d.test);
const w = await getFlatWeights(buildModel(MODELS.small, 1));
for (let i = 0; i < 3; i++) { const r = await e.evaluate(w); console.log(r.examples, r.ms.toFixed(0), 'ms'); }
