import type { TrainConfig } from '../shared/protocol/messages.ts';
import type { TrainerRequest, TrainerResponse } from './worker-protocol.ts';
import type { TrainProgress } from './trainer.ts';
import type { Pace } from './pacer.ts';
import type { Examples } from '../shared/data/examples.ts';

type Ready = Extract<TrainerResponse, { type: 'ready' }>;
type Done = Extract<TrainerResponse, { type: 'done' }>;

/** The page's handle on a trainer, wherever it runs: a promise per request, progress by callback. */
export interface TrainerPort {
  readonly where: 'worker' | 'main-thread';
  init(req: Extract<TrainerRequest, { type: 'init' }>): Promise<Ready>;
  train(
    round: number,
    weights: ArrayBuffer,
    config: TrainConfig,
    onProgress: (p: TrainProgress) => void,
  ): Promise<Done>;
  /** Pause/resume and the CPU share; applies mid-round at the next batch. Optional: test fakes have none. */
  pace?(p: Pace): void;
  /** Links this trainer to another over `port` (trainer-pair.ts); null ends the link. Workers only. */
  peer?(port: MessagePort | null, rank: 0 | 1): void;
  /** A copy of the examples the trainer loaded at init (for the second trainer of a pair). */
  examples?(): Promise<Examples>;
  /** Threads training (2 for a data-parallel pair); absent means 1. */
  readonly threads?: number;
  terminate(): void;
}

interface Channel {
  send(req: TrainerRequest, transfer: Transferable[]): void;
  onMessage(fn: (msg: TrainerResponse) => void): void;
  close(): void;
}

/** Serialises requests over a channel and matches each response to the pending request. */
export function createTrainerPort(where: TrainerPort['where'], ch: Channel): TrainerPort {
  let pending: {
    resolve: (m: TrainerResponse) => void;
    reject: (e: Error) => void;
    onProgress?: (p: TrainProgress) => void;
  } | null = null;
  ch.onMessage((msg) => {
    if (msg.type === 'progress') return pending?.onProgress?.(msg.progress);
    const p = pending;
    pending = null;
    if (!p) return;
    if (msg.type === 'error') p.reject(new Error(msg.message));
    else p.resolve(msg);
  });
  const request = <T extends TrainerResponse>(
    req: TrainerRequest,
    transfer: Transferable[],
    onProgress?: (p: TrainProgress) => void,
  ): Promise<T> => {
    if (pending) return Promise.reject(new Error('trainer is busy with another request'));
    return new Promise<T>((resolve, reject) => {
      pending = { resolve: resolve as (m: TrainerResponse) => void, reject, onProgress };
      ch.send(req, transfer);
    });
  };
  return {
    where,
    init: (req) => request<Ready>(req, []),
    train: (round, weights, config, onProgress) =>
      request<Done>({ type: 'train', round, weights, config }, [weights], onProgress),
    pace: (pace) => ch.send({ type: 'pace', pace }, []),
    peer: (port, rank) => ch.send({ type: 'peer', port, rank }, port ? [port] : []),
    examples: async () =>
      (await request<Extract<TrainerResponse, { type: 'examples' }>>({ type: 'examples' }, [])).examples,
    terminate: () => {
      pending?.reject(new Error('trainer terminated'));
      pending = null;
      ch.close();
    },
  };
}

/**
 * A trainer on the calling thread (no Worker): same protocol, so the client code cannot tell the difference.
 * Takes the host factory (createTrainerHost) rather than importing it, so this module stays free of tfjs.
 */
export function createInlineTrainerPort(
  makeHost: (post: (m: TrainerResponse) => void) => (req: TrainerRequest) => Promise<void>,
): TrainerPort {
  let deliver: (m: TrainerResponse) => void = () => {};
  const host = makeHost((m) => deliver(m));
  return createTrainerPort('main-thread', {
    send: (req) => void host(req),
    onMessage: (fn) => (deliver = fn),
    close: () => {},
  });
}
