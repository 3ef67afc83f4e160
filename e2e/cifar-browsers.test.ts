import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { locateCifar10 } from '../server/datasets.ts';
import { metric } from './metrics.ts';
import { startServerProcess, waitForPhase, type ServerProcess, flags, cohortOf } from './server-process.ts';
import { startSwarm, type Swarm } from './swarm-lib.ts';

/**
 * Browsers on real data: the server reads the CIFAR-10 binaries and serves each tab a shard of a few hundred
 * real images; 3 headless chromium tabs train on them (wasm, the fast backend on a CPU) with secure
 * aggregation on, and the global model's accuracy on 1,000 real CIFAR-10 test images must rise by 5 points.
 * The data is found at ../shared/data/cifar10 beside the repository (as CI has it) or at $AEGIS_CIFAR_DIR;
 * without it the test fails and says where it looked (no silent skip).
 */
const ROUNDS = 3;
const TABS = 3;
const PER_TAB = 300;
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CANDIDATES = [process.env.AEGIS_CIFAR_DIR, join(REPO, '..', 'shared', 'data', 'cifar10')].filter(
  (d): d is string => !!d,
);

let srv: ServerProcess;
let swarm: Swarm | null = null;

beforeAll(async () => {
  if (!existsSync('dist/demo/index.html'))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
  const dir = CANDIDATES.map((d) => locateCifar10(d)).find((d) => d !== null);
  if (!dir)
    throw new Error(
      `CIFAR-10 binaries not found in ${CANDIDATES.join(' or ')} (nor a cifar-10-batches-bin folder inside): ` +
        'put the binary version there or set AEGIS_CIFAR_DIR',
    );
  srv = await startServerProcess(
    flags({
      ...cohortOf(TABS),
      'cifar-dir': dir,
      model: 'tiny',
      'examples-per-client': PER_TAB,
      'test-examples': 1000,
      rounds: ROUNDS,
      'min-updates': TABS - 1,
      'round-deadline-ms': 240000,
      'round-pause-ms': 200,
      epochs: 3,
      'batch-size': 16,
      lr: 0.003,
    }),
  );
});

afterAll(async () => {
  await swarm?.close();
  await srv?.stop();
});

describe('browsers on real CIFAR-10', () => {
  it(`${TABS} chromium tabs train on ${PER_TAB} real images each, secure aggregation on: test accuracy +5 points in ${ROUNDS} rounds`, async () => {
    swarm = await startSwarm(srv.url, TABS, { backends: 'wasm' });
    const status = await waitForPhase(srv.url, 'done', 480_000, 2000);
    const states = await swarm.states();
    console.log(
      `e2e cifar accuracy: initial ${status.initial!.accuracy} -> ${status.history.map((h) => h.accuracy).join(' -> ')}`,
    );
    expect(status.data).toBe('cifar10');
    expect(status.dataDescription).toMatch(/^CIFAR-10 from .*1000 test examples/);
    for (const s of states) {
      // A tab whose shard failed to download or parse records the error and never trains.
      expect(s.errors).toEqual([]);
      expect(s.backend).toBe('wasm');
      expect(s.roundsTrained).toBeGreaterThanOrEqual(1);
      expect(s.sent.length).toBeGreaterThanOrEqual(1);
      expect(s.sent.every((x) => x.masked)).toBe(true);
    }
    expect(status.history).toHaveLength(ROUNDS);
    expect(status.history.every((h) => h.secagg)).toBe(true);
    const final = status.history.at(-1)!.accuracy;
    expect(final).toBeGreaterThanOrEqual(status.initial!.accuracy + 0.05);
    const m = await fetch(srv.url + '/metrics').then((r) => r.text());
    expect(metric(m, 'aegis_test_accuracy')).toBeCloseTo(final, 6);
    // Every evaluation (the initial model's and one per round) is timed on /metrics.
    expect(metric(m, 'aegis_eval_duration_seconds_count')).toBe(ROUNDS + 1);
  }, 600_000);
});
