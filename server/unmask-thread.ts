import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { runUnmask, unmaskTransferList, type UnmaskJob, type UnmaskResult } from '../shared/secagg/unmask.ts';

/** Runs an unmask job somewhere and resolves with its result (rejects only on a fault of the runner). */
export type UnmaskRunner = (job: UnmaskJob) => Promise<UnmaskResult>;

/** What the worker answers to one job. */
export type UnmaskReply = { id: number; result: UnmaskResult } | { id: number; error: string };

/** On this thread (tests, or a server started with the unmasking in-process): the same code, now. */
export const unmaskInProcess: UnmaskRunner = async (job) => runUnmask(job);

/**
 * The worker is TypeScript like the rest of the server. Node 20 does not apply ESM loader hooks
 * (`--import tsx`) to a worker's entry, so the worker starts from a line of CommonJS that installs tsx's
 * require hook and requires the entry (its ESM dependencies load through require(esm), Node >= 20.19).
 * This works the same under `tsx server/main.ts`, `node --import tsx` and vitest.
 */
function workerSource(): string {
  const require = createRequire(import.meta.url);
  const tsx = require.resolve('tsx/cjs/api');
  const entry = fileURLToPath(new URL('./unmask-worker.ts', import.meta.url));
  return `require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(entry)});`;
}

/**
 * One long-lived worker thread for the unmasking (Shamir reconstruction, X25519 + HKDF per pairwise
 * mask, the PRG over the whole vector: 15 s of CPU at 2 000 clients), so the event loop keeps serving
 * sockets and deadlines meanwhile. Started on first use and unref'd: it never keeps the process alive.
 * Jobs are transferred, not copied; a worker that dies fails its jobs (the attempt is retried) and is
 * started again for the next one.
 */
export class UnmaskThread {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(r: UnmaskResult): void; reject(e: Error): void }>();
  private closed = false;

  readonly run: UnmaskRunner = (job) => {
    if (this.closed) return Promise.reject(new Error('the unmask thread is closed'));
    const w = this.start();
    const id = this.nextId++;
    return new Promise<UnmaskResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.ref(); // a job in flight keeps the process up, like any pending I/O
      w.postMessage({ id, job }, unmaskTransferList(job));
    });
  };

  /** Whether a worker thread was started (tests check that the work left this thread). */
  get started(): boolean {
    return this.worker !== null;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(workerSource(), { eval: true, name: 'aegis-unmask' });
    w.unref();
    w.on('message', (m: UnmaskReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (!this.pending.size) w.unref();
      if ('result' in m) p.resolve(m.result);
      else p.reject(new Error(`unmask worker: ${m.error}`));
    });
    const fail = (e: Error): void => {
      if (this.worker === w) this.worker = null;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    w.on('error', (e) => fail(e));
    w.on('exit', (code) => fail(new Error(`unmask worker exited with code ${code}`)));
    this.worker = w;
    return w;
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }
}
