import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startRedis, type RedisProcess } from '../../e2e/redis-server.ts';
import { connectRedis, ready } from './connect.ts';
import { currentFence, FENCE_KEY, LEASE_KEY, LeaderLease, LeaseAbortedError } from './lease.ts';

const TTL = 400;
const EVERY = 100;

/** Polls `cond` until it holds (generous: a loaded machine can be slow, and only "eventually" matters). */
async function eventually(cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('LeaderLease', () => {
  let server: RedisProcess;
  const clients: Redis[] = [];
  const leases: LeaderLease[] = [];

  async function client(name: string): Promise<Redis> {
    const c = connectRedis(server.url, name, () => undefined);
    clients.push(c);
    await ready(c, 10_000);
    return c;
  }

  async function acquire(
    redis: Redis,
    holder: string,
    lost: string[] = [],
    signal?: AbortSignal,
  ): Promise<LeaderLease> {
    const l = await LeaderLease.acquire(redis, {
      holder,
      ttlMs: TTL,
      renewEveryMs: EVERY,
      onLost: (r) => lost.push(r),
      signal,
    });
    leases.push(l);
    return l;
  }

  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
  });
  beforeEach(async () => {
    const c = await client('flush');
    await c.flushall();
  });
  afterEach(async () => {
    for (const l of leases.splice(0)) await l.release().catch(() => false);
  });

  it('grants the lease with token 1 first, and records the fence', async () => {
    const redis = await client('a');
    expect(await currentFence(redis)).toBe(0);
    const a = await acquire(redis, 'coord-a');
    expect(a.token).toBe(1);
    expect(a.holder).toBe('coord-a');
    expect(a.held).toBe(true);
    expect(await currentFence(redis)).toBe(1);
    expect(await redis.get(LEASE_KEY)).toBe('1 coord-a');
  });

  it('keeps a second acquirer waiting while the first renews, for many ttls', async () => {
    const a = await acquire(await client('a'), 'coord-a');
    let bGot: LeaderLease | null = null;
    const abort = new AbortController();
    const b = acquire(await client('b'), 'coord-b', [], abort.signal).then((l) => (bGot = l));
    await sleep(TTL * 4);
    expect(bGot).toBeNull();
    expect(a.held).toBe(true);
    abort.abort();
    await expect(b).rejects.toBeInstanceOf(LeaseAbortedError);
  });

  it('lets a standby take over once the leader stops renewing, with a larger token', async () => {
    const redisA = await client('a');
    const lostA: string[] = [];
    const a = await acquire(redisA, 'coord-a', lostA);
    const b = acquire(await client('b'), 'coord-b');
    // The leader's process freezes: its client goes away without releasing, renewals fail.
    redisA.disconnect();
    const lb = await b;
    expect(lb.token).toBeGreaterThan(a.token);
    await eventually(() => lostA.length === 1);
    expect(lostA[0]).toMatch(/no lease renewal succeeded/);
    expect(a.held).toBe(false);
  });

  it('lets a standby in at its next poll after release(), and tokens strictly increase', async () => {
    const tokens: number[] = [];
    let prev = await acquire(await client('c0'), 'coord-0');
    tokens.push(prev.token);
    for (let i = 1; i <= 4; i++) {
      const next = acquire(await client(`c${i}`), `coord-${i}`);
      expect(await prev.release()).toBe(true);
      expect(prev.held).toBe(false);
      prev = await next;
      tokens.push(prev.token);
    }
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]);
    expect(await currentFence(await client('check'))).toBe(tokens[tokens.length - 1]);
    // Released twice: the second is a no-op.
    const last = prev;
    expect(await last.release()).toBe(true);
    expect(await last.release()).toBe(false);
  });

  it('calls onLost exactly once when the lease is stolen (deleted and set by someone else)', async () => {
    const redis = await client('a');
    const lost: string[] = [];
    const a = await acquire(redis, 'coord-a', lost);
    const other = await client('thief');
    await other.del(LEASE_KEY);
    await other.set(LEASE_KEY, '99 thief', 'PX', 60_000);
    await eventually(() => lost.length > 0);
    await sleep(TTL * 2); // further renewals and the watchdog must not report it again
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/held by "99 thief"/);
    expect(a.held).toBe(false);
    expect(await a.release()).toBe(false);
    expect(await other.get(LEASE_KEY)).toBe('99 thief'); // a lost lease's release deletes nothing
  });

  it('calls onLost once when the lease vanishes (deleted)', async () => {
    const redis = await client('a');
    const lost: string[] = [];
    await acquire(redis, 'coord-a', lost);
    await (await client('other')).del(LEASE_KEY);
    await eventually(() => lost.length > 0);
    await sleep(TTL * 2);
    expect(lost).toEqual(['the lease expired before it was renewed']);
  });

  it('does not call onLost after release()', async () => {
    const lost: string[] = [];
    const a = await acquire(await client('a'), 'coord-a', lost);
    await a.release();
    await sleep(TTL * 2);
    expect(lost).toEqual([]);
  });

  it('a fence incremented elsewhere is still strictly exceeded by the next grant', async () => {
    const redis = await client('a');
    await redis.set(FENCE_KEY, '41');
    const a = await acquire(redis, 'coord-a');
    expect(a.token).toBe(42);
  });

  it('checks its options', async () => {
    const redis = await client('a');
    const base = { holder: 'h', ttlMs: TTL, renewEveryMs: EVERY, onLost: () => undefined };
    await expect(LeaderLease.acquire(redis, { ...base, holder: 'has space' })).rejects.toThrow(/holder/);
    await expect(LeaderLease.acquire(redis, { ...base, renewEveryMs: TTL })).rejects.toThrow(/renewEveryMs/);
    await expect(LeaderLease.acquire(redis, { ...base, ttlMs: 1.5 })).rejects.toThrow(/ttlMs/);
  });

  it('rejects (rather than waiting forever) when Redis refuses the script', async () => {
    const redis = await client('a');
    await redis.hset(FENCE_KEY, 'x', '1'); // the fence key holds a hash: INCR fails with WRONGTYPE
    await expect(
      LeaderLease.acquire(redis, { holder: 'h', ttlMs: TTL, renewEveryMs: EVERY, onLost: () => undefined }),
    ).rejects.toThrow(/WRONGTYPE|not an integer/);
  });
});

describe('LeaderLease when Redis dies', () => {
  it('calls onLost exactly once when redis-server is killed', async () => {
    const server = await startRedis();
    const redis = connectRedis(server.url, 'a', () => undefined);
    try {
      await ready(redis, 10_000);
      const lost: string[] = [];
      const a = await LeaderLease.acquire(redis, {
        holder: 'coord-a',
        ttlMs: TTL,
        renewEveryMs: EVERY,
        onLost: (r) => lost.push(r),
      });
      server.kill();
      await eventually(() => lost.length > 0);
      await sleep(TTL * 2);
      expect(lost).toHaveLength(1);
      expect(lost[0]).toMatch(/no lease renewal succeeded for 400 ms/);
      expect(a.held).toBe(false);
    } finally {
      redis.disconnect();
      server.kill();
    }
  });
});
