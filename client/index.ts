/** Public browser API: `const c = join({ serverUrl })` starts a participant training in a Web Worker. */
import { BACKENDS, type BackendName, type ClientSource } from '../shared/protocol/messages.ts';
import { makeFloors, type Floors } from '../shared/protocol/floors.ts';
import type { ClientOptions } from './client-api.ts';
import { AegisClient } from './client.ts';
import { storageStore, takeParticipation, type IdentityStore, type LockManagerLike } from './profile.ts';
import type { ClientAttestation } from '../shared/secagg/client-session.ts';
import { spawnTrainer } from './spawn-trainer.ts';
import { defaultTrainThreads } from './trainer-pair.ts';
import { browserEnv, GuestPolicy } from './guest.ts';
import { spawnSecureEngine } from './spawn-secure.ts';

export { AegisClient } from './client.ts';
export type { ClientEvents, ClientState } from './client.ts';
export { parseFloors, type Floors } from '../shared/protocol/floors.ts';
export { checkTask, taskHash, type Task } from '../shared/model/task.ts';
export type { Example, Examples } from '../shared/data/examples.ts';

/** What a page shows while its client is in the 'waiting' state. */
export const WAITING_MESSAGE = 'another tab of this browser is already taking part';

export interface JoinOptions {
  serverUrl?: string;
  source?: ClientSource;
  /**
   * Where the server-issued session is kept. Default: this browser profile's localStorage (one identity
   * per server origin, shared by its tabs and kept across reloads); memory where storage is blocked.
   */
  identity?: IdentityStore;
  backends?: BackendName[];
  /** The page's floors (shared/protocol/floors.ts); default makeFloors(). An invalid one throws: nothing joins. */
  floors?: Partial<Floors>;
  /**
   * The site's attestation key and this visitor's identity with the site's signature on it (from the
   * site's own backend). With it the client joins only rounds with authenticated keys and the consistency
   * round; the server cannot lower that.
   */
  attestation?: ClientAttestation;
  /**
   * Most of one core training may use, in (0, 1] (a duty cycle; default 1). Whatever it is, training
   * pauses while the tab is hidden, and rounds are sat out on data saver or a low battery.
   */
  cpuShare?: number;
  /** The join token the site minted for this visitor (see ClientOptions.joinToken). */
  token?: string;
  /**
   * The task this page agreed to (docs/tasks.md): the client trains only a server task with its hash and
   * refuses any other (task_mismatch), so the server cannot choose what the visitor's data runs through.
   */
  task?: ClientOptions['task'];
  /** The agreed task's hash alone (64 hex digits), e.g. from the script tag's data-task-hash. */
  taskHash?: string;
  /** The visitor's examples, from the page itself: they never leave the page and its worker. */
  data?: ClientOptions['data'];
  /**
   * Workers training where the backend is wasm or cpu: 2 splits every batch between two (same update;
   * 1.0-1.4x on a 2-core machine, bench:train). Default: 2 on the demo page with 4 or more cores, else 1,
   * so an embed takes one core of its host's visitor.
   */
  trainThreads?: 1 | 2;
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

function profileStorage(): Storage | null {
  try {
    return localStorage; // reading it throws where storage is blocked
  } catch {
    return null;
  }
}

function webLocks(): LockManagerLike | undefined {
  return typeof navigator === 'undefined' ? undefined : (navigator.locks as LockManagerLike | undefined);
}

/**
 * Joins as this browser profile: one identity for all its tabs (localStorage), and one tab at a time takes
 * part (a Web Lock); another tab waits in the 'waiting' state until the slot frees, then joins.
 */
export function join(opts: JoinOptions = {}): AegisClient {
  const serverUrl = opts.serverUrl ?? location.origin;
  const client = new AegisClient({
    serverUrl,
    source: opts.source ?? 'embed',
    identity: opts.identity ?? storageStore(profileStorage(), serverUrl),
    backends: opts.backends,
    floors: makeFloors(opts.floors),
    participation: (onWaiting, signal) => takeParticipation(webLocks(), serverUrl, onWaiting, signal),
    attestation: opts.attestation,
    guest: new GuestPolicy({ cpuShare: opts.cpuShare }, browserEnv()),
    joinToken: opts.token,
    task: opts.task,
    taskHash: opts.taskHash,
    data: opts.data,
    // A CPU share below 1 paces one worker: a second would double what the page allowed.
    spawnTrainer: () =>
      spawnTrainer(
        (opts.cpuShare ?? 1) < 1
          ? 1
          : (opts.trainThreads ??
              defaultTrainThreads(opts.source ?? 'embed', globalThis.navigator?.hardwareConcurrency)),
      ),
    secureEngine: spawnSecureEngine,
  });
  client.start();
  return client;
}
