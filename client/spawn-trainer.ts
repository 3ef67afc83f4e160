import workerUrl from './train.worker.ts?worker&url';
import { createInlineTrainerPort, createTrainerPort, type TrainerPort } from './trainer-port.ts';
import type { TrainerResponse } from './worker-protocol.ts';
import { createTrainerPair } from './trainer-pair.ts';

/**
 * Starts training in a module Web Worker, so the page stays responsive. Cross-origin embeds (our script on
 * someone else's site) cannot construct a worker from our origin directly, so they go through a same-origin
 * blob that imports the worker module (our server sends CORS headers for it). With `threads` 2, a second
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
  const url = new URL(workerUrl, import.meta.url);
  const sameOrigin = typeof location !== 'undefined' && url.origin === location.origin;
  const src = sameOrigin
    ? url
    : URL.createObjectURL(
        new Blob([`import ${JSON.stringify(url.toString())};`], { type: 'text/javascript' }),
      );
  const w = new Worker(src, { type: 'module', name });
  return createTrainerPort('worker', {
    send: (req, transfer) => w.postMessage(req, transfer),
    onMessage: (fn) => {
      w.onmessage = (e: MessageEvent<TrainerResponse>) => fn(e.data);
      w.onerror = (e) => fn({ type: 'error', message: `worker failed: ${e.message}` });
    },
    close: () => w.terminate(),
  });
}
