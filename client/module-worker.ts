/**
 * A module Web Worker for one of our bundled worker URLs. Cross-origin embeds (our script on someone else's
 * site) cannot construct a worker from our origin directly, so they go through a same-origin blob that
 * imports the worker module (our server sends CORS headers for it). `url` is resolved by the caller, against
 * its own module (where the bundler put the worker relative to it).
 */
export function moduleWorker(url: URL, name: string): Worker {
  const sameOrigin = typeof location !== 'undefined' && url.origin === location.origin;
  const src = sameOrigin
    ? url
    : URL.createObjectURL(
        new Blob([`import ${JSON.stringify(url.toString())};`], { type: 'text/javascript' }),
      );
  return new Worker(src, { type: 'module', name });
}
