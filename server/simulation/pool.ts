/**
 * Trains simulated clients in parallel worker threads, one tfjs per thread (tfjs' wasm backend runs on one
 * thread in Node). A client's training depends only on what its task carries (global weights, its data, the
 * seed derived from (seed, round, client), the local settings), so without DP results equal the sequential
 * path's bit for bit on the same backend, whatever the number of threads or the order they finish in.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Dataset } from '../../shared/data/dataset.ts';
import type { ModelSpec } from '../../shared/model/spec.ts';
import type { EncodingPlan } from '../../shared/fl/encoding.ts';
import type { TrainConfig } from '../../shared/protocol/messages.ts';

export interface PoolInit {
  backend: 'wasm' | 'cpu';
  model: ModelSpec;
}

export interface PoolTask {
  id: number;
  weights: Float32Array;
  data: Dataset;
  seed: number;
  local: TrainConfig;
  /**
   * A ring round's plan: the thread also encodes the update as the client would (clip, fixed point,
   * stochastic rounding, Skellam noise from its own CSPRNG) and returns the ring vector, so that the
   * encoding of a whole cohort does not queue on the caller's thread.
   */
  encode?: EncodingPlan;
}

export type PoolReply =
  | {
      id: number;
      ok: true;
      delta: Float32Array;
      ring?: Uint32Array;
      numExamples: number;
      passes: number;
      loss: number;
    }
  | { id: number; ok: false; message: string };

export interface ClientTraining {
  /** The update; empty when the task carried a plan (the ring is the update, and half the bytes). */
  delta: Float32Array;
  /** The encoded update, when the task carried a plan. */
  ring?: Uint32Array;
  numExamples: number;
  /** Example-passes the client trained (steps x batch, or epochs x its examples). */
  passes: number;
  loss: number;
}

/** Worker threads by default: one per core the process may use. */
export const defaultWorkers = (): number => availableParallelism();

/**
 * The thread's entry: registers tsx's loader inside the thread, then imports train-worker.ts. (Node 20
 * does not apply `--import tsx` from a worker's execArgv to its entry module, so a .ts entry fails.)
 */
function bootstrap(): string {
  const api = createRequire(import.meta.url)
    .resolve('tsx/esm/api')
    .replace(/\.cjs$/, '.mjs');
  const entry = new URL('./train-worker.ts', import.meta.url).href;
  return `import(${JSON.stringify(pathToFileURL(api).href)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
}

export class TrainPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { task: Omit<PoolTask, 'id'>; done: (r: PoolReply) => void }[] = [];
  private readonly pending = new Map<number, (r: PoolReply) => void>();
  private nextId = 1;
  private failure: Error | null = null;

  constructor(
    readonly size: number,
    init: PoolInit,
  ) {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`workers must be a whole number >= 1, got ${size}`);
    const code = bootstrap();
    for (let i = 0; i < size; i++) {
      const w = new Worker(code, { eval: true, workerData: init });
      w.on('message', (r: PoolReply) => {
        const done = this.pending.get(r.id);
        this.pending.delete(r.id);
        this.idle.push(w);
        this.pump();
        done?.(r);
      });
      // A thread that dies fails every task in flight and every later one: no silent half-rounds.
      w.on('error', (e) => this.fail(new Error(`training thread failed: ${e.message}`)));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`training thread exited with code ${code}`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Trains one client; resolves with its update or rejects with the thread's error. */
  train(task: Omit<PoolTask, 'id'>): Promise<ClientTraining> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.queue.push({
        task,
        done: (r) => (r.ok ? resolve(r) : reject(new Error(r.message))),
      });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.pop()!;
      const { task, done } = this.queue.shift()!;
      const id = this.nextId++;
      this.pending.set(id, done);
      // Copies (not transfers): the caller keeps its weights and data for the next client.
      w.postMessage({ ...task, id } satisfies PoolTask);
    }
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const done of this.pending.values()) done({ id: 0, ok: false, message: e.message });
    this.pending.clear();
    for (const q of this.queue.splice(0)) q.done({ id: 0, ok: false, message: e.message });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('training pool closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
