import type { BackendName, ClientSource } from '../shared/protocol/messages.ts';
import type { TrainerPort } from './trainer-port.ts';

/**
 * join()'s default for trainThreads: two on the demo page of a machine with 4 or more cores; one in an
 * embed, which leaves the host's visitor the rest of the machine (and one where the core count is unknown).
 */
export function defaultTrainThreads(source: ClientSource, cores: number | undefined): 1 | 2 {
  return source === 'demo' && (cores ?? 0) >= 4 ? 2 : 1;
}

/** Backends on which a second thread adds compute: a GPU backend is one device, whatever the threads. */
const CPU_BACKENDS: readonly BackendName[] = ['wasm', 'cpu'];

/**
 * Two training workers as one trainer: data-parallel, each trains its half of every batch and the two
 * swap gradients over a MessageChannel between them each step (LocalTrainer.pairStep), so both end on the
 * same update, the update one worker alone would have made up to float rounding, in about half the time
 * on two free cores. The first worker starts alone; the second is spawned only when the first settled on a
 * CPU backend, and is told to use that one. If the second fails at any point the pair ends: the round in
 * progress fails (its half is missing) and the first trains alone from then on. Both updates are compared
 * each round: a pair whose replicas differ is a bug, and it is reported rather than averaged away.
 */
export function createTrainerPair(
  first: TrainerPort,
  spawnSecond: () => Promise<TrainerPort>,
  channel: () => { port1: MessagePort; port2: MessagePort },
): TrainerPort {
  let second: TrainerPort | null = null;
  const end = (): void => {
    if (!second) return;
    first.peer?.(null, 0);
    second.terminate();
    second = null;
  };
  return {
    where: first.where,
    get threads() {
      return second ? 2 : 1;
    },
    async init(req) {
      const ready = await first.init(req);
      if (!CPU_BACKENDS.includes(ready.backend) || !first.peer) return ready;
      let s: TrainerPort | null = null;
      try {
        s = await spawnSecond();
        const r2 = await s.init({ ...req, backends: [ready.backend] });
        if (r2.backend !== ready.backend || r2.numExamples !== ready.numExamples || !s.peer)
          throw new Error('the second trainer does not match the first');
        const { port1, port2 } = channel();
        first.peer(port1, 0);
        s.peer(port2, 1);
        second = s;
      } catch {
        s?.terminate(); // one thread it is: the pair is an optimisation, never a reason not to train
      }
      return ready;
    },
    async train(round, weights, config, onProgress) {
      const s = second;
      if (!s) return first.train(round, weights, config, onProgress);
      const copy = weights.slice(0); // the first's is transferred
      const a = first.train(round, weights, config, onProgress);
      const b = s.train(round, copy, config, () => {});
      // Whichever side fails first ends the pair, which also releases the other from its wait.
      const results = await Promise.allSettled([
        a.catch((e) => (end(), Promise.reject(e))),
        b.catch((e) => (end(), Promise.reject(e))),
      ]);
      const [ra, rb] = results;
      if (ra.status === 'rejected') throw ra.reason;
      if (rb.status === 'rejected') throw rb.reason;
      if (!sameBytes(ra.value.delta, rb.value.delta)) {
        end();
        throw new Error('data-parallel trainers ended on different updates; training alone from now on');
      }
      return ra.value;
    },
    pace: (p) => first.pace?.(p),
    terminate() {
      second?.terminate();
      second = null;
      first.terminate();
    },
  };
}

function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
