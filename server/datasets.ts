import { existsSync } from 'node:fs';
import { readFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CIFAR_TEST_FILE,
  CIFAR_TRAIN_FILES,
  concatDatasets,
  encodeCifar10,
  parseCifar10,
} from '../shared/data/cifar10.ts';
import { subset, type DataSpec, type Dataset } from '../shared/data/dataset.ts';
import type { Examples } from '../shared/data/examples.ts';
import { createRng, permutation } from '../shared/data/rng.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import type { DataKind } from '../shared/protocol/status.ts';
import { labelCounts, partition, sampleDirichlet, type PartitionScheme } from '../shared/fl/partition.ts';

export const describeScheme = (s: PartitionScheme): string =>
  s.kind === 'iid'
    ? `IID${s.unbalancedSigma ? `, log-normal sizes (sigma ${s.unbalancedSigma})` : ''}`
    : s.kind === 'dirichlet'
      ? `Dirichlet(${s.alpha}) label skew`
      : `${s.shardsPerClient} label-sorted shards per client`;

/** Where clients' data and the server's held-out set come from. */
export interface DataSource {
  /** Real CIFAR-10 or the synthetic stand-in (what the page's header says). */
  readonly kind: DataKind;
  readonly description: string;
  readonly test: Dataset | Examples;
  /** What client number `index` (in order of first hello) trains on. */
  specFor(index: number): DataSpec;
  /** CIFAR-10 shard bytes for /api/data/shard/:n (official record format), or null. */
  shard(n: number): Uint8Array | null;
}

/**
 * Synthetic: every client generates its own examples from a seed; the test set uses a disjoint seed.
 * Non-IID schemes become per-client label distributions (Dirichlet proportions, or k classes for shards),
 * so clients still generate locally and nothing is downloaded.
 */
export function syntheticSource(
  seed: number,
  perClient: number,
  testExamples: number,
  scheme: PartitionScheme = { kind: 'iid' },
): DataSource {
  const test = syntheticDataset({ seed: seed * 7919 + 104729, count: testExamples });
  const weightsFor = (index: number): number[] | undefined => {
    const rng = createRng((seed * 7_777_777 + index * 104_723 + 3) >>> 0);
    if (scheme.kind === 'dirichlet') return Array.from(sampleDirichlet(scheme.alpha, 10, rng));
    if (scheme.kind === 'shards') {
      const classes = permutation(10, rng).subarray(0, Math.min(10, scheme.shardsPerClient));
      return Array.from({ length: 10 }, (_, c) => (classes.includes(c) ? 1 : 0));
    }
    return undefined;
  };
  const countFor = (index: number): number => {
    if (scheme.kind !== 'iid' || !scheme.unbalancedSigma) return perClient;
    const rng = createRng((seed * 31 + index * 7 + 11) >>> 0);
    return Math.max(
      1,
      Math.round(
        perClient * Math.exp(scheme.unbalancedSigma * rng.normal() - scheme.unbalancedSigma ** 2 / 2),
      ),
    );
  };
  return {
    kind: 'synthetic',
    description: `synthetic (${perClient} examples per client, ${describeScheme(scheme)}, ${testExamples} held out)`,
    test,
    specFor: (index) => {
      const classWeights = weightsFor(index);
      return {
        kind: 'synthetic',
        seed: (seed * 1_000_003 + index * 7_919 + 1) >>> 0,
        count: countFor(index),
        ...(classWeights ? { classWeights } : {}),
      };
    },
    shard: () => null,
  };
}

/**
 * The directory holding the CIFAR-10 binaries: `dir` itself or the `cifar-10-batches-bin` folder the official
 * archive unpacks to inside it; null when neither has them.
 */
export function locateCifar10(dir: string): string | null {
  for (const d of [dir, join(dir, 'cifar-10-batches-bin')])
    if (existsSync(join(d, CIFAR_TRAIN_FILES[0]))) return d;
  return null;
}

