/** An opaque handle to a scheduled callback. */
export type Timer = { readonly __timer: true };

/**
 * Where the server gets the time: deadlines, pauses and durations all go through one of these, so tests
 * of deadlines run on a ManualClock instead of waiting on the wall clock.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(t: Timer): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as Timer,
  clearTimeout: (t) => clearTimeout(t as unknown as ReturnType<typeof setTimeout>),
};

interface Scheduled {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock whose time moves only when told to. Tests advance it past a deadline; the headless simulation
 * uses one that never moves (it has no deadlines to enforce).
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<Timer, Scheduled>();

  constructor(start = 0) {
    if (!Number.isFinite(start)) throw new RangeError(`start must be a finite time, got ${start}`);
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    if (typeof fn !== 'function') throw new TypeError('setTimeout needs a function');
    const handle = {} as Timer;
    this.timers.set(handle, { at: this.t + Math.max(0, Number(ms) || 0), seq: this.seq++, fn });
    return handle;
  }

  clearTimeout(t: Timer): void {
    this.timers.delete(t);
  }

  /** Callbacks scheduled and not yet run or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by ms, running every callback that falls due on the way, in order of due time
   * (ties in order of scheduling), each with now() at its due time. Callbacks scheduled by callbacks run
   * too if they fall due in the window. An exception from a callback propagates, as it would from a timer.
   */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`advance needs ms >= 0, got ${ms}`);
    const end = this.t + ms;
    for (;;) {
      let next: [Timer, Scheduled] | null = null;
      for (const e of this.timers) {
        if (
          e[1].at <= end &&
          (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[1].seq < next[1].seq))
        )
          next = e;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
}
