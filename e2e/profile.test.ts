import { existsSync } from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { launchChromium } from './browser.ts';
import { metric } from './metrics.ts';
import {
  startServerProcess,
  waitFor,
  waitForPhase,
  type ServerProcess,
  flags,
  cohortOf,
  TINY_SERVER,
} from './server-process.ts';

/**
 * The privacy unit is the browser profile (a playwright context): its tabs share one session, one tab at a
 * time takes part, and a reload resumes the same session. Then the page floors end to end: a profile whose
 * page asks for a larger cohort than the round has sits the round out, says why on the page, and the
 * server counts the refusal while the others complete the round without it.
 */
let srv: ServerProcess;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync('dist/demo/index.html'))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
  srv = await startServerProcess(
    flags({
      ...TINY_SERVER,
      ...cohortOf(5),
      rounds: 1,
      'min-updates': 3,
      'round-deadline-ms': 240000,
      epochs: 1,
      'batch-size': 8,
    }),
  );
  browser = await launchChromium();
});

afterAll(async () => {
  if (process.env.DEBUG_E2E) console.log(srv?.output());
  await browser?.close();
  await srv?.stop();
});

interface Probe {
  client: { state: string; sessionId: string | null } | null;
  refusals: { round: number; reason: string; message: string }[];
  errors: string[];
}
const probe = (page: Page) =>
  page.evaluate(() => {
    const a = (window as unknown as { __aegis: Probe }).__aegis;
    return {
      state: a.client?.state ?? null,
      sessionId: a.client?.sessionId ?? null,
      refusals: a.refusals,
      errors: a.errors,
    };
  });
const status = (): Promise<ServerStatus> => fetch(srv.url + '/api/status').then((r) => r.json());
const sessions = async (): Promise<number | undefined> =>
  metric(await fetch(srv.url + '/metrics').then((r) => r.text()), 'aegis_sessions');

async function open(ctx: BrowserContext, query = ''): Promise<Page> {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[page] ${e.message}`));
  await page.goto(`${srv.url}/demo/?join=1&backends=wasm,cpu${query}`);
  return page;
}
const untilState = (page: Page, state: string, ms = 60_000) =>
  waitFor(async () => (await probe(page)).state === state, ms, `page state ${state}`, 200);

describe('one participant per browser profile', () => {
  it('tabs of one profile share one session and take part one at a time; a reload keeps the session', async () => {
    const profile = await browser.newContext();
    const a = await open(profile);
    await untilState(a, 'idle');
    const id = (await probe(a)).sessionId;
    expect(id).toMatch(/\S{16,}/);

    await a.reload();
    await untilState(a, 'idle');
    expect((await probe(a)).sessionId).toBe(id);
    expect(await sessions()).toBe(1); // resumed, not a new session

    const b = await open(profile);
    await untilState(b, 'waiting');
    expect(await b.textContent('#state')).toBe('waiting: another tab of this browser is already taking part');
    expect((await status()).clients.connected).toBe(1);

    await a.close(); // the slot frees: the waiting tab takes part, as the same person
    await untilState(b, 'idle');
    expect((await probe(b)).sessionId).toBe(id);
    expect(await sessions()).toBe(1);
    expect((await status()).clients.connected).toBe(1);

    // Another profile is another participant.
    const other = await browser.newContext();
    const c = await open(other);
    await untilState(c, 'idle');
    expect((await probe(c)).sessionId).not.toBe(id);
    expect((await status()).clients).toMatchObject({ connected: 2, ready: 2 });
  }, 180_000);

  it('a page whose floors the round is below sits it out, says why, and the server counts it', async () => {
    // With the two profiles above, five: the round starts with 5, below the strict page's floor of 6. (Five,
    // not four: the complete graph of four has t = 3, so one missing client would abort every attempt.)
    const d = await open(await browser.newContext());
    const e = await open(await browser.newContext());
    const strict = await open(await browser.newContext(), '&min-cohort=6');
    expect(await strict.textContent('#floors')).toMatch(/cohort ≥ 6/);
    await waitFor(
      async () => (await probe(strict)).refusals.length > 0,
      120_000,
      'the strict page refuses',
      300,
    );
    expect(await strict.textContent('#refusal')).toBe(
      'Sat out round 1 (attempt 1): the round has 5 clients; this page requires at least 6',
    );
    const done = await waitForPhase(srv.url, 'done', 120_000);
    expect(done.history[0]).toMatchObject({ round: 1, secagg: true, clients: 4 });
    const m = await fetch(srv.url + '/metrics').then((r) => r.text());
    expect(metric(m, 'aegis_client_refusals_total', { reason: 'below_floor' })).toBeGreaterThanOrEqual(1);
    expect((await probe(strict)).errors).toEqual([]);
    for (const p of [d, e]) expect((await probe(p)).errors).toEqual([]);
    // A malformed floor is an error on the page, and nothing joins.
    const bad = await open(await browser.newContext(), '&min-cohort=lots');
    await waitFor(async () => (await probe(bad)).errors.length > 0, 10_000, 'the bad floor error', 200);
    expect(await bad.textContent('#error')).toBe('not joining: data-min-cohort="lots" is not a whole number');
    expect((await probe(bad)).state).toBeNull();
  }, 300_000);
});
