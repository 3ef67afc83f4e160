import type { BackendName, ClientSource } from '../shared/protocol/messages.ts';
import type { TrainerPort } from './trainer-port.ts';
import { bytesEqual } from '../shared/base/bytes.ts';

/**
 * join()'s default for trainThreads: two on the demo page of a machine with 4 or more cores; one in an
 * embed, which leaves the host's visitor the rest of the machine (and one where the core count is unknown).
 */
export function defaultTrainThreads(source: ClientSource, cores: number | undefined): 1 | 2 {
  return source === 'demo' && (cores ?? 0) >= 4 ? 2 : 1;
}

/** Backends on which a second thread adds compute: a GPU backend is one device, whatever the threads. */
const CPU_BACKENDS: readonly BackendName[] = ['wasm', 'cpu'];

export interface PairOptions {
  /** How long the second trainer may take to start (its backend, the model); then one trains alone. */
  initTimeoutMs?: number;
  /** How long the second may take to answer once the first has settled a round; then it is let go. */
  settleMs?: number;
}

/**
 * Two training workers as one trainer: data-parallel, each trains its half of every batch and the two
 * swap gradients over a MessageChannel between them each step (LocalTrainer.pairStep), so both end on the
 * same update, the one a single worker would have made up to float rounding, in less time on free cores
 * (1.0-1.4x measured on a 2-core machine, where two lone workers reach only 1.5-1.6x: docs/benchmarks.md).
 * The first worker starts alone; a second is spawned only once the first settled on a CPU backend, gets
 * that backend and a copy of the first's examples (it fetches nothing), and is linked to it afresh for
 * every round. Its failures cost at most the round in progress:
 * - a second that does not start in time, or differs from the first: one trains alone from then on;
 * - a second that crashes, hangs or goes silent mid-round (the first gives up after PAIR_PATIENCE_MS):
 *   that round fails and the second is let go;
 * - a round that fails alike on both (a bad plan): the pair stays for the next one;
 * - updates that differ by a bit: a bug, reported, and the second is let go.
 * With a CPU share below 1 (a host page's cap on one core) the first trains alone: the cap paces one
 * worker, and a second would double what the page allowed.
 */
export function createTrainerPair(
  first: TrainerPort,
  spawnSecond: () => Promise<TrainerPort>,
  channel: () => { port1: MessagePort; port2: MessagePort },
  o: PairOptions = {},
): TrainerPort {
  const initTimeoutMs = o.initTimeoutMs ?? 60_000;
  const settleMs = o.settleMs ?? 5_000;
  let second: TrainerPort | null = null;
  let share = 1;
  let terminated = false;
  const letGo = (): void => {
    second?.terminate();
    second = null;
  };
  return {
    where: first.where,
    get threads() {
      return second && share >= 1 ? 2 : 1;
    },
    async init(req) {
      const ready = await first.init(req);
      if (!CPU_BACKENDS.includes(ready.backend) || !first.peer || !first.examples) return ready;
      let s: TrainerPort | null = null;
      try {
        const examples = await first.examples();
        if (terminated) return ready;
        s = await spawnSecond();
        const r2 = await within(
          s.init({ ...req, data: { kind: 'inline', examples }, backends: [ready.backend] }),
          initTimeoutMs,
          'the second trainer did not start in time',
        );
        if (r2.backend !== ready.backend || r2.numExamples !== ready.numExamples || !s.peer)
          throw new Error('the second trainer does not match the first');
        if (terminated) throw new Error('terminated');
        second = s;
      } catch {
        s?.terminate(); // one thread it is: the pair is an optimisation, never a reason not to train
      }
      return ready;
    },
    async train(round, weights, config, onProgress) {
      const s = second;
      if (!s || share < 1) return first.train(round, weights, config, onProgress);
      // A fresh link each round: step numbers start at 0, and nothing of a failed round carries over.
      const { port1, port2 } = channel();
      first.peer!(port1, 0);
      s.peer!(port2, 1);
      const unlink = (): void => {
        first.peer!(null, 0);
        s.peer!(null, 1);
      };
      const copy = weights.slice(0); // the first's is transferred
      const a = first.train(round, weights, config, onProgress);
      const b = s.train(round, copy, config, () => {});
      // Either side failing releases the other from its wait at the next swap.
      a.catch(unlink);
      b.catch(unlink);
      const [ra] = await Promise.allSettled([a]);
      const [rb] = await Promise.allSettled([within(b, settleMs, 'the second trainer did not answer')]);
      unlink();
      if (rb.status === 'rejected' && !pairedFailure(ra, rb.reason)) letGo();
      if (ra.status === 'rejected') throw ra.reason;
      if (
        rb.status === 'fulfilled' &&
        !bytesEqual(new Uint8Array(ra.value.delta), new Uint8Array(rb.value.delta))
      ) {
        letGo();
        throw new Error('data-parallel trainers ended on different updates; training alone from now on');
      }
      return ra.value; // complete even where the second failed after the last swap
    },
    pace(p) {
      share = p.cpuShare;
      first.pace?.(p);
    },
    terminate() {
      terminated = true;
      letGo();
      first.terminate();
    },
  };
}

/**
 * Whether the second's failure leaves it fit for the next round: it was released because the first failed
 * (the link closed under it), or it failed exactly as the first did (the round's plan, not the worker).
 */
function pairedFailure(ra: PromiseSettledResult<unknown>, e: unknown): boolean {
  const m = (e as Error)?.message ?? '';
  if (ra.status !== 'rejected') return false;
  if (/data-parallel pair closed/.test(m))
    return !/sent no gradient/.test((ra.reason as Error)?.message ?? '');
  return m === (ra.reason as Error)?.message;
}

function within<T>(p: Promise<T>, ms: number, why: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(why)), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
