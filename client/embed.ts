/**
 * The script tag for participating sites:
 *   <script type="module" src="https://fl.example.org/aegis-embed.js" data-consent="required"
 *           data-token="<join token>" data-min-cohort="10" data-min-noise="0.8"></script>
 * data-token is a join token the site's backend mints for each visitor (POST /api/join-token on the
 * server, or `npm run token`); a server with --join-token-key admits no one without one. It is short-lived
 * and single-use, so it is minted per page view, not written once into a static page.
 * It joins the server it was loaded from. With data-consent="required" it waits until the page calls
 * window.aegisfl.join() (after the visitor agreed); otherwise it joins when the page is idle. The page's
 * floors (data-secagg, data-min-cohort, data-min-threshold, data-min-noise, data-max-clip; see
 * shared/protocol/floors.ts) are read once: an invalid one is reported and nothing joins.
 *
 * A site that pins the task its visitors train adds data-task-hash="<64 hex digits>" (docs/tasks.md): the
 * client then refuses a server whose task has another hash.
 *
 * A site that vouches for its visitors' keys adds data-attestation-key="<hex Ed25519 public key>" and
 * calls window.aegisfl.join({ identity: { secretKey, publicKey }, signature }) with the identity its own
 * backend attested; the client then joins only rounds with the consistency round (docs/protocol.md).
 */
import { hexToBytes } from '@noble/hashes/utils.js';
import { join, parseBackends, parseFloors, type Floors } from './index.ts';
import type { AegisClient } from './client.ts';
import type { ClientAttestation } from '../shared/secagg/client-session.ts';

const serverUrl = new URL(import.meta.url).origin;
const script = document.querySelector<HTMLScriptElement>('script[src*="aegis-embed.js"]');
const siteKeyHex = script?.dataset.attestationKey;
let client: AegisClient | null = null;

let floors: Floors | null = null;
let problem: Error | null = null;
try {
  floors = parseFloors({ ...script?.dataset });
} catch (e) {
  problem = new Error(`aegisfl: not joining: ${(e as Error).message}`);
  console.error(problem.message);
}

/** The site's attestation key from the script tag: 64 hex digits, else an error (never silently off). */
function siteKey(): Uint8Array | null {
  if (siteKeyHex === undefined) return null;
  if (!/^[0-9a-fA-F]{64}$/.test(siteKeyHex)) throw new Error('data-attestation-key must be 64 hex digits');
  return hexToBytes(siteKeyHex.toLowerCase());
}

const api = {
  join(attested?: Omit<ClientAttestation, 'sitePublicKey'>): AegisClient {
    if (problem || !floors) throw problem ?? new Error('aegisfl: no floors');
    const sitePublicKey = siteKey();
    if (sitePublicKey && !attested)
      throw new Error(
        'data-attestation-key is set: join({ identity, signature }) with the attested identity',
      );
    if (attested && !sitePublicKey)
      throw new Error('an attested identity needs the site key in data-attestation-key on the script tag');
    const attestation = sitePublicKey && attested ? { ...attested, sitePublicKey } : undefined;
    client ??= join({
      serverUrl,
      source: 'embed',
      backends: parseBackends(script?.dataset.backends),
      floors,
      attestation,
      token: script?.dataset.token || undefined,
      taskHash: script?.dataset.taskHash,
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

// With an attestation key the page must hand over the visitor's identity: no join on idle.
if (!problem && script?.dataset.consent !== 'required' && siteKeyHex === undefined) {
  const start = (): void => void api.join();
  if ('requestIdleCallback' in window) requestIdleCallback(start, { timeout: 5000 });
  else setTimeout(start, 1000);
}
