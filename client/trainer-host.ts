import { float32ToBuffer } from '../shared/base/bytes.ts';
import { BACKEND_PREFERENCE, selectBackend, type BackendPrecheck } from './backends.ts';
import { checkExamples, examplesFromDataset, type Examples } from '../shared/data/examples.ts';
import { buildTaskModel } from '../shared/model/task-build.ts';
import { checkTask, isImageTask } from '../shared/model/task.ts';
import { providerFor } from './data-providers.ts';
import { LocalTrainer, trainingStepProbe } from './trainer.ts';
import type { TrainerRequest, TrainerResponse } from './worker-protocol.ts';
import { Pacer } from './pacer.ts';
import { portExchange, type ClosableExchange, type PortLike } from './grad-exchange.ts';

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
  let peer: ClosableExchange | null = null;
  let examples: Examples | null = null;
  return async (req) => {
    try {
      if (req.type === 'pace') return pacer.set(req.pace);
      if (req.type === 'peer') {
        peer?.close(req.port ? 'another peer was given' : 'the page ended the pair');
        peer = req.port ? portExchange(req.port as unknown as PortLike, req.rank) : null;
        return;
      }
      if (req.type === 'init') {
        // Checked again here: the worker builds only a task that passes (the page checked it too).
        const task = checkTask(req.task);
        const { inputShape, numClasses } = task.task;
        let data: Examples;
        let description: string;
        if (req.data.kind === 'inline') {
          data = checkExamples(req.data.examples, inputShape, numClasses);
          description = `page (${data.n} examples)`;
        } else {
          if (!isImageTask(task.task)) throw new Error(`task "${task.task.name}" needs the page's data`);
          const provider = providerFor(req.data, req.serverUrl);
          data = examplesFromDataset(await provider.load());
          description = provider.description;
        }
        const probe = (): Promise<void> => trainingStepProbe(() => buildTaskModel(task, 7));
        // Heuristics apply to the default order only: a list the page asked for is tried as given.
        const choice = req.backends
          ? await selectBackend(probe, req.backends)
          : await selectBackend(probe, BACKEND_PREFERENCE, defaultPrecheck);
        trainer?.dispose();
        trainer = new LocalTrainer(await buildTaskModel(task), data);
        examples = data;
        post({
          type: 'ready',
          backend: choice.backend,
          skipped: choice.skipped,
          numExamples: data.n,
          dataDescription: description,
        });
        return;
      }
      if (!trainer || !examples) throw new Error(`${req.type} requested before init`);
      if (req.type === 'examples') {
        const copy = { n: examples.n, x: examples.x.slice(), y: examples.y.slice() };
        return post({ type: 'examples', examples: copy }, [copy.x.buffer, copy.y.buffer]);
      }
      pacer.start();
      trainer.reseed(req.round);
      const r = await trainer.train(
        new Float32Array(req.weights),
        req.config,
        (progress) => post({ type: 'progress', round: req.round, progress }),
        () => pacer.between(),
        peer ?? undefined,
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
          pairedSteps: r.pairedSteps,
          pairMs: r.pairMs,
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
