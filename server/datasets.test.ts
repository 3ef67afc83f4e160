import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, encodeCifar10, parseCifar10 } from '../shared/data/cifar10.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import {
  cifarDirOrDefault,
  cifarSource,
  DEFAULT_CIFAR_PARENT,
  locateCifar10,
  partitionedSource,
  readCifar10Dir,
  syntheticSource,
} from './datasets.ts';

/** A miniature CIFAR-10 directory in the official file layout: 5 train batches of 10, a test batch of 7. */
function fakeCifarDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cifar-'));
  CIFAR_TRAIN_FILES.forEach((f, i) =>
    writeFileSync(join(dir, f), encodeCifar10(syntheticDataset({ seed: 100 + i, count: 10 }))),
  );
  writeFileSync(join(dir, CIFAR_TEST_FILE), encodeCifar10(syntheticDataset({ seed: 200, count: 7 })));
  return dir;
}

describe('data sources', () => {
  it('reads a CIFAR-10 directory: all five train batches, the test batch', async () => {
    const { train, test } = await readCifar10Dir(fakeCifarDir());
    expect(train.n).toBe(50);
    expect(test.n).toBe(7);
    expect(train.y.subarray(10, 20)).toEqual(syntheticDataset({ seed: 101, count: 10 }).y);
  });

  it('serves the default data folder when it holds every binary, synthetic data otherwise', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'cwd-'));
    expect(cifarDirOrDefault(undefined, cwd)).toBeUndefined();
    expect(cifarDirOrDefault('/given', cwd)).toBe('/given');
    mkdirSync(join(cwd, 'data'));
    renameSync(fakeCifarDir(), join(cwd, DEFAULT_CIFAR_PARENT));
    expect(cifarDirOrDefault(undefined, cwd)).toBe(join(cwd, DEFAULT_CIFAR_PARENT));
    renameSync(join(cwd, DEFAULT_CIFAR_PARENT, CIFAR_TEST_FILE), join(cwd, 'moved.bin'));
    expect(cifarDirOrDefault(undefined, cwd)).toBeUndefined(); // incomplete: not used
  });

  it('finds the binaries in the directory or in the cifar-10-batches-bin folder the archive unpacks to', () => {
    const dir = fakeCifarDir();
    expect(locateCifar10(dir)).toBe(dir);
    const parent = mkdtempSync(join(tmpdir(), 'cifar-parent-'));
    renameSync(dir, join(parent, 'cifar-10-batches-bin'));
    expect(locateCifar10(parent)).toBe(join(parent, 'cifar-10-batches-bin'));
    expect(locateCifar10(join(tmpdir(), 'nope'))).toBeNull();
  });

  it('names the missing file', async () => {
    await expect(readCifar10Dir(tmpdir() + '/nope')).rejects.toThrow(
      /CIFAR-10 file missing: .*data_batch_1\.bin/,
    );
  });

  it('cuts disjoint IID shards that clients download as CIFAR records', async () => {
    const src = await cifarSource(fakeCifarDir(), 1, 12, 5);
    expect(src.test.n).toBe(5);
    expect(src.specFor(0)).toEqual({ kind: 'cifar10-shard', url: '/api/data/shard/0', count: 13 });
    expect(src.specFor(4)).toEqual({ kind: 'cifar10-shard', url: '/api/data/shard/0', count: 13 }); // 4 shards (13, 13, 12, 12) from 50
    const shards = [0, 1, 2, 3].map((n) => parseCifar10(src.shard(n)!));
    expect(shards.map((s) => s.n)).toEqual([13, 13, 12, 12]);
    const seen = new Set(
      shards.flatMap((s) =>
        Array.from({ length: s.n }, (_, i) =>
          Buffer.from(s.x.subarray(i * 3072, (i + 1) * 3072)).toString('base64'),
        ),
      ),
    );
    expect(seen.size).toBe(50); // every example in exactly one shard
    expect(src.shard(4)).toBeNull();
    expect(src.shard(-1)).toBeNull();
  });

  it('non-IID shards: Dirichlet and label-sorted shards skew the labels each client downloads', () => {
    const pool = syntheticDataset({ seed: 5, count: 2000 });
    const test = syntheticDataset({ seed: 6, count: 10 });
    const classes = (src: ReturnType<typeof partitionedSource>, n: number) =>
      new Set(parseCifar10(src.shard(n)!).y).size;
    const shards = partitionedSource('pool', pool, test, 1, 100, { kind: 'shards', shardsPerClient: 2 });
    expect(shards.description).toMatch(/20 shards, 2 label-sorted shards per client/);
    for (let n = 0; n < 20; n++) expect(classes(shards, n)).toBeLessThanOrEqual(3); // shard edges may straddle a class
    const iid = partitionedSource('pool', pool, test, 1, 100, { kind: 'iid' });
    expect(classes(iid, 0)).toBe(10);
    const dir = partitionedSource('pool', pool, test, 1, 100, { kind: 'dirichlet', alpha: 0.1 });
    const mean = Array.from({ length: 10 }, (_, n) => classes(dir, n)).reduce((a, b) => a + b) / 10;
    expect(mean).toBeLessThan(6);
  });

  it('synthetic non-IID: Dirichlet class weights or k classes per client travel in the data spec', () => {
    const d = syntheticSource(1, 64, 10, { kind: 'dirichlet', alpha: 0.1 }).specFor(3);
    expect(d.kind === 'synthetic' && d.classWeights!.length).toBe(10);
    const sh = syntheticSource(1, 64, 10, { kind: 'shards', shardsPerClient: 2 }).specFor(3);
    expect(sh.kind === 'synthetic' && sh.classWeights!.filter((w) => w > 0).length).toBe(2);
    if (sh.kind !== 'synthetic') throw new Error('expected synthetic');
    const data = syntheticDataset({ seed: sh.seed, count: sh.count, classWeights: sh.classWeights });
    expect(new Set(data.y).size).toBe(2);
    const un = syntheticSource(1, 64, 10, { kind: 'iid', unbalancedSigma: 1 });
    const counts = Array.from({ length: 20 }, (_, i) => (un.specFor(i) as { count: number }).count);
    expect(Math.max(...counts) / Math.min(...counts)).toBeGreaterThan(2);
  });

  it('synthetic: distinct seeds per client, a held-out set from another seed', () => {
    const s = syntheticSource(1, 16, 20);
    const a = s.specFor(0),
      b = s.specFor(1);
    expect(a).toMatchObject({ kind: 'synthetic', count: 16 });
    expect(a).not.toEqual(b);
    expect(s.test.n).toBe(20);
    expect(s.shard(0)).toBeNull();
  });
});
