/**
 * Messages to clients go out in slices: a phase that closes for thousands of clients (round:start with
 * the model, rosters, inboxes) would otherwise write every socket in one turn of the event loop and stall
 * it for seconds. Sends keep their order (one FIFO for the process); each turn sends until `budgetMs` has
 * passed, then yields to timers and I/O (setImmediate) and goes on.
 */
export interface OutboxOptions {
  /** Time one turn may spend sending before it yields. */
  budgetMs?: number;
  /** Runs the next slice after pending I/O (setImmediate); injectable for tests. */
  schedule?: (fn: () => void) => void;
  now?: () => number;
  /** A send that threw (a bug, not a closed socket: emitting to one is a no-op). */
  onError?: (e: unknown) => void;
}

/** How many sends run between two reads of the clock. */
const CHECK_EVERY = 8;

export class Outbox {
  private queue: ((() => void) | undefined)[] = [];
  private head = 0;
  private scheduled = false;
  private readonly budgetMs: number;
  private readonly schedule: (fn: () => void) => void;
  private readonly now: () => number;
  private readonly onError: (e: unknown) => void;

  constructor(o: OutboxOptions = {}) {
    this.budgetMs = o.budgetMs ?? 8;
    this.schedule = o.schedule ?? ((fn) => setImmediate(fn));
    this.now = o.now ?? (() => performance.now());
    this.onError = o.onError ?? (() => {});
  }

  /** Sends waiting for a slice. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  push(send: () => void): void {
    this.queue.push(send);
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(() => this.drain());
  }

  private drain(): void {
    this.scheduled = false;
    const t0 = this.now();
    let n = 0;
    while (this.head < this.queue.length) {
      const send = this.queue[this.head];
      this.queue[this.head++] = undefined; // let the message go once sent
      try {
        send!();
      } catch (e) {
        this.onError(e);
      }
      if (++n % CHECK_EVERY === 0 && this.now() - t0 >= this.budgetMs) break;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      return;
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.scheduled = true;
    this.schedule(() => this.drain());
  }
}
