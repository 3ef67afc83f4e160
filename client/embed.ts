/**
 * The script tag for participating sites:
 *   <script type="module" src="https://fl.example.org/aegis-embed.js" data-consent="required"></script>
 * It joins the server it was loaded from. With data-consent="required" it waits until the page calls
 * window.aegisfl.join() (after the visitor agreed); otherwise it joins when the page is idle.
 */
import { join, parseBackends } from './index.ts';
import type { AegisClient } from './client.ts';

const serverUrl = new URL(import.meta.url).origin;
const script = document.querySelector<HTMLScriptElement>('script[src*="aegis-embed.js"]');
let client: AegisClient | null = null;

const api = {
  join(): AegisClient {
    client ??= join({ serverUrl, source: 'embed', backends: parseBackends(script?.dataset.backends) });
    return client;
  },
  leave(): void {
    client?.stop();
    client = null;
  },
  get client(): AegisClient | null {
    return client;
  },
};
(window as unknown as { aegisfl: typeof api }).aegisfl = api;

if (script?.dataset.consent !== 'required') {
  const start = (): void => void api.join();
  if ('requestIdleCallback' in window) requestIdleCallback(start, { timeout: 5000 });
  else setTimeout(start, 1000);
}
