import { existsSync, mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { completedText, phaseText, roundText } from '../demo/view.ts';
import { launchChromium } from './browser.ts';
import { cohortOf, flags, startServerProcess, waitFor, type ServerProcess } from './server-process.ts';

/**
 * The demo page tells the truth, live: three tabs (each its own browser profile; secure aggregation
 * needs a cohort of 3 or more) train a tiny model with secure aggregation for ROUNDS rounds, and at every point we look, what the page shows agrees with
 * GET /api/status (round, phase, reports, rounds completed), as the status the server pushes.
 */
const ROUNDS = 2;
let srv: ServerProcess;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  if (!existsSync('dist/demo/index.html'))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
  srv = await startServerProcess(
    flags({
      ...cohortOf(3),
      model: 'tiny',
      'examples-per-client': 32,
      'test-examples': 200,
      rounds: ROUNDS,
      'round-pause-ms': 1500,
      'round-deadline-ms': 120000,
      epochs: 1,
      'batch-size': 16,
    }),
  );
  browser = await launchChromium();
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await srv?.stop();
});

async function tab(query = '?join=1'): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1800 } });
  contexts.push(ctx);
  const page = await ctx.newPage();
  await page.goto(`${srv.url}/demo/${query}`);
  return page;
}

const status = (): Promise<ServerStatus> => fetch(srv.url + '/api/status').then((r) => r.json());

/** What the page shows of the global state. */
async function shown(page: Page) {
  return page.evaluate(() => {
    const g = document.getElementById('global')!;
    const text = (id: string): string => document.getElementById(id)!.textContent ?? '';
    return {
      phase: g.dataset.phase,
      round: Number(g.dataset.round),
      completed: Number(g.dataset.completed),
      reported: Number(g.dataset.reported),
      selected: Number(g.dataset.selected),
      phaseText: text('phase'),
      roundText: text('round'),
      completedText: text('roundsdone'),
      state: text('state'),
      data: text('datasource'),
    };
  });
}

/** Never "k of N" with k > N. */
function checkRoundText(t: string): void {
  const m = /(\d+) of (\d+)/.exec(t);
  if (m) expect(Number(m[1])).toBeLessThanOrEqual(Number(m[2]));
}

/**
 * The page agrees with /api/status: the server pushes each change within a few hundred ms, so the page
 * catches up with the status of the moment we read it (retried until it does, or fails after 5 s).
 */
async function agree(page: Page): Promise<ServerStatus> {
  let last = '';
  const end = Date.now() + 5000;
  for (;;) {
    const s = await status();
    const p = await shown(page);
    checkRoundText(p.roundText);
    checkRoundText(p.completedText);
    const want = {
      phase: s.phase,
      round: s.round,
      completed: s.roundsCompleted,
      reported: s.reported,
      selected: s.selected,
      phaseText: phaseText(s),
      roundText: roundText(s),
      completedText: completedText(s),
    };
    const got = {
      phase: p.phase,
      round: p.round,
      completed: p.completed,
      reported: p.reported,
      selected: p.selected,
      phaseText: p.phaseText,
      roundText: p.roundText,
      completedText: p.completedText,
    };
    if (JSON.stringify(want) === JSON.stringify(got)) {
      // This tab's line never says a bare "idle" while the server trains: it says why it is idle.
      if (s.phase === 'training') expect(p.state).not.toBe('idle');
      return s;
    }
    last = `page ${JSON.stringify(got)}\napi  ${JSON.stringify(want)}`;
    if (Date.now() > end) throw new Error(`the page did not catch up with /api/status in 5 s:\n${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the demo page tells the truth', () => {
  it(`three tabs through ${ROUNDS} secure rounds: what the page shows agrees with /api/status throughout`, async () => {
    const a = await tab();
    // One tab ready of the three a round needs: said so, and the round has not started.
    await waitFor(async () => (await status()).clients.ready === 1, 90_000, 'tab 1 ready');
    const first = await agree(a);
    expect(first.phase).toBe('waiting');
    const p0 = await shown(a);
    expect(p0.phaseText).toBe('waiting for 3 clients, 1 ready');
    expect(p0.roundText).toBe(`1 of ${ROUNDS} (not started)`);
    expect(p0.data).toMatch(/^synthetic/);

    const b = await tab();
    await tab();
    const phases = new Set<string>();
    const trainingReports = new Set<number>();
    let shot = false;
    for (;;) {
      const s = await agree(a);
      await agree(b);
      phases.add(s.phase);
      if (s.phase === 'training') trainingReports.add(s.reported);
      if (!shot && s.roundsCompleted >= 1 && s.phase !== 'evaluating') {
        mkdirSync('bench-results', { recursive: true });
        await a.screenshot({ path: 'bench-results/demo.png', fullPage: true });
        shot = true;
      }
      if (s.phase === 'done') break;
      await new Promise((r) => setTimeout(r, 150));
    }
    expect([...phases]).toEqual(expect.arrayContaining(['waiting', 'training', 'done']));
    expect(trainingReports.size).toBeGreaterThanOrEqual(1);

    const end = await agree(a);
    expect(end).toMatchObject({ phase: 'done', roundsCompleted: ROUNDS });
    const p = await shown(a);
    expect(p.roundText).toBe(`done after ${ROUNDS} of ${ROUNDS} rounds`);
    expect(p.completedText).toBe(`${ROUNDS} of ${ROUNDS}`);
    // /health counts as the page does: the last round done, not one past it.
    const health = await fetch(srv.url + '/health').then((r) => r.json());
    expect(health).toMatchObject({
      phase: 'done',
      round: ROUNDS,
      roundsCompleted: ROUNDS,
      targetRounds: ROUNDS,
    });

    // Pushed, not polled: the page drew more than the one status it had at load.
    const pushes = await a.evaluate(
      () => (window as unknown as { __aegis: { pushes: number } }).__aegis.pushes,
    );
    expect(pushes).toBeGreaterThan(3);
    // What left the browser: masked updates and the secure-aggregation messages, per round, in bytes.
    const left = await a.textContent('#leftbrowser');
    expect(left).toMatch(/^round \d+: [\d.]+ KiB — .*model update \(masked\)/);
    // Charts: dots from round 0; the confusion matrix of the final model.
    await a.waitForFunction((r) => document.querySelectorAll('#acc circle').length === r + 1, ROUNDS);
    expect(await a.textContent('#evalround')).toBe(`after round ${ROUNDS}`);
    expect(await a.locator('#confusion tr').count()).toBe(11);
  }, 300_000);
});