/**
 * Why `dir` cannot serve CIFAR-10 (the first missing file), or null when every binary is there. Checked
 * when the flags are parsed, so a wrong --cifar-dir fails in a line before anything is built.
 */
export function missingCifar10(dir: string): string | null {
  const found = locateCifar10(dir) ?? dir;
  for (const f of [...CIFAR_TRAIN_FILES, CIFAR_TEST_FILE])
    if (!existsSync(join(found, f)))
      return `--cifar-dir: ${join(found, f)} not found (expected the binary version, cifar-10-batches-bin)`;
  return null;
}

export async function readCifar10Dir(
  where: string,
  testLimit = Infinity,
): Promise<{ train: Dataset; test: Dataset }> {
  const dir = locateCifar10(where) ?? where;
  const files = [...CIFAR_TRAIN_FILES, CIFAR_TEST_FILE].map((f) => join(dir, f));
  for (const f of files) {
    await access(f).catch(() => {
      throw new Error(
        `CIFAR-10 file missing: ${f} (expected the official binary version, cifar-10-batches-bin)`,
      );
    });
  }
  const train = concatDatasets(
    await Promise.all(CIFAR_TRAIN_FILES.map(async (f) => parseCifar10(await readFile(join(dir, f))))),
  );
  const test = parseCifar10(await readFile(join(dir, CIFAR_TEST_FILE)), testLimit);
  return { train, test };
}

/**
 * CIFAR-10: the training set is partitioned once (IID, Dirichlet label skew, or label-sorted shards) into
 * train.n / perClient parts of perClient examples on average, which clients download as shards.
 */
export async function cifarSource(
  dir: string,
  seed: number,
  perClient: number,
  testExamples: number,
  scheme: PartitionScheme = { kind: 'iid' },
): Promise<DataSource> {
  const { train, test } = await readCifar10Dir(dir, testExamples);
  return partitionedSource(`CIFAR-10 from ${dir}`, train, test, seed, perClient, scheme);
}

/** A labelled pool cut into client shards by `scheme`; empty parts (possible under Dirichlet) are skipped. */
export function partitionedSource(
  name: string,
  train: Dataset,
  test: Dataset,
  seed: number,
  perClient: number,
  scheme: PartitionScheme,
  kind: DataKind = 'cifar10',
): DataSource {
  const parts = Math.floor(train.n / perClient);
  if (parts < 1)
    throw new Error(`--examples-per-client ${perClient} exceeds the ${train.n} training examples`);
  const shards = partition(train.y, parts, scheme, createRng(seed)).filter((p) => p.length > 0);
  const cache = new Map<number, Uint8Array>();
  const classesPerShard = shards.map((p) => labelCounts(train.y, p).filter((c) => c > 0).length);
  const meanClasses = classesPerShard.reduce((a, b) => a + b, 0) / shards.length;
  return {
    kind,
    description: `${name} (${shards.length} shards, ${describeScheme(scheme)}, ${Math.min(...shards.map((p) => p.length))}-${Math.max(...shards.map((p) => p.length))} examples, ${meanClasses.toFixed(1)} classes each on average; ${test.n} test examples)`,
    test,
    specFor: (index) => ({
      kind: 'cifar10-shard',
      url: `/api/data/shard/${index % shards.length}`,
      count: shards[index % shards.length].length,
    }),
    shard: (n) => {
      if (!Number.isInteger(n) || n < 0 || n >= shards.length) return null;
      let bytes = cache.get(n);
      if (!bytes) {
        bytes = encodeCifar10(subset(train, shards[n]));
        cache.set(n, bytes);
      }
      return bytes;
    },
  };
}

/**
 * A task whose data is the visitors' own (join({ data }) on their pages): clients are told so and the
 * server holds only the operator's held-out set (--task-eval).
 */
export function pageSource(test: Examples, evalPath: string): DataSource {
  return {
    kind: 'page',
    description: `each visitor's page supplies its own examples; ${test.n} held out (${evalPath})`,
    test,
    specFor: () => ({ kind: 'page' }),
    shard: () => null,
  };
}
