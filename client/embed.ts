/**
 * The script tag for participating sites:
 *   <script type="module" src="https://fl.example.org/aegis-embed.js" data-consent="required"
 *           data-min-cohort="10" data-min-noise="0.8"></script>
 * It joins the server it was loaded from. With data-consent="required" it waits until the page calls
 * window.aegisfl.join() (after the visitor agreed); otherwise it joins when the page is idle. The page's
 * floors (data-secagg, data-min-cohort, data-min-threshold, data-min-noise, data-max-clip; see
 * shared/protocol/floors.ts) are read once: an invalid one is reported and nothing joins.
 */
import { join, parseBackends, parseFloors, type Floors } from './index.ts';
import type { AegisClient } from './client.ts';

const serverUrl = new URL(import.meta.url).origin;
const script = document.querySelector<HTMLScriptElement>('script[src*="aegis-embed.js"]');
let client: AegisClient | null = null;

let floors: Floors | null = null;
let problem: Error | null = null;
try {
  floors = parseFloors({ ...script?.dataset });
} catch (e) {
  problem = new Error(`aegisfl: not joining: ${(e as Error).message}`);
  console.error(problem.message);
}

const api = {
  join(): AegisClient {
    if (problem || !floors) throw problem ?? new Error('aegisfl: no floors');
    client ??= join({
      serverUrl,
      source: 'embed',
      backends: parseBackends(script?.dataset.backends),
      floors,
    });
    return client;
  },
  leave(): void {
    client?.stop();
    client = null;
  },
  get client(): AegisClient | null {
    return client;
  },
  /** Why this page will not join (an invalid data-* floor), or null. */
  get error(): string | null {
    return problem?.message ?? null;
  },
};
(window as unknown as { aegisfl: typeof api }).aegisfl = api;

if (!problem && script?.dataset.consent !== 'required') {
  const start = (): void => void api.join();
  if ('requestIdleCallback' in window) requestIdleCallback(start, { timeout: 5000 });
  else setTimeout(start, 1000);
}
