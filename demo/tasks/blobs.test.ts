import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blobCentres, blobs } from '../../shared/data/blobs.ts';
import { packExamples } from '../../shared/data/examples.ts';
import { checkTask } from '../../shared/model/task.ts';
import { BLOBS_CLASSES, BLOBS_DIMS, blobsEval, blobsTask } from './blobs.ts';

const read = (f: string): unknown => JSON.parse(readFileSync(new URL(f, import.meta.url), 'utf8'));

describe('the blobs task fixtures', () => {
  it('the committed task file and held-out set are what blobs.ts generates (write-blobs.ts)', () => {
    expect(read('./blobs.task.json')).toEqual(blobsTask());
    expect(read('./blobs.eval.json')).toEqual(blobsEval());
    expect(checkTask(read('./blobs.task.json')).task.inputShape).toEqual([BLOBS_DIMS]);
  });

  it('blobs: seeded, every class present, and nearest-centre classifies most examples (learnable)', () => {
    const a = blobs({ seed: 3, count: 400 });
    expect(blobs({ seed: 3, count: 400 })).toEqual(a);
    expect(blobs({ seed: 4, count: 400 })).not.toEqual(a);
    const e = packExamples(a, [BLOBS_DIMS], BLOBS_CLASSES);
    const counts = new Array(BLOBS_CLASSES).fill(0);
    for (const y of e.y) counts[y]++;
    expect(Math.min(...counts)).toBeGreaterThan(60);
    const centres = blobCentres(BLOBS_DIMS, BLOBS_CLASSES);
    let right = 0;
    for (let i = 0; i < e.n; i++) {
      const row = e.x.subarray(i * BLOBS_DIMS, (i + 1) * BLOBS_DIMS);
      const dist = centres.map((c) => c.reduce((s, v, j) => s + (v - row[j]) ** 2, 0));
      if (dist.indexOf(Math.min(...dist)) === e.y[i]) right++;
    }
    // Separable enough to learn, noisy enough that learning shows: well above chance (0.25), below 1.
    expect(right / e.n).toBeGreaterThan(0.8);
    expect(right / e.n).toBeLessThan(1);
  });
});
