import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchChromium } from './browser.ts';
import { MAIN_THREAD_CATEGORIES, parseTrace, tasksBetween } from './main-thread-trace.ts';

/** The host-page test's yardstick, checked on a page whose tasks are known: it must see a heavy task. */
let browser: Browser;

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

/**
 * A fixed amount of arithmetic on the main thread: 3e7 steps are ~200 ms of CPU on these machines. Bounded
 * by work, not by the clock, because the OS may take the thread off the cores midway and a clock-bounded
 * loop would then do less work (and rightly read less CPU).
 */
const busy = (steps: number): void => {
  let x = 0;
  for (let i = 0; i < steps; i++) x = (x * 31 + i) | 0;
  (globalThis as unknown as { __x: number }).__x = x;
};

describe('tasksBetween', () => {
  it('times the main-thread tasks between two marks in CPU: a busy task counts, a wait does not', async () => {
    const page = await browser.newPage();
    await page.setContent('<html><body>trace</body></html>');
    await browser.startTracing(page, { categories: MAIN_THREAD_CATEGORIES });
    await page.evaluate(
      (src) =>
        new Promise<void>((done) => {
          const work = new Function(`return (${src})`)() as (steps: number) => void;
          performance.mark('t-from');
          setTimeout(() => work(3e7), 10); // inside the span: heavy
          setTimeout(() => work(2e5), 200); // inside: light
          setTimeout(() => {
            performance.mark('t-to');
            setTimeout(() => (work(3e7), done()), 300); // after the span and its slack: not counted
          }, 400); // most of the span is idle waiting
        }),
      busy.toString(),
    );
    const events = parseTrace(await browser.stopTracing());
    const tasks = tasksBetween(events, 't-from', 't-to');
    const heavy = tasks.filter((t) => t.cpuMs >= 50);
    expect(heavy).toHaveLength(1); // the one after the span is not counted
    expect(heavy[0].at).toBeGreaterThan(5);
    expect(heavy[0].at).toBeLessThan(200);
    expect(heavy[0].wallMs).toBeGreaterThanOrEqual(heavy[0].cpuMs);
    expect(heavy[0].inside.some((s) => s.startsWith('FunctionCall'))).toBe(true);
    // The idle wait in the span is no task's CPU time: all but the heavy task together used little.
    const rest = tasks.filter((t) => t !== heavy[0]).reduce((s, t) => s + t.cpuMs, 0);
    expect(rest).toBeLessThan(50);
    expect(() => tasksBetween(events, 't-from', 'no-such-mark')).toThrow(/0 marks named no-such-mark/);
    await page.close();
  });
});
