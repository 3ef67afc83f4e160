import { runUnmask } from '../shared/secagg/unmask.ts';
import { serveJobs } from './job-thread.ts';
import { MaskPool } from './mask-pool.ts';
import type { UnmaskThreadJob } from './unmask-thread.ts';

/**
 * Worker-thread entry (started by unmask-thread.ts): runs each unmask job it is sent with the shared
 * secagg code, the masks stripped over its helper threads, and sends back the result, the sum's buffer
 * transferred, not copied.
 */
let pool: MaskPool | null = null;
serveJobs(
  async ({ job, threads }: UnmaskThreadJob) => {
    if (!pool || pool.threads !== threads) {
      await pool?.close();
      pool = new MaskPool(threads);
    }
    if (!job) return pool.warm().then(() => null);
    return runUnmask(job, { strip: pool.strip });
  },
  (r) => (r?.ok ? [r.sum.buffer as ArrayBuffer] : []),
);
