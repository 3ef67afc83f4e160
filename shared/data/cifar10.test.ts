import { describe, expect, it } from 'vitest';
import { CIFAR_RECORD_BYTES, concatDatasets, encodeCifar10, parseCifar10 } from './cifar10.ts';
import { syntheticDataset } from './synthetic.ts';

describe('CIFAR-10 binary format', () => {
  it('parses channel-major records into HWC pixels', () => {
    const rec = new Uint8Array(CIFAR_RECORD_BYTES);
    rec[0] = 7;
    rec[1 + 0] = 10; // R of pixel 0
    rec[1 + 1024] = 20; // G of pixel 0
    rec[1 + 2048] = 30; // B of pixel 0
    rec[1 + 33] = 99; // R of pixel (row 1, col 1)
    const d = parseCifar10(rec);
    expect(d.n).toBe(1);
    expect(d.y[0]).toBe(7);
    expect([...d.x.subarray(0, 3)]).toEqual([10, 20, 30]);
    expect(d.x[33 * 3]).toBe(99);
  });

  it('round-trips encode -> parse exactly', () => {
    const d = syntheticDataset({ seed: 5, count: 20 });
    const back = parseCifar10(encodeCifar10(d));
    expect(back.n).toBe(20);
    expect(back.y).toEqual(d.y);
    expect(back.x).toEqual(d.x);
  });

  it('honours a record limit', () => {
    const d = syntheticDataset({ seed: 5, count: 10 });
    expect(parseCifar10(encodeCifar10(d), 3).n).toBe(3);
  });

  it('rejects truncated files and bad labels with clear errors', () => {
    expect(() => parseCifar10(new Uint8Array(CIFAR_RECORD_BYTES + 5))).toThrow(
      /not a multiple of the 3073-byte record/,
    );
    const bad = new Uint8Array(CIFAR_RECORD_BYTES);
    bad[0] = 12;
    expect(() => parseCifar10(bad)).toThrow(/label 12/);
  });

  it('concatenates datasets in order', () => {
    const a = syntheticDataset({ seed: 1, count: 3 }),
      b = syntheticDataset({ seed: 2, count: 2 });
    const c = concatDatasets([a, b]);
    expect(c.n).toBe(5);
    expect([...c.y]).toEqual([...a.y, ...b.y]);
    expect(c.x.subarray(3 * 3072)).toEqual(b.x);
  });
});
