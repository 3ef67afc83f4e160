import { describe, expect, it } from 'vitest';
import { acquireParticipation, memoryStore, storageStore } from './profile.ts';

/** The Web Locks semantics we rely on: one holder per name; ifAvailable hands null to the others. */
function fakeLocks() {
  const held = new Set<string>();
  return {
    held,
    async request(name: string, _o: { ifAvailable: true }, cb: (lock: unknown) => Promise<void> | void) {
      if (held.has(name)) return cb(null);
      held.add(name);
      try {
        return await cb({ name });
      } finally {
        held.delete(name);
      }
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

  it('without Web Locks every caller participates (one context only)', async () => {
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
