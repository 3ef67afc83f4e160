import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric } from './metrics.ts';
import { startServerProcess, waitForPhase, type ServerProcess, flags, cohortOf } from './server-process.ts';
import { startSwarm, type Swarm } from './swarm-lib.ts';

/**
 * The product as visitors run it: the built demo page in 4 headless chromium tabs, each training in a Web
 * Worker on the best tfjs backend it has, for 3 rounds on the synthetic data.
 */
const ROUNDS = 4; // 4 rounds keep the +5-point check clear of run-to-run noise (3 rounds once gave +7.0)
let srv: ServerProcess;
let swarm: Swarm | null = null;

beforeAll(async () => {
  if (!existsSync('dist/demo/index.html'))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
  srv = await startServerProcess(
    flags({
      ...cohortOf(4),
      model: 'tiny',
      'examples-per-client': 64,
      'test-examples': 500,
      rounds: ROUNDS,
      'min-updates': 3,
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

describe('browser swarm', () => {
  it(`4 chromium clients train ${ROUNDS} rounds: accuracy improves, /metrics counts the rounds`, async () => {
    // An explicit list: the default order would pass over this machine's software WebGPU for wasm.
    swarm = await startSwarm(srv.url, 4, { backends: 'webgpu,webgl,wasm,cpu' });
    const status = await waitForPhase(srv.url, 'done', 540_000, 2000);

    const states = await swarm.states();
    const adapter = await swarm.pages[0].evaluate(async () => !!(await navigator.gpu?.requestAdapter()));
    console.log(`e2e browsers: backends=${states.map((s) => s.backend).join(',')} webgpu-adapter=${adapter}`);
    console.log(
      `e2e accuracy: initial ${status.initial!.accuracy} -> ${status.history.map((h) => h.accuracy).join(' -> ')}`,
    );
    for (const s of states) {
      expect(s.errors).toEqual([]);
      expect(s.where).toBe('worker');
      // The best backend the browser offers: WebGPU when it exposes an adapter (SwiftShader here).
      expect(s.backend).toBe(adapter ? 'webgpu' : 'webgl');
      expect(s.acks.every((a) => a.ok)).toBe(true);
      // Secure aggregation is on by default: every update left the tab masked.
      expect(s.sent.length).toBeGreaterThanOrEqual(1);
      expect(s.sent.every((x) => x.masked)).toBe(true);
    }
    expect(status.history.every((h) => h.secagg)).toBe(true);
    expect(states.reduce((n, s) => n + s.roundsTrained, 0)).toBeGreaterThanOrEqual(ROUNDS * 3);
    expect(status.history).toHaveLength(ROUNDS);
    const final = status.history.at(-1)!.accuracy;
    expect(final).toBeGreaterThan(status.initial!.accuracy + 0.05);
    expect(status.history.at(-1)!.loss).toBeLessThan(status.initial!.loss);

    const m = await fetch(srv.url + '/metrics').then((r) => r.text());
    expect(metric(m, 'aegis_rounds_completed_total')).toBe(ROUNDS);
    expect(metric(m, 'aegis_clients_connected')).toBe(4);
    expect(metric(m, 'aegis_test_accuracy')).toBeCloseTo(final, 6);
    expect(metric(m, 'aegis_round_duration_seconds_count')).toBe(ROUNDS);
    expect(metric(m, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(ROUNDS);
    // The demo page shows the charts and the backend to a person.
    const page = swarm.pages[0];
    await page.waitForFunction((r) => document.querySelectorAll('#acc circle').length === r + 1, ROUNDS, {
      timeout: 10_000,
    });
    expect(await page.textContent('#backend')).toBe(states[0].backend);
    // Below 50 clients the complete graph with an honest-majority threshold: t = floor(4 / 2) + 1 = 3.
    expect(await page.textContent('#secagg')).toMatch(/^on \(3 neighbours, threshold 3\)/);
  }, 600_000);

  it('falls back past backends it cannot use or should not, says why, and trains on wasm with our gradient kernels', async () => {
    // Stock tfjs-wasm could not train a CNN, ours can (the probe runs a real training step before a backend
    // is accepted). 'tensorflow' (tfjs-node) does not exist in a browser. With the default order, this
    // machine's WebGPU and WebGL (SwiftShader, on the CPU) are passed over for wasm, which is 10-30x faster.
    // Each page its own context (browser profile): tabs of one profile take part one at a time.
    const choose = async (query: string): Promise<{ backend: string | null; skipped: string | null }> => {
      const ctx = await swarm!.browser.newContext();
      const page = await ctx.newPage();
      await page.goto(`${srv.url}/demo/?join=1${query}`);
      await page.waitForFunction(
        () => (window as unknown as { __aegis: { backend: string | null } }).__aegis.backend !== null,
        null,
        { timeout: 60_000 },
      );
      const seen = {
        backend: await page.textContent('#backend'),
        skipped: await page.textContent('#skipped'),
      };
      await ctx.close();
      return seen;
    };
    const explicit = await choose('&backends=tensorflow,wasm,cpu');
    expect(explicit.backend).toBe('wasm');
    expect(explicit.skipped).toMatch(/tensorflow \(not registered in this build\)/);
    const auto = await choose('');
    expect(auto.backend).toBe('wasm');
    expect(auto.skipped).toMatch(/webgpu \(software GPU \(.*swiftshader.*\): wasm is faster on this CPU\)/i);
    expect(auto.skipped).toMatch(/webgl \(software GPU \(.*SwiftShader.*\): wasm is faster on this CPU\)/);
  }, 120_000);
});
