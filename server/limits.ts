import type { Clock } from './clock.ts';

export interface Rate {
  /** Tokens added per second. */
  perSecond: number;
  /** Bucket size: the most that may be spent at once. */
  burst: number;
}

export function checkRate(r: Rate, what: string): Rate {
  if (!(r.perSecond > 0) || !Number.isFinite(r.perSecond))
    throw new RangeError(`${what}: perSecond must be a positive number, got ${r.perSecond}`);
  if (!(Number.isInteger(r.burst) && r.burst >= 1))
    throw new RangeError(`${what}: burst must be an integer >= 1, got ${r.burst}`);
  return r;
}

/** A token bucket on an injected clock: take() spends one token if there is one. O(1), no timers. */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly rate: Rate,
    private readonly clock: Clock,
  ) {
    checkRate(rate, 'token bucket');
    this.tokens = rate.burst;
    this.at = clock.now();
  }

  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Full again: nothing was spent that has not been refilled. */
  get idle(): boolean {
    this.refill();
    return this.tokens >= this.rate.burst;
  }

  private refill(): void {
    const now = this.clock.now();
    if (now > this.at) {
      this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.at) / 1000) * this.rate.perSecond);
      this.at = now;
    }
  }
}

/**
 * One bucket per key (e.g. per address), at most maxKeys of them: the least recently used is dropped
 * first, so a flood of distinct keys costs bounded memory. Dropping a key forgets its spending (it starts
 * full again), which only matters for keys idle longer than every other key's last use.
 */
export class KeyedLimiter {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly rate: Rate,
    private readonly clock: Clock,
    private readonly maxKeys = 65_536,
  ) {
    checkRate(rate, 'keyed limiter');
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1))
      throw new RangeError(`maxKeys must be >= 1, got ${maxKeys}`);
  }

  take(key: string): boolean {
    let b = this.buckets.get(key);
    if (b)
      this.buckets.delete(key); // re-insert: Map order is recency order
    else {
      b = new TokenBucket(this.rate, this.clock);
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(key, b);
    return b.take();
  }

  get size(): number {
    return this.buckets.size;
  }
}

/**
 * Log lines about client input, at most `burst` per window of `windowMs`; the rest are counted and
 * summarised in one line when the next window opens, so one socket cannot fill the log.
 */
export class LogLimiter {
  private windowStart: number;
  private used = 0;
  private dropped = 0;

  constructor(
    private readonly log: (msg: string) => void,
    private readonly clock: Clock,
    private readonly burst = 20,
    private readonly windowMs = 10_000,
  ) {
    this.windowStart = clock.now();
  }

  write(msg: string): void {
    const now = this.clock.now();
    if (now - this.windowStart >= this.windowMs) {
      if (this.dropped > 0) this.log(`(${this.dropped} similar log lines suppressed)`);
      this.windowStart = now;
      this.used = 0;
      this.dropped = 0;
    }
    if (this.used < this.burst) {
      this.used++;
      this.log(msg);
    } else this.dropped++;
  }
}
