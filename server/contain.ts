import { ProtocolError } from '../shared/base/errors.ts';
import type { Clock } from './clock.ts';
import type { InternalErrorSite, Metrics } from './metrics.ts';

/** Marks a failure already counted and handled as a fault of the attempt. */
class RoundFault extends Error {}

/**
 * Failure containment: every way into the server (a client message, a timer, a deadline) runs through
 * here, so an exception is counted (aegis_internal_errors_total{where}), logged, and handed to onFault
 * (which aborts the attempt in progress) instead of reaching the event loop and ending the process.
 */
export class Containment {
  constructor(
    private readonly metrics: Metrics,
    private readonly onFault: (where: InternalErrorSite) => void,
    private readonly log?: (msg: string) => void,
  ) {}

  /**
   * Runs one client message: a ProtocolError goes back to the sender; anything else is contained. A
   * failure before the message reaches the round (parsing, identity, checks) is counted and fails only
   * that message: a stranger's crafted message must not abort everyone's attempt. A failure inside
   * `round()` has touched the attempt, which is aborted (model unchanged) and retried.
   */
  message<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      if (e instanceof RoundFault)
        throw new ProtocolError(
          'internal_error',
          'the server failed on this message; the attempt is retried',
        );
      this.count('message', e);
      throw new ProtocolError('internal_error', 'the server failed on this message');
    }
  }

  /** The part of a message that changes the attempt in progress (see `message`). */
  round<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      this.fault('message', e);
      throw new RoundFault();
    }
  }

  run(where: InternalErrorSite, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fault(where, e);
    }
  }

  /** The same clock, with every callback contained (where = 'timer'). */
  clock(c: Clock): Clock {
    return {
      now: () => c.now(),
      setTimeout: (fn, ms) => c.setTimeout(() => this.run('timer', fn), ms),
      clearTimeout: (t) => c.clearTimeout(t),
    };
  }

  /** queueMicrotask, contained. */
  defer(fn: () => void): void {
    queueMicrotask(() => this.run('timer', fn));
  }

  /** Counted and logged only: for failures that affect one client, not the round (e.g. one send). */
  count(where: InternalErrorSite, e: unknown): void {
    this.metrics.internalErrors.inc({ where });
    const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
    this.log?.(`internal error in ${where}: ${msg}`);
  }

  fault(where: InternalErrorSite, e: unknown): void {
    this.count(where, e);
    try {
      this.onFault(where);
    } catch (again) {
      this.count(where, again);
    }
  }
}
