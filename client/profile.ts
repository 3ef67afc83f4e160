/**
 * The privacy unit is a person, approximated by one browser profile: every tab of the profile shares one
 * stored identity (the server-issued session), and only one tab at a time takes part in training. Several
 * tabs as several clients would let one visitor count as several people, weakening per-person epsilon
 * and the colluder assumption. (A determined person can still use several profiles or devices; see the
 * threat model.)
 */

/** Where the profile's identity lives (localStorage in browsers; memory in Node and tests). */
export interface IdentityStore {
  get(): string | null;
  set(value: string): void;
  clear(): void;
}

interface StorageLike {
  getItem(k: string): string | null;
  setItem(k: string, v: string): void;
  removeItem(k: string): void;
}

export function memoryStore(): IdentityStore {
  let v: string | null = null;
  return { get: () => v, set: (x) => void (v = x), clear: () => void (v = null) };
}

/** One key per server, so a profile that joins two servers keeps two identities. */
export function storageStore(storage: StorageLike | null | undefined, serverUrl: string): IdentityStore {
  if (!storage) return memoryStore();
  const key = `aegisfl.identity.${new URL(serverUrl).origin}`;
  const safe = <T>(f: () => T, fallback: T): T => {
    try {
      return f();
    } catch {
      return fallback; // storage disabled (private mode, blocked cookies): behave like a fresh profile
    }
  };
  return {
    get: () => safe(() => storage.getItem(key), null),
    set: (v) => safe(() => storage.setItem(key, v), undefined),
    clear: () => safe(() => storage.removeItem(key), undefined),
  };
}

/** The part of the Web Locks API (navigator.locks) used here. */
export interface LockManagerLike {
  request(
    name: string,
    options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: unknown) => Promise<void> | void,
  ): Promise<unknown>;
}

const lockName = (serverUrl: string): string => `aegisfl.participation.${new URL(serverUrl).origin}`;

/** A held participation slot; release() lets another tab of the profile take part. */
export interface Participation {
  release(): void;
}

/**
 * Takes the profile's participation slot if no other tab holds it (Web Locks are shared by all tabs and
 * workers of one origin in one profile). Resolves null when another tab already participates. Where Web
 * Locks are missing (old browsers, Node), every caller gets a slot: there is only one "tab".
 */
export async function acquireParticipation(
  locks: LockManagerLike | null | undefined,
  serverUrl: string,
): Promise<Participation | null> {
  if (!locks) return { release: () => undefined };
  const name = lockName(serverUrl);
  return new Promise<Participation | null>((resolve, reject) => {
    locks
      .request(name, { ifAvailable: true }, (lock) => {
        if (!lock) {
          resolve(null);
          return;
        }
        // Hold the lock until released: the callback's promise keeps it.
        return new Promise<void>((done) => resolve({ release: done }));
      })
      .catch(reject);
  });
}

/**
 * The profile's participation slot, now or once it frees: if another tab holds it, calls onWaiting (the
 * page says so) and queues for it; the lock is granted when that tab stops, closes or reloads. Aborting
 * `signal` gives up the wait (the promise then rejects with the signal's reason).
 */
export async function takeParticipation(
  locks: LockManagerLike | null | undefined,
  serverUrl: string,
  onWaiting: () => void,
  signal?: AbortSignal,
): Promise<Participation> {
  const now = await acquireParticipation(locks, serverUrl);
  if (now) return now;
  signal?.throwIfAborted();
  onWaiting();
  return new Promise<Participation>((resolve, reject) => {
    locks!
      .request(
        lockName(serverUrl),
        signal ? { signal } : {},
        () => new Promise<void>((done) => resolve({ release: done })),
      )
      .catch(reject);
  });
}
