/**
 * The script tag for participating sites (the loader: a few kB, nothing else is fetched before join):
 *   <script type="module" src="https://fl.example.org/aegis-embed.js" data-consent="required"
 *           data-token="<join token>" data-min-cohort="10" data-min-noise="0.8" data-cpu-share="0.5"></script>
 * data-token is a join token the site's backend mints for each visitor (POST /api/join-token on the
 * server, or `npm run token`); a server with --join-token-key admits no one without one. It is short-lived
 * and single-use, so it is minted per page view, not written once into a static page.
 * It joins the server it was loaded from. With data-consent="required" it waits until the page calls
 * window.aegisfl.join() (after the visitor agreed); otherwise it joins when the page is idle. join() loads
 * the client (embed-client.ts: tfjs in a worker, secure aggregation in another) and resolves to it; an
 * invalid data-* floor or data-cpu-share rejects it, and nothing joins.
 *
 * A site that pins the task its visitors train adds data-task-hash="<64 hex digits>" (docs/tasks.md): the
 * client then refuses a server whose task has another hash.
 *
 * A site that vouches for its visitors' keys adds data-attestation-key="<hex Ed25519 public key>" and
 * calls window.aegisfl.join({ identity: { secretKey, publicKey }, signature }) with the identity its own
 * backend attested; the client then joins only rounds with the consistency round (docs/protocol.md).
 */
import type { AegisClient } from './client.ts';
import type { ClientAttestation } from '../shared/secagg/client-session.ts';

const serverUrl = new URL(import.meta.url).origin;
const script = document.querySelector<HTMLScriptElement>('script[src*="aegis-embed.js"]');
const dataset: Record<string, string | undefined> = { ...script?.dataset };

let joining: Promise<AegisClient> | null = null;
let client: AegisClient | null = null;
let problem: Error | null = null;

const api = {
  join(attested?: Omit<ClientAttestation, 'sitePublicKey'>): Promise<AegisClient> {
    joining ??= import('./embed-client.ts')
      .then((m) => (client = m.joinFromTag(dataset, serverUrl, attested)))
      .catch((e: Error) => {
        problem = new Error(`aegisfl: not joining: ${e.message}`);
        joining = null;
        console.error(problem.message);
        throw problem;
      });
    return joining;
  },
  leave(): void {
    client?.stop();
    client = null;
    joining = null;
  },
  get client(): AegisClient | null {
    return client;
  },
  /** Why this page did not join (an invalid data-* attribute, a failed load), or null. */
  get error(): string | null {
    return problem?.message ?? null;
  },
};
(window as unknown as { aegisfl: typeof api }).aegisfl = api;

// With an attestation key the page must hand over the visitor's identity: no join on idle.
if (dataset.consent !== 'required' && dataset.attestationKey === undefined) {
  const start = (): void => void api.join().catch(() => {});
  if ('requestIdleCallback' in window) requestIdleCallback(start, { timeout: 5000 });
  else setTimeout(start, 1000);
}
