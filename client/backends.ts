import * as tf from '@tensorflow/tfjs';
import type { BackendName } from '../shared/protocol/messages.ts';
import { silenceTfjsNodeBanner } from '../shared/model/tfjs-banner.ts';

// Node clients (tests, swarms): one banner per client process is noise; browsers have none.
silenceTfjsNodeBanner();

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

/** Renderer strings of GPUs emulated on the CPU (Chrome's SwiftShader, Mesa's llvmpipe/lavapipe, Windows WARP). */
const SOFTWARE_RENDERER = /swiftshader|llvmpipe|lavapipe|softpipe|basic render driver|software/i;

export function isSoftwareRenderer(description: string): boolean {
  return SOFTWARE_RENDERER.test(description);
}

/**
 * Returns a reason to pass over a backend before trying it, or null. The browser's check: a GPU backend
 * whose adapter is emulated on the CPU trains 10-30x slower than wasm on the same CPU (npm run bench:train).
 */
export type BackendPrecheck = (backend: BackendName) => Promise<string | null>;

/**
 * Tries each backend in order. `precheck` may pass over a candidate with a reason; `probe` runs on the
 * candidate (e.g. one training step on two examples); if it throws (say a gradient kernel the backend
 * lacks), the next backend is tried.
 */
export async function selectBackend(
  probe: () => Promise<void>,
  order: readonly BackendName[] = BACKEND_PREFERENCE,
  precheck?: BackendPrecheck,
): Promise<BackendChoice> {
  const skipped: SkippedBackend[] = [];
  for (const backend of order) {
    if (!tf.engine().registryFactory[backend]) {
      skipped.push({ backend, reason: 'not registered in this build' });
      continue;
    }
    const pass = await precheck?.(backend).catch(() => null);
    if (pass) {
      skipped.push({ backend, reason: pass });
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
  throw new Error(
    `no tfjs backend can train here: ${skipped.map((s) => `${s.backend} (${s.reason})`).join('; ')}`,
  );
}
