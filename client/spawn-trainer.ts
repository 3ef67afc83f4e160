import workerUrl from './train.worker.ts?worker&url';
import { createInlineTrainerPort, createTrainerPort, type TrainerPort } from './trainer-port.ts';
import type { TrainerResponse } from './worker-protocol.ts';
import { createTrainerPair } from './trainer-pair.ts';
import { moduleWorker } from './module-worker.ts';

/**
 * Starts training in a module Web Worker (module-worker.ts), so the page stays responsive. With `threads` 2, a second
 * worker joins the first where it trains on a CPU backend (trainer-pair.ts). Without Worker support,
 * training falls back to the main thread.
 */
export async function spawnTrainer(threads = 1): Promise<TrainerPort> {
  if (typeof Worker !== 'undefined') {
    const first = workerTrainer('aegis-trainer');
    if (threads < 2) return first;
    return createTrainerPair(
      first,
      async () => workerTrainer('aegis-trainer-2'),
      () => new MessageChannel(),
    );
  }
  await import('./backends-browser.ts');
  const { createTrainerHost } = await import('./trainer-host.ts');
  const { softwareGpuPrecheck } = await import('./gpu-adapter.ts');
  const { BACKEND_PREFERENCE } = await import('./backends.ts');
  return createInlineTrainerPort((post) => createTrainerHost(post, softwareGpuPrecheck(BACKEND_PREFERENCE)));
}

function workerTrainer(name: string): TrainerPort {
  const w = moduleWorker(new URL(workerUrl, import.meta.url), name);
  return createTrainerPort('worker', {
    send: (req, transfer) => w.postMessage(req, transfer),
    onMessage: (fn) => {
      w.onmessage = (e: MessageEvent<TrainerResponse>) => fn(e.data);
      w.onerror = (e) => fn({ type: 'error', message: `worker failed: ${e.message}` });
    },
    close: () => w.terminate(),
  });
}
