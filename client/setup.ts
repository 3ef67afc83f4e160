import type { Ready, Welcome } from '../shared/protocol/messages.ts';
import type { ClientEvents, ClientOptions } from './client-api.ts';
import type { TrainerPort } from './trainer-port.ts';

/** What preparation leaves: the trainer, and what we tell the server (in `ready`) after every welcome. */
export interface Setup {
  trainer: TrainerPort;
  ready: Ready;
}

/** Spawns the trainer and has it load the data and probe backends, as the first welcome asks. */
export async function prepare(
  opts: ClientOptions,
  w: Welcome,
  report: (b: ClientEvents['backend']) => void,
): Promise<Setup> {
  const trainer = await opts.spawnTrainer();
  let r: Awaited<ReturnType<TrainerPort['init']>>;
  try {
    r = await trainer.init({
      type: 'init',
      model: w.model,
      data: w.data,
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
    data: r.dataDescription,
  });
  // The example count stays here: under secure aggregation it travels only inside the masked vector.
  return { trainer, ready: { backend: r.backend } };
}
