import { describe, expect, it } from 'vitest';
import { acquireParticipation, memoryStore, storageStore, takeParticipation } from './profile.ts';

/**
 * The Web Locks semantics we rely on: one holder per name; ifAvailable hands null to the others; any
 * other request queues until the holder's callback settles; aborting a queued request rejects it.
 */
function fakeLocks() {
  const held = new Set<string>();
  const queues = new Map<string, (() => void)[]>();
  const take = async (name: string, cb: (lock: unknown) => Promise<void> | void): Promise<unknown> => {
    held.add(name);
    try {
      return await cb({ name });
    } finally {
      held.delete(name);
      queues.get(name)?.shift()?.();
    }
  };
  return {
    held,
    queued: (name: string) => queues.get(name)?.length ?? 0,
    async request(
      name: string,
      o: { ifAvailable?: boolean; signal?: AbortSignal },
      cb: (lock: unknown) => Promise<void> | void,
    ): Promise<unknown> {
      if (!held.has(name)) return take(name, cb);
      if (o.ifAvailable) return cb(null);
      await new Promise<void>((granted, aborted) => {
        const q = queues.get(name) ?? [];
        queues.set(name, q);
        q.push(granted);
        o.signal?.addEventListener('abort', () => {
          q.splice(q.indexOf(granted), 1);
          aborted(o.signal!.reason);
        });
      });
      return take(name, cb);
    },
  };
}

function fakeStorage() {
  const m = new Map<string, string>();
  return {
    m,
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
  };
}

describe('one participation per browser profile', () => {
  it('a second tab gets no slot until the first releases it', async () => {
    const locks = fakeLocks();
    const a = await acquireParticipation(locks, 'https://fl.example.org/x');
    expect(a).not.toBeNull();
    expect(await acquireParticipation(locks, 'https://fl.example.org/')).toBeNull();
    // Another server is another slot.
    expect(await acquireParticipation(locks, 'https://other.example.org/')).not.toBeNull();
    a!.release();
    await new Promise((r) => setTimeout(r, 0));
    expect(await acquireParticipation(locks, 'https://fl.example.org/')).not.toBeNull();
  });

  it('a tab that finds the slot taken says so, waits, and takes it when the first tab lets go', async () => {
    const locks = fakeLocks();
    const url = 'https://fl.example.org/';
    let waited = 0;
    const first = await takeParticipation(locks, url, () => waited++);
    expect(waited).toBe(0);
    let second: unknown = null;
    void takeParticipation(locks, url, () => waited++).then((p) => (second = p));
    await new Promise((r) => setTimeout(r, 0));
    expect(waited).toBe(1);
    expect(second).toBeNull();
    first.release();
    await new Promise((r) => setTimeout(r, 0));
    expect(second).not.toBeNull();
    expect(await acquireParticipation(locks, url)).toBeNull(); // the second tab holds it now
  });

  it('a wait given up (the tab stopped) leaves the queue, and the slot goes to nobody else by mistake', async () => {
    const locks = fakeLocks();
    const url = 'https://fl.example.org/';
    const first = await takeParticipation(locks, url, () => undefined);
    const stop = new AbortController();
    const waiting = takeParticipation(locks, url, () => undefined, stop.signal);
    await new Promise((r) => setTimeout(r, 0));
    expect(locks.queued('aegisfl.participation.https://fl.example.org')).toBe(1);
    stop.abort(new Error('stopped'));
    await expect(waiting).rejects.toThrow('stopped');
    expect(locks.queued('aegisfl.participation.https://fl.example.org')).toBe(0);
    first.release();
    await new Promise((r) => setTimeout(r, 0));
    expect(await acquireParticipation(locks, url)).not.toBeNull();
  });

  it('without Web Locks every caller participates (one context only)', async () => {
    expect(
      await takeParticipation(undefined, 'https://fl.example.org/', () => expect.fail('waited')),
    ).toBeTruthy();
    expect(await acquireParticipation(undefined, 'https://fl.example.org/')).not.toBeNull();
  });
});

describe('identity store', () => {
  it('tabs of one profile share one identity per server origin', () => {
    const s = fakeStorage();
    const tab1 = storageStore(s, 'https://fl.example.org/demo/');
    const tab2 = storageStore(s, 'https://fl.example.org/');
    tab1.set('session-a');
    expect(tab2.get()).toBe('session-a');
    expect(storageStore(s, 'https://other.example.org/').get()).toBeNull();
    tab2.clear();
    expect(tab1.get()).toBeNull();
  });

  it('disabled storage behaves like a fresh profile instead of throwing', () => {
    const broken = {
      getItem: () => {
        throw new Error('SecurityError');
      },
      setItem: () => {
        throw new Error('QuotaExceeded');
      },
      removeItem: () => undefined,
    };
    const st = storageStore(broken, 'https://fl.example.org/');
    expect(() => st.set('x')).not.toThrow();
    expect(st.get()).toBeNull();
    const mem = memoryStore();
    mem.set('y');
    expect(mem.get()).toBe('y');
  });
});
