import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript } from './run-script.ts';

/** `npm run bench:accuracy` at a toy budget: the machinery, not the learning (synthetic data, mlp). */
describe('bench:accuracy', () => {
  it('runs the chosen arms at one budget (the Dirichlet arm in expectation) and writes JSON and SVG', () => {
    const out = mkdtempSync(join(tmpdir(), 'aegis-acc-'));
    const args = ['--cifar-dir', join(out, 'none'), '--train', '240', '--test', '60', '--clients', '6'];
    args.push('--per-round', '3', '--local-epochs', '1', '--epochs', '2', '--model', 'mlp', '--workers', '0');
    args.push('--arms', 'central,iid,fedprox,shards', '--out', out);
    const r = runScript('e2e/bench-accuracy.ts', args);
    expect(r.stderr + r.stdout).toContain('SYNTHETIC');
    expect(r.status).toBe(0);
    const j = JSON.parse(readFileSync(join(out, 'accuracy.json'), 'utf8')) as {
      done: boolean;
      settings: { rounds: number; lrSchedule: string; arms: string[] };
      arms: { name: string; passes: number; points: { passes: number; accuracy: number }[] }[];
    };
    expect(j.done).toBe(true);
    expect(j.settings).toMatchObject({ rounds: 4, lrSchedule: 'cosine' });
    expect(j.arms.map((a) => a.name)).toEqual([
      'centralized',
      'FedAvg IID',
      'FedProx Dirichlet(0.5)',
      'FedAvg label shards (2)',
    ]);
    // 2 epochs of 240 examples = 4 rounds of 3 clients x 40 examples x 1 local epoch. Dirichlet clients
    // hold unequal shares of the pool, so that arm matches the budget only in expectation.
    const passes = Object.fromEntries(j.arms.map((a) => [a.name, a.passes]));
    expect(passes).toMatchObject({ centralized: 480, 'FedAvg IID': 480, 'FedAvg label shards (2)': 480 });
    expect(passes['FedProx Dirichlet(0.5)']).toBeGreaterThan(240);
    expect(passes['FedProx Dirichlet(0.5)']).toBeLessThan(960);
    expect(readFileSync(join(out, 'accuracy.svg'), 'utf8')).toContain('FedAvg label shards (2)');
    // Each evaluation prints a lasting line (a long run shows how it goes), and the gaps are printed.
    expect(r.stderr).toMatch(/centralized: epoch 2\/2, test accuracy \d+\.\d%\n/);
    expect(r.stderr).toMatch(/FedAvg IID: round 4\/4, test accuracy \d+\.\d%\n/);
    expect(r.stdout).toMatch(/FedAvg IID +\d+\.\d% +-?\d+\.\d points/);
    // --server-opt fedavgm: the FedAvg arms take server momentum, and say so; --central-momentum likewise.
    const outM = mkdtempSync(join(tmpdir(), 'aegis-acc-'));
    const argsM = [...args.slice(0, args.indexOf('--arms')), '--arms', 'central,iid', '--out', outM];
    argsM.push('--server-opt', 'fedavgm', '--server-momentum', '0.5', '--central-momentum');
    const m = runScript('e2e/bench-accuracy.ts', argsM);
    expect(m.status).toBe(0);
    const jm = JSON.parse(readFileSync(join(outM, 'accuracy.json'), 'utf8')) as typeof j & {
      settings: { fedavg: { name: string; momentum: number }; centralOptimizer: string };
    };
    expect(jm.settings.fedavg).toMatchObject({ name: 'fedavgm', momentum: 0.5 });
    expect(jm.settings.centralOptimizer).toBe('momentum 0.9, lr x 0.1');
    expect(jm.arms.map((a) => a.name)).toEqual(['centralized (momentum 0.9)', 'FedAvgM(0.5) IID']);
    // Same seed and data as the first run's plain centralized arm: momentum took other steps.
    expect(jm.arms[0].points.map((p) => p.accuracy)).not.toEqual(j.arms[0].points.map((p) => p.accuracy));
    expect(m.stdout).toMatch(/FedAvgM\(0\.5\) IID +\d+\.\d% +-?\d+\.\d points/);
    // --logit-adjust: the federated arms train on the adjusted loss and say so; the centralized baseline
    // stays plain cross-entropy (the same curve as the first run's, seed for seed).
    const outL = mkdtempSync(join(tmpdir(), 'aegis-acc-'));
    const argsL = [...args.slice(0, args.indexOf('--arms')), '--arms', 'central,dir', '--out', outL];
    const l = runScript('e2e/bench-accuracy.ts', [...argsL, '--logit-adjust']);
    expect(l.status).toBe(0);
    const jl = JSON.parse(readFileSync(join(outL, 'accuracy.json'), 'utf8')) as typeof j & {
      settings: { local: { logitAdjust?: boolean } };
    };
    expect(jl.settings.local.logitAdjust).toBe(true);
    expect(jl.arms.map((a) => a.name)).toEqual(['centralized', 'FedAvg Dirichlet(0.5), logit-adj.']);
    expect(jl.arms[0].points).toEqual(j.arms[0].points);
    // --local-steps: every client trains that many batches whatever its share, so even the Dirichlet arm
    // spends the budget exactly: 480 passes = 10 rounds x 3 clients x 2 steps x 8.
    const outS = mkdtempSync(join(tmpdir(), 'aegis-acc-'));
    const argsS = [...args.slice(0, args.indexOf('--arms')), '--arms', 'central,dir', '--out', outS];
    const st = runScript('e2e/bench-accuracy.ts', [...argsS, '--local-steps', '2', '--batch-size', '8']);
    expect(st.status).toBe(0);
    const js = JSON.parse(readFileSync(join(outS, 'accuracy.json'), 'utf8')) as typeof j & {
      settings: { localSteps: number; local: { steps?: number } };
    };
    expect(js.settings).toMatchObject({ rounds: 10, localSteps: 2, local: { steps: 2, batchSize: 8 } });
    expect(js.arms.map((a) => a.passes)).toEqual([480, 480]);
    // Centralized still takes whole passes over the pool: 240 images in 30 batches of 8, not 2 steps.
    expect(st.stderr).toContain('centralized: epoch 2/2, batch 30/30');
    expect(runScript('e2e/bench-accuracy.ts', ['--local-steps', '1.5']).stderr).toMatch(
      /--local-steps must be an integer/,
    );
    // A mistyped arm is refused before anything trains.
    const bad = runScript('e2e/bench-accuracy.ts', ['--arms', 'fedsgd']);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown arm "fedsgd"/);
  }, 240_000);

  it('--long presets the long run (augmentation, FedAvgM, 6 a round, 1 local epoch, IID only); explicit flags win', () => {
    const out = mkdtempSync(join(tmpdir(), 'aegis-long-'));
    // The preset at a toy size: the flags after --long shrink the data, the model and the budget.
    const args = [
      '--long',
      '--cifar-dir',
      join(out, 'none'),
      '--train',
      '100',
      '--test',
      '20',
      '--clients',
      '10',
    ];
    args.push('--epochs', '1', '--model', 'mlp', '--workers', '0', '--out', out);
    const r = runScript('e2e/bench-accuracy.ts', args);
    expect(r.status).toBe(0);
    const j = JSON.parse(readFileSync(join(out, 'accuracy.json'), 'utf8')) as {
      settings: Record<string, unknown> & { local: { augment: boolean } };
      arms: { name: string }[];
    };
    expect(j.settings).toMatchObject({
      long: true,
      perRound: 6,
      localEpochs: 1,
      arms: ['iid'],
      centralizedEpochs: 1, // overridden
      fedavg: { name: 'fedavgm', momentum: 0.9 },
    });
    expect(j.settings.model).toMatch(/^mlp/); // overridden
    expect(j.settings.local.augment).toBe(true);
    expect(j.arms.map((a) => a.name)).toEqual(['FedAvgM(0.9) IID']);
    // An explicit flag wins wherever it stands, a negated boolean too.
    const off = runScript('e2e/bench-accuracy.ts', ['--no-augment', '--per-round', '2', ...args]);
    expect(off.status).toBe(0);
    const k = JSON.parse(readFileSync(join(out, 'accuracy.json'), 'utf8')) as typeof j;
    expect(k.settings).toMatchObject({ long: true, perRound: 2, localEpochs: 1 });
    expect(k.settings.local.augment).toBe(false);
  }, 240_000);
});
