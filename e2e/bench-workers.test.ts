import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript } from './run-script.ts';

/** `npm run bench:workers` at a toy size: the machinery and its bit-for-bit check, not the speed. */
describe('bench:workers', () => {
  it('trains the same rounds one at a time and in 2 threads, to the same weights, and writes JSON', () => {
    const out = mkdtempSync(join(tmpdir(), 'aegis-workers-'));
    const args = ['--cifar-dir', join(out, 'none'), '--model', 'mlp', '--clients', '4', '--per-round', '3'];
    args.push(
      '--examples-per-client',
      '40',
      '--rounds',
      '2',
      '--workers',
      '2',
      '--eval-reps',
      '1',
      '--out',
      out,
    );
    const r = runScript('e2e/bench-workers.ts', args);
    expect(r.stderr + r.stdout).toContain('synthetic');
    expect(r.status).toBe(0);
    const j = JSON.parse(readFileSync(join(out, 'workers.json'), 'utf8')) as {
      workers: number;
      identical: boolean;
      moved: number;
      sequential: { seconds: number[]; steadyPerMin: number };
      parallel: { seconds: number[]; steadyPerMin: number };
      speedup: number;
      evaluation: { examples: number; ms: number[] };
    };
    expect(j.workers).toBe(2);
    expect(j.identical).toBe(true);
    expect(j.moved).toBeGreaterThan(1e-4); // trained: not two untouched initial models
    expect(j.sequential.seconds).toHaveLength(2);
    expect(j.parallel.seconds).toHaveLength(2);
    expect(j.speedup).toBeCloseTo(j.parallel.steadyPerMin / j.sequential.steadyPerMin, 12);
    expect(j.evaluation.examples).toBe(2000);
    expect(j.evaluation.ms).toHaveLength(1);
  });
});
