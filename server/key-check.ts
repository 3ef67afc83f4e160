import { bytesView, record } from '../shared/secagg/check.ts';
import { SIGN_PUBLIC_BYTES } from '../shared/secagg/consistency.ts';
import { KEY_BYTES } from '../shared/secagg/keys.ts';
import { JobThread } from './job-thread.ts';

/** cPk ‖ sPk ‖ gPk of one secagg:keys message. */
export const ADVERTISED_KEY_BYTES = 2 * KEY_BYTES + SIGN_PUBLIC_BYTES;

/** Keys checked in one job: a burst is cleared in a few ms slices, not one long job. */
const MAX_BATCH = 256;

interface Waiting {
  raw: object;
  keys: Uint8Array;
  done: () => void;
}

/**
 * Checks advertised keys (secagg:keys) off the main thread. Decompressing an Ed25519 signing key is a
 * field exponentiation (~130 µs in noble), and a round's keys arrive together at its start: ~3.5 s of
 * the main thread at 10 000 clients (profiled, docs/benchmarks.md). A message whose three keys the worker
 * found fine is remembered with a copy of those bytes; the session then skips its own check of exactly
 * those bytes (`prechecked`). Anything not cleared here (malformed, a bad key, a worker that failed) is
 * checked by the session as before, so a verdict and its reason never depend on this path.
 */
export class KeyChecker {
  private waiting: Waiting[] = [];
  private scheduled = false;
  private readonly cleared = new WeakMap<object, Uint8Array>();
  private readonly thread = new JobThread<Uint8Array, Uint8Array>(
    new URL('./key-check-worker.ts', import.meta.url),
    'key-check',
    (keys) => [keys.buffer as ArrayBuffer],
  );

  /** Resolves (never rejects) once the message's keys were checked, or at once if it is malformed. */
  prepare(raw: unknown): Promise<void> {
    let keys: Uint8Array;
    try {
      const r = record(raw, 'keys');
      keys = new Uint8Array(ADVERTISED_KEY_BYTES);
      keys.set(bytesView(r.cPk, 'cPk', KEY_BYTES), 0);
      keys.set(bytesView(r.sPk, 'sPk', KEY_BYTES), KEY_BYTES);
      keys.set(bytesView(r.gPk, 'gPk', SIGN_PUBLIC_BYTES), 2 * KEY_BYTES);
    } catch {
      return Promise.resolve(); // the session refuses it with the reason
    }
    return new Promise((done) => {
      this.waiting.push({ raw: raw as object, keys, done });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  /** Whether the worker cleared exactly these keys for this message object. */
  prechecked(raw: object, cPk: Uint8Array, sPk: Uint8Array, gPk: Uint8Array): boolean {
    const k = this.cleared.get(raw);
    if (!k) return false;
    const same = (b: Uint8Array, at: number): boolean => b.every((x, i) => x === k[at + i]);
    return same(cPk, 0) && same(sPk, KEY_BYTES) && same(gPk, 2 * KEY_BYTES);
  }

  close(): Promise<void> {
    return this.thread.close();
  }

  /** Whether the worker thread was started (tests check that the work left this thread). */
  get started(): boolean {
    return this.thread.started;
  }

  private flush(): void {
    this.scheduled = false;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, MAX_BATCH);
      const job = new Uint8Array(batch.length * ADVERTISED_KEY_BYTES);
      batch.forEach((w, i) => job.set(w.keys, i * ADVERTISED_KEY_BYTES));
      this.thread.run(job).then(
        (ok) => {
          batch.forEach((w, i) => {
            if (ok[i] === 1) this.cleared.set(w.raw, w.keys);
            w.done();
          });
        },
        () => batch.forEach((w) => w.done()), // the session checks them itself
      );
    }
  }
}

/** One per process: every server in it shares the thread (started on the first keys). */
export const keyChecker = new KeyChecker();
