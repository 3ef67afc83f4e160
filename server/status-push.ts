import type { ServerStatus } from '../shared/protocol/status.ts';
import type { Clock, Timer } from './clock.ts';

/** The socket.io room of the sockets that asked for status (handshake auth `{ observe: true }`). */
export const STATUS_ROOM = 'status';

/** Rounds of history a pushed status carries (the newest); GET /api/status has them all. */
export const PUSH_HISTORY = 500;

export interface StatusPushDeps {
  status: () => ServerStatus;
  /** Sends one status to every observer. */
  emit: (s: ServerStatus) => void;
  clock: Clock;
  /** At most one push per this many ms; the changes in between are coalesced into the next. */
  minIntervalMs?: number;
  /** While anyone observes, status is also compared this often (changes no event announces, e.g. a deadline). */
  checkEveryMs?: number;
}

/** A status as pushed: the view of server/status.ts with its history bounded. */
export function pushedStatus(s: ServerStatus): ServerStatus {
  return s.history.length > PUSH_HISTORY ? { ...s, history: s.history.slice(-PUSH_HISTORY) } : s;
}

/**
 * Pushes status to observers when it changes, so a page never shows a stale or mixed view: kick() says
 * something may have changed; within minIntervalMs the current status is built and sent if it differs
 * from the last one sent. Bursts (a cohort's updates arriving together) become one push.
 */
export class StatusPush {
  private readonly minIntervalMs: number;
  private readonly checkEveryMs: number;
  private pending: Timer | null = null;
  private ticker: Timer | null = null;
  private lastSentAt = -Infinity;
  private last = '';
  private observers = 0;
  private stopped = false;

  constructor(private readonly deps: StatusPushDeps) {
    this.minIntervalMs = deps.minIntervalMs ?? 200;
    this.checkEveryMs = deps.checkEveryMs ?? 1000;
  }

  /** Something may have changed: push within minIntervalMs if it did. */
  kick(): void {
    if (this.stopped || this.observers === 0 || this.pending) return;
    const wait = Math.max(0, this.lastSentAt + this.minIntervalMs - this.deps.clock.now());
    this.pending = this.deps.clock.setTimeout(() => {
      this.pending = null;
      this.flush();
    }, wait);
  }

  /** The current status for a new observer (also what the next comparison starts from). */
  current(): ServerStatus {
    return pushedStatus(this.deps.status());
  }

  observerJoined(): void {
    this.observers++;
    if (this.observers === 1) this.last = ''; // what was sent before reached nobody who is still here
    if (!this.ticker) this.tick();
  }

  observerLeft(): void {
    this.observers = Math.max(0, this.observers - 1);
  }

  stop(): void {
    this.stopped = true;
    if (this.pending) this.deps.clock.clearTimeout(this.pending);
    if (this.ticker) this.deps.clock.clearTimeout(this.ticker);
    this.pending = this.ticker = null;
  }

  private tick(): void {
    if (this.stopped || this.observers === 0) {
      this.ticker = null;
      return;
    }
    this.kick();
    this.ticker = this.deps.clock.setTimeout(() => this.tick(), this.checkEveryMs);
  }

  private flush(): void {
    if (this.stopped || this.observers === 0) return;
    const s = this.current();
    const json = JSON.stringify(s);
    if (json === this.last) return;
    this.last = json;
    this.lastSentAt = this.deps.clock.now();
    this.deps.emit(s);
  }
}
