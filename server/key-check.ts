import { ADVERTISED_KEY_BYTES, packAdvertised, unpackAdvertised } from '../shared/secagg/advertised.ts';
import { bytesView, record } from '../shared/secagg/check.ts';
import { SIGN_PUBLIC_BYTES } from '../shared/secagg/consistency.ts';
import { bytesEqual, KEY_BYTES } from '../shared/secagg/keys.ts';
import { JobThread } from './job-thread.ts';

export interface KeyCheckerOptions {
  /** Keys checked in one job: a burst is cleared in slices of a few tens of ms, not one long job. */
  maxBatch?: number;
  /** Messages waiting or in flight at most; beyond, the session checks them itself (as without a worker). */
  maxPending?: number;
  /** A job not answered by then: its messages go on unchecked here, and the worker is bypassed a while. */
  timeoutMs?: number;
  /** How long a worker that timed out or failed is bypassed. */
  bypassMs?: number;
  now?: () => number;
}

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
 * those bytes (`prechecked`). Anything not cleared here (malformed, a bad key, a backlog past maxPending,
 * a worker that failed or stalled) is checked by the session as before, so a verdict and its reason never
 * depend on this path, and the worst case is the cost without it.
 */
export class KeyChecker {
  private waiting: Waiting[] = [];
  private pending = 0;
  private scheduled = false;
  private bypassUntil = -Infinity;
  private readonly cleared = new WeakMap<object, Uint8Array>();
  private readonly maxBatch: number;
  private readonly maxPending: number;
  private readonly timeoutMs: number;
  private readonly bypassMs: number;
  private readonly now: () => number;
  private readonly thread: JobThread<Uint8Array, Uint8Array>;

  constructor(o: KeyCheckerOptions = {}, entry = new URL('./key-check-worker.ts', import.meta.url)) {
    this.maxBatch = o.maxBatch ?? 256;
    this.maxPending = o.maxPending ?? 20_000;
    this.timeoutMs = o.timeoutMs ?? 2000;
    this.bypassMs = o.bypassMs ?? 60_000;
    this.now = o.now ?? (() => performance.now());
    this.thread = new JobThread(entry, 'key-check', (keys) => [keys.buffer as ArrayBuffer]);
  }

  /** Resolves (never rejects) once the message's keys were checked, or at once where it is not worth it. */
  prepare(raw: unknown): Promise<void> {
    if (this.pending >= this.maxPending || this.now() < this.bypassUntil) return Promise.resolve();
    let keys: Uint8Array;
    try {
      const r = record(raw, 'keys');
      keys = packAdvertised([
        bytesView(r.cPk, 'cPk', KEY_BYTES),
        bytesView(r.sPk, 'sPk', KEY_BYTES),
        bytesView(r.gPk, 'gPk', SIGN_PUBLIC_BYTES),
      ]);
    } catch {
      return Promise.resolve(); // the session refuses it with the reason
    }
    this.pending++;
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
    const [c, s, g] = unpackAdvertised(k);
    return bytesEqual(cPk, c) && bytesEqual(sPk, s) && bytesEqual(gPk, g);
  }

  /** Whether the worker thread was started (tests check that the work left this thread). */
  get started(): boolean {
    return this.thread.started;
  }

  close(): Promise<void> {
    return this.thread.close();
  }

  private flush(): void {
    this.scheduled = false;
    while (this.waiting.length > 0) this.send(this.waiting.splice(0, this.maxBatch));
  }

  private send(batch: Waiting[]): void {
    let finished = false;
    const finish = (ok: Uint8Array | null): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.pending -= batch.length;
      batch.forEach((w, i) => {
        if (ok?.[i] === 1) this.cleared.set(w.raw, w.keys);
        w.done();
      });
    };
    const giveUp = (): void => {
      this.bypassUntil = this.now() + this.bypassMs;
      finish(null);
    };
    const timer = setTimeout(giveUp, this.timeoutMs);
    const job = new Uint8Array(batch.length * ADVERTISED_KEY_BYTES);
    batch.forEach((w, i) => job.set(w.keys, i * ADVERTISED_KEY_BYTES));
    // In a promise chain: starting a worker can throw synchronously (no thread to be had).
    Promise.resolve()
      .then(() => this.thread.run(job))
      .then((ok) => finish(ok), giveUp);
  }
}

/** One per process: every server in it shares the thread (started on the first keys). */
export const keyChecker = new KeyChecker();
