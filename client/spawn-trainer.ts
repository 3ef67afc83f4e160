import workerUrl from './train.worker.ts?worker&url';
import { createInlineTrainerPort, createTrainerPort, type TrainerPort } from './trainer-port.ts';
import type { TrainerResponse } from './worker-protocol.ts';

/**
 * Starts training in a module Web Worker, so the page stays responsive. Cross-origin embeds (our script on
 * someone else's site) cannot construct a worker from our origin directly, so they go through a same-origin
 * blob that imports the worker module (our server sends CORS headers for it). Without Worker support,
 * training falls back to the main thread.
 */
export async function spawnTrainer(): Promise<TrainerPort> {
  const url = new URL(workerUrl, import.meta.url);
  if (typeof Worker !== 'undefined') {
    const sameOrigin = typeof location !== 'undefined' && url.origin === location.origin;
    const src = sameOrigin
      ? url
      : URL.createObjectURL(
          new Blob([`import ${JSON.stringify(url.toString())};`], { type: 'text/javascript' }),
        );
    const w = new Worker(src, { type: 'module', name: 'aegis-trainer' });
    return createTrainerPort('worker', {
      send: (req, transfer) => w.postMessage(req, transfer),
      onMessage: (fn) => {
        w.onmessage = (e: MessageEvent<TrainerResponse>) => fn(e.data);
        w.onerror = (e) => fn({ type: 'error', message: `worker failed: ${e.message}` });
      },
      close: () => w.terminate(),
    });
  }
  await import('./backends-browser.ts');
  const { createTrainerHost } = await import('./trainer-host.ts');
  const { softwareGpuPrecheck } = await import('./gpu-adapter.ts');
  const { BACKEND_PREFERENCE } = await import('./backends.ts');
  return createInlineTrainerPort((post) => createTrainerHost(post, softwareGpuPrecheck(BACKEND_PREFERENCE)));
}
