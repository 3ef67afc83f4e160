import { float32ToBuffer } from '../shared/base/bytes.ts';
import { BACKEND_PREFERENCE, selectBackend, type BackendPrecheck } from './backends.ts';
import { providerFor } from './data-providers.ts';
import { LocalTrainer, trainingStepProbe } from './trainer.ts';
import type { TrainerRequest, TrainerResponse } from './worker-protocol.ts';
import { Pacer } from './pacer.ts';

export type Post = (msg: TrainerResponse, transfer?: Transferable[]) => void;

/**
 * The training side of the worker protocol, independent of where it runs: the Web Worker wires it to
 * postMessage, and the main-thread fallback (no Worker support) calls it directly. Browsers pass a
 * precheck for the default order (see gpu-adapter.ts); Node has no GPU backends to judge.
 */
export function createTrainerHost(
  post: Post,
  defaultPrecheck?: BackendPrecheck,
): (req: TrainerRequest) => Promise<void> {
  let trainer: LocalTrainer | null = null;
  const pacer = new Pacer(
    () => performance.now(),
    (ms) => new Promise((res) => setTimeout(res, ms)),
  );
  return async (req) => {
    try {
      if (req.type === 'pace') return pacer.set(req.pace);
      if (req.type === 'init') {
        const provider = providerFor(req.data, req.serverUrl);
        const data = await provider.load();
        // Heuristics apply to the default order only: a list the page asked for is tried as given.
        const choice = req.backends
          ? await selectBackend(() => trainingStepProbe(req.model), req.backends)
          : await selectBackend(() => trainingStepProbe(req.model), BACKEND_PREFERENCE, defaultPrecheck);
        trainer?.dispose();
        trainer = new LocalTrainer(req.model, data);
        post({
          type: 'ready',
          backend: choice.backend,
          skipped: choice.skipped,
          numExamples: data.n,
          dataDescription: provider.description,
        });
        return;
      }
      if (!trainer) throw new Error('train requested before init');
      pacer.start();
      const r = await trainer.train(
        new Float32Array(req.weights),
        req.config,
        (progress) => post({ type: 'progress', round: req.round, progress }),
        () => pacer.between(),
      );
      const delta = float32ToBuffer(r.delta);
      post(
        {
          type: 'done',
          round: req.round,
          delta,
          numExamples: r.numExamples,
          loss: r.loss,
          trainMs: r.trainMs,
        },
        [delta],
      );
    } catch (e) {
      post({
        type: 'error',
        round: req.type === 'train' ? req.round : undefined,
        message: (e as Error).message ?? String(e),
      });
    }
  };
}
