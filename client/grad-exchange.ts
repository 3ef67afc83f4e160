import type { GradientExchange, HalfGradient } from './trainer.ts';

/** What a MessagePort offers, so that tests can pass Node's and pages pass the browser's. */
export interface PortLike {
  postMessage(msg: unknown): void;
  onmessage: ((e: { data: unknown }) => void) | null;
  close(): void;
}

/** A gradient exchange that can be cut: a pending swap then fails, and so does every later one. */
export interface ClosableExchange extends GradientExchange {
  close(reason: string): void;
}

interface GradMessage {
  type: 'grad';
  step: number;
  n: number;
  loss: number;
  grad: Float32Array;
}

/**
 * One side of a data-parallel pair over a MessagePort (a MessageChannel between the two training workers).
 * Steps are numbered: a message out of step, or of the wrong shape, breaks the pair rather than mixing two
 * steps' gradients.
 */
export function portExchange(port: PortLike, rank: 0 | 1): ClosableExchange {
  let step = 0;
  let broken: Error | null = null;
  const inbox: GradMessage[] = [];
  let waiting: { resolve: (m: GradMessage) => void; reject: (e: Error) => void } | null = null;
  const fail = (e: Error): void => {
    broken ??= e;
    waiting?.reject(broken);
    waiting = null;
  };
  port.onmessage = (e) => {
    const m = e.data as Partial<GradMessage> | null;
    if (!m || m.type !== 'grad' || !(m.grad instanceof Float32Array) || typeof m.n !== 'number')
      return fail(new Error('data-parallel peer sent a malformed message'));
    if (waiting) {
      const w = waiting;
      waiting = null;
      w.resolve(m as GradMessage);
    } else inbox.push(m as GradMessage);
  };
  return {
    rank,
    async swap(mine: HalfGradient, patienceMs?: number): Promise<HalfGradient> {
      if (broken) throw broken;
      const s = step++;
      const out: GradMessage = { type: 'grad', step: s, n: mine.n, loss: mine.loss, grad: mine.grad };
      port.postMessage(out); // cloned, not transferred: the caller still combines with its own copy
      let timer: ReturnType<typeof setTimeout> | undefined;
      const m =
        inbox.shift() ??
        (await new Promise<GradMessage>((resolve, reject) => {
          waiting = { resolve, reject };
          if (patienceMs !== undefined)
            timer = setTimeout(
              () =>
                fail(new Error(`data-parallel peer sent no gradient within ${Math.round(patienceMs)} ms`)),
              patienceMs,
            );
        }).finally(() => clearTimeout(timer)));
      if (m.step !== s) {
        fail(new Error(`data-parallel peer is at step ${m.step}, this side at ${s}`));
        throw broken!;
      }
      return { n: m.n, loss: m.loss, grad: m.grad };
    },
    close(reason) {
      fail(new Error(`data-parallel pair closed: ${reason}`));
      port.onmessage = null;
      port.close();
    },
  };
}

/** Two linked exchanges on one thread (tests; a pair whose halves run in one process). */
export function pairedExchanges(): [GradientExchange, GradientExchange] {
  const box: [HalfGradient[], HalfGradient[]] = [[], []];
  const waiters: [((g: HalfGradient) => void) | null, ((g: HalfGradient) => void) | null] = [null, null];
  const side = (rank: 0 | 1): GradientExchange => ({
    rank,
    swap(mine) {
      const other = (1 - rank) as 0 | 1;
      const copy = { ...mine, grad: mine.grad.slice() };
      const w = waiters[other];
      if (w) {
        waiters[other] = null;
        w(copy);
      } else box[other].push(copy);
      const ready = box[rank].shift();
      return ready ? Promise.resolve(ready) : new Promise((res) => (waiters[rank] = res));
    },
  });
  return [side(0), side(1)];
}
