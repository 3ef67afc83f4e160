import * as tf from '@tensorflow/tfjs';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import type { ModelSpec } from '../shared/model/spec.ts';
import type { Coordinator } from './coordinator.ts';
import { Evaluator } from './evaluator.ts';
import type { createMetrics } from './metrics.ts';

/** Helpers shared by the coordinator tests (not a test file itself). */
export async function testEvaluator(spec: ModelSpec): Promise<Evaluator> {
  await tf.setBackend('cpu');
  return new Evaluator(spec, syntheticDataset({ seed: 99, count: 16 }));
}

export const clientId = (n: number): string => `client-${String(n).padStart(12, '0')}`;

export const nextEvent = (c: Coordinator, e: string): Promise<any> => new Promise((r) => c.once(e, r));

export async function metricValue(
  m: ReturnType<typeof createMetrics>,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const j = await m.registry.getSingleMetric(name)!.get();
  return j.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
}
