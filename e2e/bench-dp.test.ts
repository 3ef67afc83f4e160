import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript } from './run-script.ts';
import { epsilonFor, noiseForEpsilon } from '../shared/dp/calibrate.ts';

/** `npm run bench:dp` at a toy budget: the machinery (calibration, Poisson rounds, ledger, files), not the accuracy. */
describe('bench:dp', () => {
  it('calibrates z per target epsilon, spends no more than the target, and writes JSON and SVG', () => {
    const out = mkdtempSync(join(tmpdir(), 'aegis-dp-'));
    const args = ['--cifar-dir', join(out, 'none'), '--train', '400', '--test', '50', '--population', '40'];
    args.push('--q', '0.25', '--rounds', '8', '--epsilons', '8,inf', '--model', 'mlp', '--eval-every', '4');
    args.push('--workers', '0', '--out', out);
    const r = runScript('e2e/bench-dp.ts', args);
    expect(r.stderr + r.stdout).toContain('SYNTHETIC');
    expect(r.status).toBe(0);
    const j = JSON.parse(readFileSync(join(out, 'dp.json'), 'utf8')) as {
      done: boolean;
      settings: { population: number; perClient: number; minUpdates: number; q: number };
      arms: {
        target: number | 'inf';
        z: number;
        zEffective: number;
        epsilon: number | 'inf';
        released: number;
        cohorts: number[];
        points: { round: number }[];
      }[];
    };
    expect(j.done).toBe(true);
    expect(j.settings).toMatchObject({ population: 40, perClient: 10, minUpdates: 8, q: 0.25 });
    const [dp, clipOnly] = j.arms;
    expect(dp.target).toBe(8);
    expect(dp.z).toBe(noiseForEpsilon(8, 1e-5, 0.25, 8));
    // Seed 1 draws 12, 15, 14, 0 (below the minimum of 8: skipped), 12, 11, 12, 14 clients: the skipped draw
    // is not charged, so epsilon is the accountant's for the 7 rounds released, under the target.
    expect(dp.cohorts).toEqual([12, 15, 14, 0, 12, 11, 12, 14]);
    expect(dp.released).toBe(7);
    expect(dp.epsilon).toBeCloseTo(epsilonFor(0.25, dp.z, 7, 1e-5), 10);
    expect(dp.epsilon as number).toBeLessThan(8);
    // Each client adds the noise planned for 8 survivors: n clients carry z sqrt(n / 8).
    const live = dp.cohorts.filter((n) => n > 0);
    expect(dp.zEffective).toBeCloseTo(
      live.reduce((a, n) => a + dp.z * Math.sqrt(n / 8), 0) / live.length,
      10,
    );
    expect(clipOnly).toMatchObject({ target: 'inf', z: 0, epsilon: 'inf', released: 7 });
    // Evaluated at the start, on the schedule (round 4, skipped but scored) and after the last round.
    expect(dp.points.map((p) => p.round)).toEqual([0, 4, 8]);
    expect(readFileSync(join(out, 'dp.svg'), 'utf8')).toContain('User-level DP-FedAvg');
  });
});
