import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, encodeCifar10, parseCifar10 } from '../shared/data/cifar10.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { cifarSource, readCifar10Dir, syntheticSource } from './datasets.ts';

/** A miniature CIFAR-10 directory in the official file layout: 5 train batches of 10, a test batch of 7. */
function fakeCifarDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cifar-'));
  CIFAR_TRAIN_FILES.forEach((f, i) => writeFileSync(join(dir, f), encodeCifar10(syntheticDataset({ seed: 100 + i, count: 10 }))));
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

  it('names the missing file', async () => {
    await expect(readCifar10Dir(tmpdir() + '/nope')).rejects.toThrow(/CIFAR-10 file missing: .*data_batch_1\.bin/);
  });

  it('cuts disjoint IID shards that clients download as CIFAR records', async () => {
    const src = await cifarSource(fakeCifarDir(), 1, 12, 5);
    expect(src.test.n).toBe(5);
    expect(src.specFor(0)).toEqual({ kind: 'cifar10-shard', url: '/api/data/shard/0', count: 12 });
    expect(src.specFor(4)).toEqual({ kind: 'cifar10-shard', url: '/api/data/shard/0', count: 12 }); // 4 shards of 12 from 50
    const shards = [0, 1, 2, 3].map((n) => parseCifar10(src.shard(n)!));
    expect(shards.every((s) => s.n === 12)).toBe(true);
    const seen = new Set(shards.flatMap((s) => Array.from({ length: s.n }, (_, i) => Buffer.from(s.x.subarray(i * 3072, (i + 1) * 3072)).toString('base64'))));
    expect(seen.size).toBe(48); // no example in two shards
    expect(src.shard(4)).toBeNull();
    expect(src.shard(-1)).toBeNull();
  });

  it('synthetic: distinct seeds per client, a held-out set from another seed', () => {
    const s = syntheticSource(1, 16, 20);
    const a = s.specFor(0), b = s.specFor(1);
    expect(a).toMatchObject({ kind: 'synthetic', count: 16 });
    expect(a).not.toEqual(b);
    expect(s.test.n).toBe(20);
    expect(s.shard(0)).toBeNull();
  });
});
