/**
 * Server optimizers on the aggregated update (Reddi et al. 2021, "Adaptive Federated Optimization").
 * The aggregate delta (mean of w_local - w_global) is treated as a pseudo-gradient step:
 *   FedAvg:     x += lr * d
 *   FedAvgM:    m = momentum * m + d;                       x += lr * m
 *   FedAdagrad: m = b1 m + (1 - b1) d;  v = v + d^2;         x += lr * m / (sqrt(v) + tau)
 *   FedYogi:    m as above;  v = v - (1 - b2) d^2 sign(v - d^2); x += lr * m / (sqrt(v) + tau)
 *   FedAdam:    m as above;  v = b2 v + (1 - b2) d^2;        x += lr * m / (sqrt(v) + tau)
 * with v initialised to tau^2 and no bias correction, as in the paper. State is float64, one vector each.
 */
export const SERVER_OPTIMIZERS = ['fedavg', 'fedavgm', 'fedadagrad', 'fedyogi', 'fedadam'] as const;
export type ServerOptimizerName = (typeof SERVER_OPTIMIZERS)[number];

export interface ServerOptimizerConfig {
  name: ServerOptimizerName;
  lr: number;
  /** FedAvgM momentum. */
  momentum: number;
  beta1: number;
  beta2: number;
  /** Adaptivity: larger tau makes the adaptive methods behave more like momentum SGD. */
  tau: number;
}

export const SERVER_OPTIMIZER_DEFAULTS: Omit<ServerOptimizerConfig, 'name' | 'lr'> = {
  momentum: 0.9,
  beta1: 0.9,
  beta2: 0.99,
  tau: 1e-3,
};

/** A copy of an optimizer's moment vectors (null where the method keeps none). */
export interface ServerOptimizerState {
  readonly m: Float64Array | null;
  readonly v: Float64Array | null;
}

export interface ServerOptimizer {
  readonly config: ServerOptimizerConfig;
  /** New weights from the current ones and the aggregate delta; the inputs are not modified. */
  step(weights: Float32Array, delta: Float32Array): Float32Array;
  /** A copy of the state, so that a step whose model is discarded can be undone with restore. */
  save(): ServerOptimizerState;
  restore(state: ServerOptimizerState): void;
}

export function createServerOptimizer(config: ServerOptimizerConfig, length: number): ServerOptimizer {
  const { name, lr, momentum, beta1, beta2, tau } = config;
  if (!SERVER_OPTIMIZERS.includes(name)) throw new RangeError(`unknown server optimizer "${name}"`);
  if (!(lr > 0)) throw new RangeError('server learning rate must be > 0');
  const m = name === 'fedavg' ? null : new Float64Array(length);
  const v = name === 'fedavg' || name === 'fedavgm' ? null : new Float64Array(length).fill(tau * tau);
  return {
    config,
    step(weights, delta) {
      if (weights.length !== length || delta.length !== length)
        throw new RangeError(`expected vectors of ${length} values`);
      const out = new Float32Array(length);
      for (let i = 0; i < length; i++) {
        const d = delta[i];
        let u: number;
        if (name === 'fedavg') u = d;
        else if (name === 'fedavgm') u = m![i] = momentum * m![i] + d;
        else {
          const mi = (m![i] = beta1 * m![i] + (1 - beta1) * d);
          const d2 = d * d;
          const vi = v![i];
          v![i] =
            name === 'fedadagrad'
              ? vi + d2
              : name === 'fedyogi'
                ? vi - (1 - beta2) * d2 * Math.sign(vi - d2)
                : beta2 * vi + (1 - beta2) * d2;
          u = mi / (Math.sqrt(v![i]) + tau);
        }
        out[i] = weights[i] + lr * u;
      }
      return out;
    },
    save: () => ({ m: m ? m.slice() : null, v: v ? v.slice() : null }),
    restore(state) {
      if ((state.m === null) !== (m === null) || (state.v === null) !== (v === null))
        throw new TypeError(`state does not belong to a ${name} optimizer`);
      if (state.m) m!.set(state.m);
      if (state.v) v!.set(state.v);
    },
  };
}
