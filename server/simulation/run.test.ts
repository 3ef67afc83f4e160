import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '../../client/wasm-backend.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { epsilonFor } from '../../shared/dp/calibrate.ts';
import { SERVER_OPTIMIZER_DEFAULTS } from '../../shared/fl/server-opt.ts';
import { MODELS } from '../../shared/model/spec.ts';
import { runSimulation, type SimulationOptions } from './run.ts';

const base = (): SimulationOptions => ({
  model: MODELS.mlp,
  train: syntheticDataset({ seed: 1, count: 20 * 48 }),
  test: syntheticDataset({ seed: 2, count: 300 }),
  clients: 20,
  perRound: 8,
  rounds: 4,
  partition: { kind: 'iid' },
  local: { epochs: 1, batchSize: 16, learningRate: 0.05, optimizer: 'sgd' },
  server: { name: 'fedavg', lr: 1, ...SERVER_OPTIMIZER_DEFAULTS },
  dp: null,
  seed: 1,
});

describe('simulation (headless, the real client trainer and server pieces)', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
  });

  it('FedAvg IID learns: accuracy after 4 rounds beats the initial model', async () => {
    const progress: number[] = [];
    const r = await runSimulation(base(), (rec, p) => p && progress.push(p.client));
    expect(r.rounds).toHaveLength(4);
    expect(r.rounds.every((x) => x.clients === 8 && x.examples === 8 * 48 && x.epsilon === null)).toBe(true);
    expect(r.rounds.at(-1)!.accuracy).toBeGreaterThan(r.initial.accuracy + 0.05);
    expect(progress.length).toBe(4 * 8);
  }, 60_000);

  it('non-IID with FedAdam and FedProx runs; with DP it reports the accountant epsilon each round', async () => {
    const r = await runSimulation({
      ...base(),
      rounds: 2,
      partition: { kind: 'dirichlet', alpha: 0.3 },
      local: { ...base().local, proximalMu: 0.1 },
      server: { name: 'fedadam', lr: 0.03, ...SERVER_OPTIMIZER_DEFAULTS },
      dp: { noiseMultiplier: 1, clipNorm: 0.5, delta: 1e-5 },
    });
    expect(r.rounds.map((x) => x.epsilon)).toEqual([
      epsilonFor(8 / 20, 1, 1, 1e-5),
      epsilonFor(8 / 20, 1, 2, 1e-5),
    ]);
    expect(r.rounds.every((x) => Number.isFinite(x.accuracy))).toBe(true);
  }, 60_000);

  it('the CLI writes rounds.csv, rounds.json and an SVG plot', () => {
    const out = mkdtempSync(join(tmpdir(), 'sim-'));
    execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'server/simulation/cli.ts',
        '--clients',
        '10',
        '--per-round',
        '4',
        '--rounds',
        '2',
        '--examples-per-client',
        '24',
        '--test-examples',
        '100',
        '--out',
        out,
      ],
      { stdio: 'pipe' },
    );
    const csv = readFileSync(join(out, 'rounds.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('round,clients,examples,accuracy,loss,epsilon,train_loss,seconds');
    expect(csv).toHaveLength(3);
    const json = JSON.parse(readFileSync(join(out, 'rounds.json'), 'utf8'));
    expect(json.rounds).toHaveLength(2);
    const svg = readFileSync(join(out, 'accuracy.svg'), 'utf8');
    expect(svg).toMatch(/^<svg /);
    expect(svg.match(/<circle /g)).toHaveLength(3); // initial + 2 rounds
  }, 60_000);
});
