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

interface LockManagerLike {
  request(
    name: string,
    options: { ifAvailable: true },
    callback: (lock: unknown) => Promise<void> | void,
  ): Promise<unknown>;
}

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
  const name = `aegisfl.participation.${new URL(serverUrl).origin}`;
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
