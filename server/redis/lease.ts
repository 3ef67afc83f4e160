import { performance } from 'node:perf_hooks';
import { ReplyError, type Redis } from 'ioredis';
import { key } from './connect.ts';

/**
 * The coordinator's leader lease, with a fencing token.
 *
 * One key holds the lease (`<token> <holder>`, with a TTL); another holds the fence, a counter bumped
 * every time the lease is granted. A new leader's token is therefore strictly greater than every earlier
 * leader's, and the shared state (RedisStore) refuses writes made with any token but the latest. That is
 * what makes a lease safe despite clocks and pauses: an old leader that has not yet noticed it lost the
 * lease (a GC pause, a slow network) still cannot write, because its token is stale.
 *
 * The fence lives as long as the Redis data does: a Redis that loses its data (no AOF, no replica) restarts
 * the counter, like every other piece of state it held; deployments persist it (see store.ts).
 */
export const LEASE_KEY = key('coordinator', 'lease');
export const FENCE_KEY = key('coordinator', 'fence');

// All three run atomically in Redis, so "check, then act" cannot interleave with another coordinator.
/** KEYS: lease, fence. ARGV: holder, ttl ms. Returns the new token, or 0 when the lease is held. */
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token`;

/** KEYS: lease. ARGV: our lease value, ttl ms. Returns 1 when renewed, else the current value or 0 if none. */
const RENEW = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return v end
return 0`;

/** KEYS: lease. ARGV: our lease value. Deletes the lease only if it is still ours. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface LeaseOptions {
  /** Who asks (host, pid, random): in the lease value, in logs and in onLost reasons. */
  holder: string;
  /** How long the lease lives without a renewal. */
  ttlMs: number;
  /** How often the leader renews it, and how often a standby asks for it; well below ttlMs. */
  renewEveryMs: number;
  /**
   * Called at most once, when this process must stop acting as leader: a renewal found the lease gone or
   * taken, or no renewal succeeded for longer than ttlMs. Not called after release().
   */
  onLost: (reason: string) => void;
  /** Aborts the wait as a standby (acquire rejects); has no effect once the lease is held. */
  signal?: AbortSignal;
}

/** acquire() gave up waiting because its signal was aborted. */
export class LeaseAbortedError extends Error {
  constructor() {
    super('leader lease: waiting as standby was aborted');
    this.name = 'LeaseAbortedError';
  }
}

/** The latest fencing token granted (0 before any). */
export async function currentFence(redis: Redis): Promise<number> {
  const v = await redis.get(FENCE_KEY);
  if (v === null) return 0;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${FENCE_KEY} holds ${v.slice(0, 40)}, not a count`);
  return n;
}

/** A connection problem (retry later) as opposed to Redis refusing the command (a bug or a foreign key). */
function isReplyError(e: unknown): boolean {
  return e instanceof ReplyError;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new LeaseAbortedError());
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new LeaseAbortedError());
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class LeaderLease {
  /** While true, this process may act as leader (and its token is the latest unless it is about to learn otherwise). */
  private active = true;
  private renewTimer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private renewing = false;

  private constructor(
    private readonly redis: Redis,
    /** The fencing token: strictly greater than every earlier leader's. */
    readonly token: number,
    readonly holder: string,
    private readonly opts: LeaseOptions,
  ) {}

  /**
   * Waits as a standby, asking every renewEveryMs, until the lease is granted; then renews it in the
   * background every renewEveryMs. Connection errors while waiting are retried; a command Redis itself
   * refuses (e.g. the key holds another type) rejects.
   */
  static async acquire(redis: Redis, opts: LeaseOptions): Promise<LeaderLease> {
    const { holder, ttlMs, renewEveryMs, onLost, signal } = opts;
    if (typeof holder !== 'string' || !/^[A-Za-z0-9._:@-]{1,128}$/.test(holder))
      throw new TypeError('lease holder must be 1-128 characters of [A-Za-z0-9._:@-]');
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 10) throw new RangeError('ttlMs must be an integer >= 10');
    if (!Number.isSafeInteger(renewEveryMs) || renewEveryMs < 1 || renewEveryMs >= ttlMs)
      throw new RangeError('renewEveryMs must be an integer between 1 and ttlMs - 1');
    if (typeof onLost !== 'function') throw new TypeError('onLost must be a function');
    for (;;) {
      if (signal?.aborted) throw new LeaseAbortedError();
      const sentAt = performance.now();
      let token = 0;
      try {
        token = Number(await redis.eval(ACQUIRE, 2, LEASE_KEY, FENCE_KEY, holder, ttlMs));
      } catch (e) {
        if (isReplyError(e)) throw e;
      }
      if (token > 0) {
        const lease = new LeaderLease(redis, token, holder, opts);
        lease.confirmed(sentAt);
        lease.scheduleRenewal();
        return lease;
      }
      await sleep(renewEveryMs, signal);
    }
  }

  /** True until the lease is lost or released. */
  get held(): boolean {
    return this.active;
  }

  private get value(): string {
    return `${this.token} ${this.holder}`;
  }

  /** The lease was valid when a command sent at `sentAt` ran: it lasts at least until sentAt + ttl. */
  private confirmed(sentAt: number): void {
    if (!this.active) return;
    if (this.watchdog) clearTimeout(this.watchdog);
    const left = sentAt + this.opts.ttlMs - performance.now();
    this.watchdog = setTimeout(
      () => this.lose(`no lease renewal succeeded for ${this.opts.ttlMs} ms (redis unreachable?)`),
      Math.max(0, left),
    );
    this.watchdog.unref();
  }

  private scheduleRenewal(): void {
    if (!this.active) return;
    this.renewTimer = setTimeout(() => void this.renew(), this.opts.renewEveryMs);
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    this.scheduleRenewal();
    if (this.renewing) return; // one in flight at a time: a hung command must not pile up others
    this.renewing = true;
    const sentAt = performance.now();
    try {
      const r = (await this.redis.eval(RENEW, 1, LEASE_KEY, this.value, this.opts.ttlMs)) as number | string;
      if (r === 1) this.confirmed(sentAt);
      else if (r === 0) this.lose('the lease expired before it was renewed');
      else this.lose(`the lease is now held by "${String(r).slice(0, 160)}"`);
    } catch {
      // Unreachable or slow: the watchdog decides when that has lasted too long.
    } finally {
      this.renewing = false;
    }
  }

  private stop(): void {
    this.active = false;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    if (this.watchdog) clearTimeout(this.watchdog);
    this.renewTimer = this.watchdog = null;
  }

  private lose(reason: string): void {
    if (!this.active) return;
    this.stop();
    this.opts.onLost(reason);
  }

  /**
   * Stops renewing and deletes the lease if it is still ours, so a standby takes over at its next poll.
   * Resolves true when it was ours; false when it was already lost or released (onLost is not called).
   */
  async release(): Promise<boolean> {
    if (!this.active) return false;
    this.stop();
    return Number(await this.redis.eval(RELEASE, 1, LEASE_KEY, this.value)) === 1;
  }
}
