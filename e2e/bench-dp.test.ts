import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { epsilonFor, noiseForEpsilon } from '../shared/dp/calibrate.ts';

/** `npm run bench:dp` at a toy budget: the machinery (calibration, Poisson rounds, ledger, files), not the accuracy. */
describe('bench:dp', () => {
  it('calibrates z per target epsilon, spends no more than the target, and writes JSON and SVG', () => {
    const out = mkdtempSync(join(tmpdir(), 'aegis-dp-'));
    const args = ['--cifar-dir', join(out, 'none'), '--train', '400', '--test', '50', '--population', '40'];
    args.push('--q', '0.25', '--rounds', '3', '--epsilons', '8,inf', '--model', 'mlp', '--eval-every', '3');
    args.push('--workers', '0', '--out', out);
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'e2e/bench-dp.ts', ...args], {
      encoding: 'utf8',
    });
    expect(r.stderr + r.stdout).toContain('SYNTHETIC');
    expect(r.status).toBe(0);
    const j = JSON.parse(readFileSync(join(out, 'dp.json'), 'utf8')) as {
      done: boolean;
      settings: { population: number; perClient: number; minUpdates: number; q: number };
      arms: {
        target: number | 'inf';
        z: number;
        epsilon: number | 'inf';
        released: number;
        points: unknown[];
      }[];
    };
    expect(j.done).toBe(true);
    expect(j.settings).toMatchObject({ population: 40, perClient: 10, minUpdates: 8, q: 0.25 });
    const [dp, clipOnly] = j.arms;
    expect(dp.target).toBe(8);
    expect(dp.z).toBe(noiseForEpsilon(8, 1e-5, 0.25, 3));
    // Skipped rounds release nothing: epsilon is the accountant's for the rounds released, within the target.
    expect(dp.epsilon).toBeCloseTo(epsilonFor(0.25, dp.z, dp.released, 1e-5), 10);
    expect(dp.epsilon as number).toBeLessThanOrEqual(8);
    expect(clipOnly).toMatchObject({ target: 'inf', z: 0, epsilon: 'inf' });
    expect(dp.points.length).toBeGreaterThanOrEqual(2); // the initial model and the last round at least
    expect(readFileSync(join(out, 'dp.svg'), 'utf8')).toContain('User-level DP-FedAvg');
  });
});
