import { checkCpuShare, type Pace } from './pacer.ts';
import type { TrainerPort } from './trainer-port.ts';

/** The parts of a BatteryManager we read (live values: the browser keeps them current). */
export interface BatteryLike {
  charging: boolean;
  level: number;
}

/** What the policy reads of the page; injected so tests run without a DOM. */
export interface GuestEnv {
  document?: {
    hidden: boolean;
    addEventListener(type: 'visibilitychange', fn: () => void): void;
    removeEventListener(type: 'visibilitychange', fn: () => void): void;
  };
  navigator?: {
    connection?: { saveData?: boolean };
    getBattery?: () => Promise<BatteryLike>;
  };
}

/** Below this charge, and not charging, the client sits rounds out. */
export const LOW_BATTERY = 0.2;

/** What the client asks of the guest policy (see AegisClient). */
export interface Guest {
  /** Keeps the trainer's pace in step with the page; returns the function that stops doing so. */
  attach(trainer: TrainerPort): () => void;
  /** Why this round should be sat out (data saver, low battery), or null. */
  holdOff(): string | null;
}

/**
 * Being a good guest on the host page: training pauses while the tab is hidden and resumes when it is
 * visible, uses at most cpuShare of a core (a duty cycle, enforced between batches in the worker), and
 * no round is taken while the browser says the visitor saves data or the battery is low and not charging.
 */
export class GuestPolicy implements Guest {
  private battery: BatteryLike | null = null;
  readonly cpuShare: number;

  constructor(
    opts: { cpuShare?: number } = {},
    private readonly env: GuestEnv = {},
  ) {
    this.cpuShare = checkCpuShare(opts.cpuShare ?? 1);
    // Where the Battery API exists (Chromium), its manager is live; elsewhere we know nothing and go on.
    env.navigator
      ?.getBattery?.()
      .then((b) => (this.battery = b))
      .catch(() => {});
  }

  pace(): Pace {
    return { paused: this.env.document?.hidden === true, cpuShare: this.cpuShare };
  }

  attach(trainer: TrainerPort): () => void {
    const send = (): void => trainer.pace?.(this.pace());
    send();
    const doc = this.env.document;
    doc?.addEventListener('visibilitychange', send);
    return () => doc?.removeEventListener('visibilitychange', send);
  }

  holdOff(): string | null {
    if (this.env.navigator?.connection?.saveData === true) return 'the browser asks to save data';
    const b = this.battery;
    if (b && !b.charging && b.level < LOW_BATTERY)
      return `battery at ${Math.round(b.level * 100)}% and not charging`;
    return null;
  }
}

/** The browser's own document and navigator (where they exist). */
export function browserEnv(): GuestEnv {
  return {
    document: typeof document === 'undefined' ? undefined : document,
    navigator: typeof navigator === 'undefined' ? undefined : (navigator as unknown as GuestEnv['navigator']),
  };
}
