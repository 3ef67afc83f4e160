import workerUrl from './secure.worker.ts?worker&url';
import {
  inlineSecureEngine,
  remoteSecureEngine,
  type EngineReply,
  type SecureEngine,
} from './secure-engine.ts';
import { moduleWorker } from './module-worker.ts';

/**
 * The secure engine in its own module Web Worker (module-worker.ts), so key agreement, masking and DP noise never hold up the host
 * page's frames. Without Worker support it runs inline.
 */
export function spawnSecureEngine(): SecureEngine {
  if (typeof Worker === 'undefined') return inlineSecureEngine();
  const w = moduleWorker(new URL(workerUrl, import.meta.url), 'aegis-secure');
  return remoteSecureEngine({
    send: (c, transfer) => w.postMessage(c, transfer),
    onReply: (fn) => {
      w.onmessage = (e: MessageEvent<EngineReply>) => fn(e.data);
    },
    close: () => w.terminate(),
  });
}
