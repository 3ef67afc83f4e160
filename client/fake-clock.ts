import type { Clock } from './clock.ts';

/** A Clock for tests: time stands still until advance() moves it, running due calls in time order. */
export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly due = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    if (!(ms >= 0)) throw new RangeError(`delay must be >= 0 ms, got ${ms}`);
    const id = this.seq++;
    this.due.set(id, { at: this.t + ms, fn });
    return () => void this.due.delete(id);
  }

  /** Calls scheduled and not yet run or cancelled. */
  get pending(): number {
    return this.due.size;
  }

  /** Moves time forward by ms, running each call that falls due on the way (ties in scheduling order). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`cannot move time by ${ms} ms`);
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.due) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.due.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}
