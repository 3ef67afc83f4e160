/** Public browser API: `const c = join({ serverUrl })` starts a participant training in a Web Worker. */
import { BACKENDS, type BackendName, type ClientSource } from '../shared/protocol/messages.ts';
import { AegisClient } from './client.ts';
import type { IdentityStore } from './profile.ts';
import type { ClientAttestation } from '../shared/secagg/client-session.ts';
import { spawnTrainer } from './spawn-trainer.ts';

export { AegisClient } from './client.ts';
export type { ClientEvents, ClientState } from './client.ts';

export interface JoinOptions {
  serverUrl?: string;
  source?: ClientSource;
  /** Where the server-issued session is kept (e.g. storageStore(sessionStorage, url)); default: memory. */
  identity?: IdentityStore;
  backends?: BackendName[];
  /**
   * The site's attestation key and this visitor's identity with the site's signature on it (from the
   * site's own backend). With it the client joins only rounds with authenticated keys and the consistency
   * round; the server cannot lower that.
   */
  attestation?: ClientAttestation;
}

/** Parses a comma-separated backend list (e.g. from a URL or data attribute); unknown names are an error. */
export function parseBackends(list: string | null | undefined): BackendName[] | undefined {
  if (!list) return undefined;
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names)
    if (!BACKENDS.includes(n as BackendName))
      throw new Error(`unknown backend "${n}"; use ${BACKENDS.join(', ')}`);
  return names as BackendName[];
}

export function join(opts: JoinOptions = {}): AegisClient {
  const client = new AegisClient({
    serverUrl: opts.serverUrl ?? location.origin,
    source: opts.source ?? 'embed',
    identity: opts.identity,
    backends: opts.backends,
    attestation: opts.attestation,
    spawnTrainer,
  });
  client.start();
  return client;
}
