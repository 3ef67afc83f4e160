import { readFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, concatDatasets, encodeCifar10, parseCifar10 } from '../shared/data/cifar10.ts';
import { subset, type DataSpec, type Dataset } from '../shared/data/dataset.ts';
import { createRng, permutation } from '../shared/data/rng.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';

/** Where clients' data and the server's held-out set come from. */
export interface DataSource {
  readonly description: string;
  readonly test: Dataset;
  /** What client number `index` (in order of first hello) trains on. */
  specFor(index: number): DataSpec;
  /** CIFAR-10 shard bytes for /api/data/shard/:n (official record format), or null. */
  shard(n: number): Uint8Array | null;
}

/** Synthetic: every client generates its own examples from a seed; the test set uses a disjoint seed. */
export function syntheticSource(seed: number, perClient: number, testExamples: number): DataSource {
  const test = syntheticDataset({ seed: seed * 7919 + 104729, count: testExamples });
  return {
    description: `synthetic (${perClient} examples per client, ${testExamples} held out)`,
    test,
    specFor: (index) => ({ kind: 'synthetic', seed: (seed * 1_000_003 + index * 7_919 + 1) >>> 0, count: perClient }),
    shard: () => null,
  };
}

export async function readCifar10Dir(dir: string, testLimit = Infinity): Promise<{ train: Dataset; test: Dataset }> {
  const files = [...CIFAR_TRAIN_FILES, CIFAR_TEST_FILE].map((f) => join(dir, f));
  for (const f of files) {
    await access(f).catch(() => {
      throw new Error(`CIFAR-10 file missing: ${f} (expected the official binary version, cifar-10-batches-bin)`);
    });
  }
  const train = concatDatasets(await Promise.all(CIFAR_TRAIN_FILES.map(async (f) => parseCifar10(await readFile(join(dir, f))))));
  const test = parseCifar10(await readFile(join(dir, CIFAR_TEST_FILE)), testLimit);
  return { train, test };
}

/** CIFAR-10: the training set is shuffled once and cut into IID shards that clients download. */
export async function cifarSource(dir: string, seed: number, perClient: number, testExamples: number): Promise<DataSource> {
  const { train, test } = await readCifar10Dir(dir, testExamples);
  const order = permutation(train.n, createRng(seed));
  const shards = Math.floor(train.n / perClient);
  if (shards < 1) throw new Error(`--examples-per-client ${perClient} exceeds the ${train.n} CIFAR-10 training examples`);
  const cache = new Map<number, Uint8Array>();
  return {
    description: `CIFAR-10 from ${dir} (${shards} IID shards of ${perClient}, ${test.n} test examples)`,
    test,
    specFor: (index) => ({ kind: 'cifar10-shard', url: `/api/data/shard/${index % shards}`, count: perClient }),
    shard: (n) => {
      if (!Number.isInteger(n) || n < 0 || n >= shards) return null;
      let bytes = cache.get(n);
      if (!bytes) {
        bytes = encodeCifar10(subset(train, order.subarray(n * perClient, (n + 1) * perClient)));
        cache.set(n, bytes);
      }
      return bytes;
    },
  };
}
