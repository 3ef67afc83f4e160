import { checkExamples, packExamples, type Examples } from '../shared/data/examples.ts';
import type { Task } from '../shared/model/task.ts';
import type { Ready, Welcome } from '../shared/protocol/messages.ts';
import type { ClientEvents, ClientOptions } from './client-api.ts';
import type { TrainerPort } from './trainer-port.ts';

/** What preparation leaves: the trainer, and what we tell the server (in `ready`) after every welcome. */
export interface Setup {
  trainer: TrainerPort;
  ready: Ready;
}

/**
 * The page's own examples (join({ data })), packed and checked against the task's shape and classes. They
 * go to the trainer only; nothing of them leaves the page but the (masked) update.
 */
export async function pageExamples(data: NonNullable<ClientOptions['data']>, task: Task): Promise<Examples> {
  const got = await data();
  if (got && !Array.isArray(got) && (got as Examples).x instanceof Float32Array)
    return checkExamples(got as Examples, task.inputShape, task.numClasses);
  return packExamples(got as Parameters<typeof packExamples>[0], task.inputShape, task.numClasses);
}

/**
 * Spawns the trainer and has it load the data and probe backends, as the first welcome asks. `task` is
 * the welcome's, already checked (and matched against the page's pin) by the client.
 */
export async function prepare(
  opts: ClientOptions,
  w: Welcome,
  task: Task,
  report: (b: ClientEvents['backend']) => void,
): Promise<Setup> {
  // The page's data is read before a trainer exists: a page whose data does not fit the task spawns nothing.
  const examples = opts.data ? await pageExamples(opts.data, task) : null;
  const trainer = await opts.spawnTrainer();
  let r: Awaited<ReturnType<TrainerPort['init']>>;
  try {
    r = await trainer.init({
      type: 'init',
      task,
      data: examples ? { kind: 'inline', examples } : w.data,
      serverUrl: opts.serverUrl,
      backends: opts.backends,
    });
  } catch (e) {
    trainer.terminate();
    throw e;
  }
  report({
    backend: r.backend,
    skipped: r.skipped,
    where: trainer.where,
    threads: trainer.threads ?? 1,
    data: r.dataDescription,
  });
  // The example count stays here: under secure aggregation it travels only inside the masked vector.
  return { trainer, ready: { backend: r.backend } };
}
