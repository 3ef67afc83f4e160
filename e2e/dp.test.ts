import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { AegisClient } from '../client/client.ts';
import { nodeTrainer } from '../client/node-trainer.ts';
import { epsilonFor } from '../shared/dp/calibrate.ts';
import { metric } from './metrics.ts';
import {
  startServerProcess,
  waitForPhase,
  type ServerProcess,
  flags,
  cohortOf,
  TINY_SERVER,
} from './server-process.ts';

/**
 * Differential privacy end to end, with the real client code in Node: clients clip and add Skellam noise
 * to their updates (here without secure aggregation: ring vectors go unmasked), the server charges each
 * round to the RDP ledger, exports epsilon, and stops before the budget would be exceeded.
 */
const z = 1.2;
const eps2 = epsilonFor(1, z, 2, 1e-5);
const eps3 = epsilonFor(1, z, 3, 1e-5);
const budget = Number(((eps2 + eps3) / 2).toFixed(3)); // room for exactly two rounds
let srv: ServerProcess;
const clients: AegisClient[] = [];

beforeAll(async () => {
  await tf.setBackend('cpu');
  srv = await startServerProcess(
    flags({
      ...TINY_SERVER,
      ...cohortOf(3),
      rounds: 5,
      'min-updates': 2,
      'round-pause-ms': 200,
      epochs: 1,
      'batch-size': 8,
      lr: 0.005,
      secagg: 'off',
      'dp-noise': z,
      'dp-epsilon': budget,
      'dp-clip': 0.1,
      'dp-adaptive-clip': true,
      'dp-indicator-std': 1,
    }),
  );
});

afterAll(async () => {
  if (process.env.DEBUG_E2E) console.log(srv?.output());
  for (const c of clients) c.stop();
  await srv?.stop();
});

describe('differential privacy with Node clients', () => {
  it('clips and noises on the client, charges epsilon per round, stops at the budget', async () => {
    const norms: number[] = [];
    for (let i = 0; i < 3; i++) {
      const c = new AegisClient({
        serverUrl: srv.url,
        source: 'node',
        spawnTrainer: nodeTrainer,
        backends: ['cpu'],
        // This server runs DP without secure aggregation (--secagg off): these clients accept that.
        floors: { requireSecAgg: false },
      });
      c.on('encoded', (e) => norms.push(e.norm));
      clients.push(c);
      c.start();
    }
    const status = await waitForPhase(srv.url, 'done', 120_000);
    expect(status.history).toHaveLength(2);
    expect(status.stopReason).toMatch(/privacy budget reached: round 3 would raise epsilon/);
    expect(status.history.map((h) => h.secagg)).toEqual([false, false]);
    // Under DP neither an example count nor a loss is ever sent.
    expect(status.history.map((h) => [h.examples, h.trainLoss])).toEqual([
      [null, null],
      [null, null],
    ]);
    expect(status.history[1].epsilon).toBeCloseTo(eps2, 6);
    expect(status.privacy).toMatchObject({
      enabled: true,
      noiseMultiplier: z,
      epsilonBudget: budget,
      adaptiveClipping: true,
      rounds: 2,
      q: 1, // no --dp-population: fixed-size cohorts, no amplification claimed
    });
    // At q = 1 the released models and the server are charged alike.
    if (status.privacy.enabled) expect(status.privacy.epsilonAgainstServer).toBeCloseTo(eps2, 6);
    // Adaptive clipping: the clip moved from 0.1 after round 1.
    expect(status.history[0].clipNorm).toBe(0.1);
    expect(status.history[1].clipNorm).not.toBe(0.1);
    expect(norms.length).toBeGreaterThanOrEqual(6);
    const m = await (await fetch(srv.url + '/metrics')).text();
    expect(metric(m, 'aegis_dp_epsilon')).toBeCloseTo(eps2, 6);
    expect(metric(m, 'aegis_dp_epsilon_against_server')).toBeCloseTo(eps2, 6);
    expect(metric(m, 'aegis_dp_epsilon_budget')).toBe(budget);
    expect(metric(m, 'aegis_rounds_completed_total')).toBe(2);
  }, 150_000);
});
