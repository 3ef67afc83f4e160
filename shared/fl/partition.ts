import { permutation, type Rng } from '../data/rng.ts';

/**
 * Splitting a labelled pool across clients, for non-IID experiments (seeded RNG: partitions are
 * reproducible, and nothing here is secret):
 * - iid: a random permutation cut into pieces (equal, or log-normal sizes when unbalanced);
 * - dirichlet: per class, proportions over clients ~ Dirichlet(alpha) (Yurochkin et al. 2019, Wang et al.
 *   2020; Hsu et al. 2019 draw each client's class mix instead, at equal sizes); small alpha, strong label
 *   skew and unequal sizes;
 * - shards: sort by label, cut into clients * shardsPerClient shards, deal shardsPerClient to each
 *   (McMahan et al. 2017: 2 shards -> most clients see 2 classes).
 * Every example goes to exactly one client.
 */
export type PartitionScheme =
  | { kind: 'iid'; unbalancedSigma?: number }
  | { kind: 'dirichlet'; alpha: number }
  | { kind: 'shards'; shardsPerClient: number };

/** Gamma(shape, 1) by Marsaglia-Tsang (shape < 1 via the boost U^(1/shape)). */
export function sampleGamma(shape: number, rng: Rng): number {
  if (!(shape > 0)) throw new RangeError(`gamma shape must be > 0, got ${shape}`);
  if (shape < 1) return sampleGamma(shape + 1, rng) * Math.pow(rng.next() || Number.MIN_VALUE, 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.next();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function sampleDirichlet(alpha: number, k: number, rng: Rng): Float64Array {
  const g = Float64Array.from({ length: k }, () => sampleGamma(alpha, rng));
  const s = g.reduce((a, b) => a + b, 0);
  return g.map((x) => x / s);
}

/** Cuts `n` into `parts` integer sizes proportional to `weights` (largest remainders; sums to n exactly). */
export function apportion(n: number, weights: ArrayLike<number>): number[] {
  const total = Array.from(weights).reduce((a, b) => a + b, 0);
  const raw = Array.from(weights, (w) => (n * w) / total);
  const out = raw.map(Math.floor);
  let left = n - out.reduce((a, b) => a + b, 0);
  const order = raw.map((r, i) => [r - Math.floor(r), i] as const).sort((a, b) => b[0] - a[0]);
  for (let j = 0; left > 0; j++, left--) out[order[j % order.length][1]]++;
  return out;
}

export function partition(
  labels: ArrayLike<number>,
  clients: number,
  scheme: PartitionScheme,
  rng: Rng,
  numClasses = 10,
): number[][] {
  if (!Number.isInteger(clients) || clients < 1)
    throw new RangeError(`clients must be a positive integer, got ${clients}`);
  const n = labels.length;
  const out: number[][] = Array.from({ length: clients }, () => []);
  if (scheme.kind === 'iid') {
    const order = permutation(n, rng);
    const sigma = scheme.unbalancedSigma ?? 0;
    const sizes = apportion(
      n,
      Array.from({ length: clients }, () => (sigma > 0 ? Math.exp(sigma * rng.normal()) : 1)),
    );
    let off = 0;
    sizes.forEach((s, c) => {
      out[c] = Array.from(order.subarray(off, off + s));
      off += s;
    });
    return out;
  }
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < n; i++) byClass[labels[i]].push(i);
  for (const idx of byClass) {
    const p = permutation(idx.length, rng);
    const shuffled = Array.from(p, (j) => idx[j]);
    idx.splice(0, idx.length, ...shuffled);
  }
  if (scheme.kind === 'dirichlet') {
    if (!(scheme.alpha > 0)) throw new RangeError('Dirichlet alpha must be > 0');
    for (const idx of byClass) {
      const sizes = apportion(idx.length, sampleDirichlet(scheme.alpha, clients, rng));
      let off = 0;
      sizes.forEach((s, c) => {
        out[c].push(...idx.slice(off, off + s));
        off += s;
      });
    }
    return out;
  }
  const k = scheme.shardsPerClient;
  if (!Number.isInteger(k) || k < 1) throw new RangeError('shardsPerClient must be a positive integer');
  const sorted = byClass.flat();
  const shards = clients * k;
  const sizes = apportion(sorted.length, new Array(shards).fill(1));
  const starts: number[] = [];
  sizes.reduce((off, s) => (starts.push(off), off + s), 0);
  const deal = permutation(shards, rng);
  for (let j = 0; j < shards; j++) {
    const sh = deal[j];
    out[Math.floor(j / k)].push(...sorted.slice(starts[sh], starts[sh] + sizes[sh]));
  }
  return out;
}

/** Per-client label histogram, for reports and tests. */
export function labelCounts(labels: ArrayLike<number>, idx: readonly number[], numClasses = 10): number[] {
  const c = new Array(numClasses).fill(0);
  for (const i of idx) c[labels[i]]++;
  return c;
}
