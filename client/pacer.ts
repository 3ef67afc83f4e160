/**
 * How hard the trainer may work, as the page last said: paused (the tab is hidden) and the share of one
 * core it may use (a duty cycle, 0 < cpuShare <= 1).
 */
export interface Pace {
  paused: boolean;
  cpuShare: number;
}

export const FULL_PACE: Pace = { paused: false, cpuShare: 1 };

/** Throws unless 0 < share <= 1: a page's typo must not turn the cap off. */
export function checkCpuShare(share: number): number {
  if (!(Number.isFinite(share) && share > 0 && share <= 1))
    throw new Error(`cpu share must be a number in (0, 1], got ${share}`);
  return share;
}

/**
 * Called between training batches (the only points where the trainer can yield): waits while paused,
 * then sleeps so that busy / (busy + idle) stays at or below the CPU share, counting the busy time since
 * the last yield. `now` and `sleep` are injected so the arithmetic is tested without a wall clock.
 */
export class Pacer {
  private pace: Pace = FULL_PACE;
  private since: number;
  private wake: (() => void) | null = null;

  constructor(
    private readonly now: () => number,
    private readonly sleep: (ms: number) => Promise<void>,
  ) {
    this.since = now();
  }

  set(p: Pace): void {
    this.pace = { paused: p.paused, cpuShare: checkCpuShare(p.cpuShare) };
    if (!p.paused) {
      const w = this.wake;
      this.wake = null;
      w?.();
    }
  }

  get current(): Pace {
    return this.pace;
  }

  /** Marks the start of busy time (a round's training begins). */
  start(): void {
    this.since = this.now();
  }

  /** Between batches: the idle time owed for the busy time since the last call, and any pause. */
  async between(): Promise<void> {
    const busy = this.now() - this.since;
    const share = this.pace.cpuShare;
    if (share < 1 && busy > 0) await this.sleep((busy * (1 - share)) / share);
    while (this.pace.paused) await new Promise<void>((res) => (this.wake = res));
    this.since = this.now();
  }
}
