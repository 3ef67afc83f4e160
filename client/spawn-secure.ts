import workerUrl from './secure.worker.ts?worker&url';
import {
  inlineSecureEngine,
  remoteSecureEngine,
  type EngineReply,
  type SecureEngine,
} from './secure-engine.ts';

/**
 * The secure engine in its own module Web Worker (cross-origin embeds go through a same-origin blob, as
 * the trainer does; see spawn-trainer.ts), so key agreement, masking and DP noise never hold up the host
 * page's frames. Without Worker support it runs inline.
 */
export function spawnSecureEngine(): SecureEngine {
  if (typeof Worker === 'undefined') return inlineSecureEngine();
  const url = new URL(workerUrl, import.meta.url);
  const sameOrigin = typeof location !== 'undefined' && url.origin === location.origin;
  const src = sameOrigin
    ? url
    : URL.createObjectURL(
        new Blob([`import ${JSON.stringify(url.toString())};`], { type: 'text/javascript' }),
      );
  const w = new Worker(src, { type: 'module', name: 'aegis-secure' });
  return remoteSecureEngine({
    send: (c, transfer) => w.postMessage(c, transfer),
    onReply: (fn) => {
      w.onmessage = (e: MessageEvent<EngineReply>) => fn(e.data);
    },
    close: () => w.terminate(),
  });
}
