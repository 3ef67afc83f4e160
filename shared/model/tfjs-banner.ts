import * as tf from '@tensorflow/tfjs';

/** A cpu backend instance; `firstUse` is the flag its first write checks before printing the banner. */
type CpuBackend = tf.KernelBackend & { firstUse?: boolean };

let silenced = false;

/**
 * tfjs' cpu backend prints "Hi, looks like you are running TensorFlow.js in Node.js..." on the first
 * tensor each cpu backend instance holds in Node (env IS_NODE): once per process and per worker, so a
 * test run or a swarm of Node clients repeats it. Our Node code picks its backend on purpose and says
 * which in one line, so the banner is noise. It is silenced here and nowhere else: each cpu backend is
 * made already "used" (the flag the banner checks), leaving tfjs' other warnings and the IS_NODE flag
 * (which changes how tfjs behaves) alone. Idempotent; nothing changes in browsers (no banner there).
 */
export function silenceTfjsNodeBanner(): void {
  if (silenced) return;
  const engine = tf.engine();
  const entry = engine.registryFactory['cpu'];
  if (!entry) return;
  silenced = true;
  const quiet = (b: tf.KernelBackend): tf.KernelBackend => {
    if ('firstUse' in b) (b as CpuBackend).firstUse = false;
    return b;
  };
  const made = engine.registry['cpu'];
  if (made) quiet(made);
  const { factory } = entry;
  engine.registryFactory['cpu'] = {
    ...entry,
    factory: () => {
      const b = factory();
      return b instanceof Promise ? b.then(quiet) : quiet(b);
    },
  };
}
