import type { Redis } from 'ioredis';
import { STORE_KEYS, type StateStore, type StoreKey } from '../store.ts';
import { key } from './connect.ts';
import { FENCE_KEY } from './lease.ts';

/**
 * The run state (run record, checkpoint, privacy ledger) in Redis, written only by the current leader.
 *
 * Every put is one Lua script that compares the fence (lease.ts) with this store's token and writes only
 * if they are equal, atomically: once a newer coordinator has been granted the lease, an older one's
 * writes fail with StaleLeaderError, even if it has not yet noticed that it lost the lease. So two
 * coordinators that both believe they lead can never both charge the privacy ledger or both move the model.
 *
 * Durability: a put resolves when Redis has applied it (in memory, and in its AOF buffer when enabled).
 * Surviving a Redis restart or crash is Redis' own configuration, not this code's: a deployment must run
 * Redis with `appendonly yes` and `appendfsync always` (a ledger charge is then on disk before unmasking
 * starts, as with --state-dir) or at least `appendfsync everysec` (a crash can lose the last second of
 * writes, which could forget a charge), and/or a replica with failover. Without persistence a Redis
 * restart forgets the run, its ledger and the fence.
 */
export class StaleLeaderError extends Error {
  constructor(
    /** The token this store was built with. */
    readonly token: number,
    /** The fence in Redis when the write was refused (0 when it is missing). */
    readonly current: number,
    readonly storeKey: StoreKey,
  ) {
    super(
      `write of "${storeKey}" refused: a newer coordinator holds the lease (fence ${current}; this coordinator holds ${token})`,
    );
    this.name = 'StaleLeaderError';
  }
}

/** KEYS: fence, value key. ARGV: token, value. Returns {1} when written, else {0, the current fence}. */
const FENCED_SET = `
local f = redis.call('GET', KEYS[1])
if f == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return {1}
end
return {0, f or '0'}`;

/** Where each store key lives in Redis. */
export function stateKey(k: StoreKey): string {
  if (!STORE_KEYS.includes(k)) throw new RangeError(`unknown store key "${String(k)}"`);
  return key('state', k);
}

export class RedisStore implements StateStore {
  readonly where: string;

  /** `fenceToken` is the token of the lease this coordinator holds (LeaderLease.token). */
  constructor(
    private readonly redis: Redis,
    readonly fenceToken: number,
  ) {
    if (!Number.isSafeInteger(fenceToken) || fenceToken < 1)
      throw new RangeError(`fence token must be a positive integer, got ${String(fenceToken)}`);
    this.where = `redis ${redis.options.host}:${redis.options.port} (fence ${fenceToken})`;
  }

  async get(k: StoreKey): Promise<Uint8Array | null> {
    // getBuffer: the raw bytes (get() would decode them as UTF-8 and mangle a checkpoint).
    const b = await this.redis.getBuffer(stateKey(k));
    return b === null ? null : new Uint8Array(b); // a copy: the reply may be a view into a pooled buffer
  }

  /**
   * Writes only while this store's token is the latest fence; StaleLeaderError otherwise (nothing written).
   * Puts from one store are applied in call order (one connection, commands in order).
   */
  async put(k: StoreKey, value: Uint8Array): Promise<void> {
    if (!(value instanceof Uint8Array)) throw new TypeError('store values are bytes (Uint8Array)');
    // A Buffer over the same bytes: ioredis sends Buffers as they are, but would String() a plain Uint8Array.
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const r = (await this.redis.eval(
      FENCED_SET,
      2,
      FENCE_KEY,
      stateKey(k),
      String(this.fenceToken),
      bytes,
    )) as [number, string?];
    if (r[0] !== 1) throw new StaleLeaderError(this.fenceToken, Number(r[1] ?? 0), k);
  }
}
