import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchChromium } from './browser.ts';
import { serveStatic } from './static-server.ts';

/**
 * The client's trainer as two Web Workers in a real browser (spawnTrainer(2): a MessageChannel between
 * them, each half of every batch). The pair compares both workers' updates every round and fails the
 * round if they differ by a bit, so rounds that succeed with two threads training are the check.
 */
let browser: Browser;
let site: Awaited<ReturnType<typeof serveStatic>>;

beforeAll(async () => {
  if (!existsSync('dist/e2e/bench/train.html'))
    throw new Error('dist/ is missing: run "npm run build" first');
  site = await serveStatic('dist', {});
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await site?.close();
});

describe('data-parallel training in the browser', () => {
  it('two workers pair on wasm and train rounds whose updates agree bit for bit', async () => {
    const page = await browser.newPage();
    const q = new URLSearchParams({
      backend: 'wasm',
      model: 'tiny',
      examples: '40',
      reps: '1',
      workers: '1',
    });
    await page.goto(`${site.url}/e2e/bench/train.html?${q}`);
    await page.waitForFunction(
      () => (window as unknown as { __bench?: unknown }).__bench !== undefined,
      null,
      {
        timeout: 240_000,
        polling: 500,
      },
    );
    const r = (await page.evaluate(() => (window as unknown as { __bench: unknown }).__bench)) as {
      error?: string;
      pairThreads?: number;
      pairedSteps?: number;
      oneWorker?: number[];
      twoWorkers?: number[];
    };
    expect(r.error).toBeUndefined();
    expect(r.pairThreads).toBe(2);
    expect(r.pairedSteps).toBe(2); // 40 examples in batches of 32: two steps, each split over the workers
    // A warm-up round and one measured round each: all trained (a failed round rejects and sets error).
    expect(r.twoWorkers).toHaveLength(1);
    expect(r.twoWorkers![0]).toBeGreaterThan(0);
    expect(r.oneWorker![0]).toBeGreaterThan(0);
  }, 300_000);
});
