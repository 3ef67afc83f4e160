import * as tf from '@tensorflow/tfjs';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import type { ModelSpec } from '../shared/model/spec.ts';
import type { Coordinator, CoordinatorEvents } from './coordinator.ts';
import { Evaluator } from './evaluator.ts';
import type { createMetrics } from './metrics.ts';

/** Helpers shared by the coordinator tests (not a test file itself). */
export async function testEvaluator(spec: ModelSpec): Promise<Evaluator> {
  await tf.setBackend('cpu');
  return new Evaluator(spec, syntheticDataset({ seed: 99, count: 16 }));
}

export const nextEvent = <K extends keyof CoordinatorEvents>(
  c: Coordinator,
  e: K,
): Promise<CoordinatorEvents[K][0]> =>
  new Promise((r) => (c.once as (e: K, l: (v: CoordinatorEvents[K][0]) => void) => void)(e, r));

export async function metricValue(
  m: ReturnType<typeof createMetrics>,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const j = await m.registry.getSingleMetric(name)!.get();
  return j.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
}
