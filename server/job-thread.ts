import { parentPort, Worker } from 'node:worker_threads';

/** What a worker answers to one job. */
export type JobReply<R> = { id: number; result: R } | { id: number; error: string };

/**
 * The workers are TypeScript like the rest of the server. Node 20 does not apply the main thread's ESM
 * loader hooks (`--import tsx`) to a worker, so a worker registers tsx's ESM hooks itself, then imports
 * its entry as ESM. (Not tsx's CommonJS require hook: that turns the noble libraries' imports into
 * getters, and their hashing and field arithmetic ran at half speed in the worker.) This works the same
 * under `tsx server/main.ts`, `node --import tsx` and vitest.
 */
function workerSource(entry: URL): string {
  const tsx = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`;
}

/**
 * One long-lived worker thread that runs jobs of one kind, started on first use and unref'd while idle
 * (it never keeps the process alive). Jobs and results cross by transfer where `transfer` names buffers;
 * a worker that dies fails its jobs and is started again for the next one.
 */
export class JobThread<J, R> {
  private worker: Worker | null = null;
  private nextId = 1;
  /** Jobs sent and not answered, with the worker each went to (a replacement never fails its old jobs' peers). */
  private readonly pending = new Map<
    number,
    { worker: Worker; resolve(r: R): void; reject(e: Error): void }
  >();
  private closed = false;

  constructor(
    private readonly entry: URL,
    private readonly name: string,
    private readonly transfer: (job: J) => ArrayBuffer[] = () => [],
  ) {}

  readonly run = (job: J): Promise<R> => {
    if (this.closed) return Promise.reject(new Error(`the ${this.name} thread is closed`));
    const w = this.start();
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      try {
        w.postMessage({ id, job }, this.transfer(job));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e))); // not sent: nothing to wait for
        return;
      }
      this.pending.set(id, { worker: w, resolve, reject });
      w.ref(); // a job in flight keeps the process up, like any pending I/O
    });
  };

  /** Whether a worker thread was started (tests check that the work left this thread). */
  get started(): boolean {
    return this.worker !== null;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(workerSource(this.entry), { eval: true, name: this.name });
    w.unref();
    w.on('message', (m: JobReply<R>) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (![...this.pending.values()].some((q) => q.worker === w)) w.unref();
      if ('result' in m) p.resolve(m.result);
      else p.reject(new Error(`${this.name} worker: ${m.error}`));
    });
    const fail = (e: Error): void => {
      if (this.worker === w) this.worker = null;
      for (const [id, p] of this.pending)
        if (p.worker === w) {
          this.pending.delete(id);
          p.reject(e);
        }
    };
    w.on('error', (e) => fail(e));
    w.on('exit', (code) => fail(new Error(`${this.name} worker exited with code ${code}`)));
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

/** The worker side: answers each job with `handle`'s result, transferring the buffers `transfer` names. */
export function serveJobs<J, R>(handle: (job: J) => Promise<R>, transfer: (r: R) => ArrayBuffer[]): void {
  const port = parentPort;
  if (!port) throw new Error('this module runs only as a worker thread');
  port.on('message', async ({ id, job }: { id: number; job: J }) => {
    let reply: JobReply<R>;
    try {
      reply = { id, result: await handle(job) };
    } catch (e) {
      reply = { id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
    }
    port.postMessage(reply, 'result' in reply ? transfer(reply.result) : []);
  });
}
