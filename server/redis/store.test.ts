import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startRedis, type RedisProcess } from '../../e2e/redis-server.ts';
import { decodeLedger, RunState } from '../run-state.ts';
import { connectRedis, ready } from './connect.ts';
import { currentFence, FENCE_KEY, LeaderLease } from './lease.ts';
import { RedisStore, StaleLeaderError, stateKey } from './store.ts';

describe('RedisStore', () => {
  let server: RedisProcess;
  let redis: Redis;

  /** Bumps the fence as a newly granted lease would, and returns the new token. */
  const bumpFence = async (): Promise<number> => Number(await redis.incr(FENCE_KEY));

  beforeAll(async () => {
    server = await startRedis();
    redis = connectRedis(server.url, 'store-test', () => undefined);
    await ready(redis, 10_000);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });
  beforeEach(async () => {
    await redis.flushall();
  });

  it('round-trips every byte value unchanged, and says where it is', async () => {
    const store = new RedisStore(redis, await bumpFence());
    const all = new Uint8Array(512);
    for (let i = 0; i < all.length; i++) all[i] = i % 256;
    // A view into a larger buffer: only the viewed bytes are stored.
    const padded = new Uint8Array(all.length + 7);
    padded.set(all, 3);
    await store.put('checkpoint', padded.subarray(3, 3 + all.length));
    const back = await store.get('checkpoint');
    expect(back).toBeInstanceOf(Uint8Array);
    expect(Array.from(back!)).toEqual(Array.from(all));
    // Not valid UTF-8 either way round: what Redis holds are the very bytes.
    expect(Array.from((await redis.getBuffer(stateKey('checkpoint')))!)).toEqual(Array.from(all));
    expect(store.where).toBe(`redis 127.0.0.1:${server.port} (fence 1)`);
  });

  it('round-trips an empty value and returns null when absent', async () => {
    const store = new RedisStore(redis, await bumpFence());
    expect(await store.get('ledger')).toBeNull();
    await store.put('ledger', new Uint8Array(0));
    expect(await store.get('ledger')).toEqual(new Uint8Array(0));
    expect(await store.get('run')).toBeNull();
  });

  it('refuses a put with a stale token and leaves the value unchanged', async () => {
    const old = new RedisStore(redis, await bumpFence());
    await old.put('ledger', Uint8Array.of(1, 2, 3));
    const newer = await bumpFence();
    const err = await old.put('ledger', Uint8Array.of(9, 9)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StaleLeaderError);
    expect((err as StaleLeaderError).message).toBe(
      `write of "ledger" refused: a newer coordinator holds the lease (fence ${newer}; this coordinator holds ${newer - 1})`,
    );
    expect((err as StaleLeaderError).token).toBe(newer - 1);
    expect((err as StaleLeaderError).current).toBe(newer);
    expect(await old.get('ledger')).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('refuses every put when no fence exists yet', async () => {
    const store = new RedisStore(redis, 1);
    await expect(store.put('run', Uint8Array.of(1))).rejects.toThrow(/fence 0; this coordinator holds 1/);
    expect(await store.get('run')).toBeNull();
  });

  it('of two stores with tokens N and N+1, only N+1 can write (in either order)', async () => {
    const n = await bumpFence();
    const a = new RedisStore(redis, n);
    const b = new RedisStore(redis, await bumpFence());
    for (const k of ['run', 'checkpoint', 'ledger'] as const) {
      await expect(a.put(k, Uint8Array.of(1))).rejects.toBeInstanceOf(StaleLeaderError);
      await b.put(k, Uint8Array.of(2));
      await expect(a.put(k, Uint8Array.of(1))).rejects.toBeInstanceOf(StaleLeaderError);
      expect(await a.get(k)).toEqual(Uint8Array.of(2));
    }
  });

  it('with real leases: the old leader cannot charge the ledger once a new one holds the lease', async () => {
    const opts = { ttlMs: 400, renewEveryMs: 100, onLost: () => undefined };
    const first = await LeaderLease.acquire(redis, { ...opts, holder: 'coord-a' });
    const runA = await RunState.open(new RedisStore(redis, first.token));
    await runA.charge({ round: 1, attempt: 1 }, 0.1, 1.1);
    // The lease passes to coord-b (here by release; the stale-leader case is the same token arithmetic).
    const next = LeaderLease.acquire(redis, { ...opts, holder: 'coord-b' });
    await first.release();
    const second = await next;
    expect(second.token).toBe(first.token + 1);
    expect(await currentFence(redis)).toBe(second.token);

    const runB = await RunState.open(new RedisStore(redis, second.token));
    expect(runB.runId).toBe(runA.runId);
    expect(runB.loaded.boots).toBe(1);
    expect(runB.ledger).toEqual([{ round: 1, attempt: 1, q: 0.1, z: 1.1, status: 'charged' }]);

    // coord-a still thinks it leads and charges round 2: refused, and the ledger is coord-b's.
    await expect(runA.charge({ round: 2, attempt: 1 }, 0.1, 1.1)).rejects.toBeInstanceOf(StaleLeaderError);
    await runB.charge({ round: 2, attempt: 2 }, 0.2, 1.2);
    const stored = decodeLedger((await new RedisStore(redis, second.token).get('ledger'))!, runB.runId);
    expect(stored.map((e) => [e.round, e.attempt])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    // A stale coordinator cannot even open the run (its start is recorded with a put).
    await expect(RunState.open(new RedisStore(redis, first.token))).rejects.toBeInstanceOf(StaleLeaderError);
    await second.release();
  });

  it('checks its inputs', async () => {
    expect(() => new RedisStore(redis, 0)).toThrow(/positive integer/);
    expect(() => new RedisStore(redis, 1.5)).toThrow(/positive integer/);
    const store = new RedisStore(redis, await bumpFence());
    await expect(store.put('nope' as 'run', Uint8Array.of(1))).rejects.toThrow(/unknown store key/);
    await expect(store.put('run', [1, 2] as unknown as Uint8Array)).rejects.toThrow(/bytes/);
  });
});
