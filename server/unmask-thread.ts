import { availableParallelism } from 'node:os';
import { runUnmask, unmaskTransferList, type UnmaskJob, type UnmaskResult } from '../shared/secagg/unmask.ts';
import { JobThread } from './job-thread.ts';

/** Runs an unmask job somewhere and resolves with its result (rejects only on a fault of the runner). */
export type UnmaskRunner = (job: UnmaskJob) => Promise<UnmaskResult>;

/** On this thread (tests, or a server started with the unmasking in-process): the same code, now. */
export const unmaskInProcess: UnmaskRunner = async (job) => runUnmask(job);

/** What the unmask worker is sent: the job, and how many threads may strip the masks (itself included). */
export interface UnmaskThreadJob {
  /** null: only start the helpers and load the code (warm-up). */
  job: UnmaskJob | null;
  threads: number;
}

/**
 * One long-lived worker thread for the unmasking (Shamir reconstruction, X25519 + HKDF per pairwise
 * mask, the PRG over the whole vector), so the event loop keeps serving sockets and deadlines meanwhile.
 * The mask stripping, the bulk of the work, is split by word range over `threads` threads (the worker
 * and helpers it starts: mask-pool.ts), by default one per core. Jobs are transferred, not copied; a
 * worker that dies fails its jobs (the attempt is retried) and is started again for the next one.
 */
export class UnmaskThread {
  private readonly thread = new JobThread<UnmaskThreadJob, UnmaskResult | null>(
    new URL('./unmask-worker.ts', import.meta.url),
    'aegis-unmask',
    (j) => (j.job ? unmaskTransferList(j.job) : []),
  );

  constructor(private readonly threads = Math.min(availableParallelism(), 8)) {}

  readonly run: UnmaskRunner = async (job) => (await this.thread.run({ job, threads: this.threads }))!;

  /**
   * Starts the worker and its helpers and loads their code (about a second), so the first round's
   * unmasking does not pay for it. The server calls this at start-up.
   */
  async warm(): Promise<void> {
    await this.thread.run({ job: null, threads: this.threads });
  }

  /** Whether a worker thread was started (tests check that the work left this thread). */
  get started(): boolean {
    return this.thread.started;
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
