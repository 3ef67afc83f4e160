/**
 * Time, injected: the client's deadlines and timings read this instead of the global timers, so tests
 * drive deadlines on a fake clock (fake-clock.ts) rather than waiting on the wall clock.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale (only differences mean anything). */
  now(): number;
  /** Calls fn once, ms milliseconds from now; the returned function cancels the call if it has not run. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};
