import * as tf from '@tensorflow/tfjs';
import type { BackendName } from '../shared/protocol/messages.ts';

/** Fastest first. A backend is chosen only if it initialises AND can run a training step of our model. */
export const BACKEND_PREFERENCE: readonly BackendName[] = ['webgpu', 'webgl', 'wasm', 'cpu'];

export interface SkippedBackend {
  backend: BackendName;
  reason: string;
}

export interface BackendChoice {
  backend: BackendName;
  skipped: SkippedBackend[];
}

/**
 * Tries each backend in order. `probe` runs on the candidate (e.g. one training step on two examples);
 * if it throws (say a gradient kernel the backend lacks), the next backend is tried.
 */
export async function selectBackend(
  probe: () => Promise<void>,
  order: readonly BackendName[] = BACKEND_PREFERENCE,
): Promise<BackendChoice> {
  const skipped: SkippedBackend[] = [];
  for (const backend of order) {
    if (!tf.engine().registryFactory[backend]) {
      skipped.push({ backend, reason: 'not registered in this build' });
      continue;
    }
    let ok = false;
    try {
      ok = await tf.setBackend(backend);
    } catch (e) {
      skipped.push({ backend, reason: `init threw: ${(e as Error).message}` });
      continue;
    }
    if (!ok) {
      skipped.push({ backend, reason: 'initialisation failed (unsupported here)' });
      continue;
    }
    try {
      await probe();
      return { backend, skipped };
    } catch (e) {
      skipped.push({ backend, reason: `cannot train: ${(e as Error).message}` });
    }
  }
  throw new Error(`no tfjs backend can train here: ${skipped.map((s) => `${s.backend} (${s.reason})`).join('; ')}`);
}
