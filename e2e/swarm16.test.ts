import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric } from './metrics.ts';
import { cohortOf, flags, startServerProcess, waitForPhase, type ServerProcess } from './server-process.ts';
import { startSwarm, type Swarm } from './swarm-lib.ts';

/**
 * Sixteen visitors at once: 16 headless chromium contexts (own storage, own session) on the built demo
 * page with the default backend order, one secure round of 16 per round, 3 rounds. On this CPU-only
 * machine the default order passes over SwiftShader's WebGPU/WebGL for wasm; on a visitor's GPU it would
 * not. A larger run (docs/benchmarks.md): AEGISFL_TABS=48 npx vitest run e2e/swarm16.test.ts.
 */
const TABS = Number(process.env.AEGISFL_TABS ?? 16);
if (!Number.isInteger(TABS) || TABS < 3 || TABS > 64)
  throw new Error('AEGISFL_TABS must be an integer in 3..64');
const QUORUM = Math.ceil(TABS * 0.75);
const ROUNDS = 3;
let srv: ServerProcess;
let swarm: Swarm | null = null;

beforeAll(async () => {
  if (!existsSync('dist/demo/index.html'))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
  srv = await startServerProcess(
    flags({
      ...cohortOf(TABS),
      model: 'tiny',
      'examples-per-client': 48,
      'test-examples': 300,
      rounds: ROUNDS,
      'min-updates': QUORUM,
      'round-deadline-ms': 300000,
      'round-pause-ms': 200,
      epochs: 1,
      'batch-size': 16,
      // 16 browsers behind one loopback address.
      'address-burst': 64,
    }),
  );
});

afterAll(async () => {
  await swarm?.close();
  await srv?.stop();
});

describe(`${TABS} browser tabs`, () => {
  it(`${TABS} chromium clients (default backends) complete ${ROUNDS} secure rounds together`, async () => {
    swarm = await startSwarm(srv.url, TABS);
    const status = await waitForPhase(srv.url, 'done', 600_000, 2000);
    const states = await swarm.states();
    console.log(
      `e2e ${TABS} tabs: backends=${states.map((s) => s.backend).join(',')} rounds=${status.history
        .map((h) => `${h.clients} clients ${Math.round(h.durationMs / 1000)} s`)
        .join(' | ')}`,
    );
    for (const s of states) {
      expect(s.errors).toEqual([]);
      expect(s.where).toBe('worker');
      expect(s.sent.every((x) => x.masked)).toBe(true);
    }
    expect(status.history).toHaveLength(ROUNDS);
    expect(status.history.every((h) => h.secagg)).toBe(true);
    // A straggler may miss a round's deadline; three quarters of the tabs are in every round.
    for (const h of status.history) expect(h.clients).toBeGreaterThanOrEqual(QUORUM);
    expect(states.reduce((n, s) => n + s.roundsTrained, 0)).toBeGreaterThanOrEqual(ROUNDS * QUORUM);
    const m = await fetch(srv.url + '/metrics').then((r) => r.text());
    expect(metric(m, 'aegis_clients_connected')).toBe(TABS);
    expect(metric(m, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(ROUNDS);
  }, 660_000);
});
