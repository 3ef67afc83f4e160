import { existsSync, readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkTask } from '../shared/model/task.ts';
import { launchChromium } from './browser.ts';
import {
  cohortOf,
  flags,
  startServerProcess,
  waitFor,
  waitForPhase,
  type ServerProcess,
} from './server-process.ts';

/**
 * The example host page (demo/task-example.html) in headless chromium: it pins the blobs task and gives
 * join() its own examples. Against a server with that task (--task), three pages complete a secure round;
 * against a server with another task (the CIFAR-10 preset), the page refuses it (task_mismatch).
 */
interface Probe {
  state: string;
  task: { name: string; hash: string } | null;
  rounds: number[];
  accuracy: number | null;
  errors: { message: string; reason: string | null }[];
}
const TASK_FILE = 'demo/tasks/blobs.task.json';
const hash = checkTask(JSON.parse(readFileSync(TASK_FILE, 'utf8'))).hash;
let ours: ServerProcess;
let other: ServerProcess;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync('dist/demo/task-example.html'))
    throw new Error('dist/ is missing the task example: run "npm run build" first (npm test does)');
  [ours, other] = await Promise.all([
    startServerProcess(
      flags({
        task: TASK_FILE,
        'task-eval': 'demo/tasks/blobs.eval.json',
        ...cohortOf(3),
        rounds: 1,
        'min-updates': 3,
        'round-deadline-ms': 120000,
      }),
    ),
    startServerProcess(flags({ model: 'tiny', 'examples-per-client': 16, 'test-examples': 100 })),
  ]);
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([ours?.stop(), other?.stop()]);
});

async function openPage(url: string, seed: number): Promise<Page> {
  const ctx = await browser.newContext(); // its own profile: its own session and participation slot
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[task page ${seed}] ${e.message}`));
  await page.goto(`${url}/demo/task-example.html?seed=${seed}`);
  return page;
}
const probe = (p: Page): Promise<Probe> => p.evaluate(() => (window as unknown as { __task: Probe }).__task);

describe('the task example page', () => {
  it('three pages train the pinned task on their own examples: a secure round completes', async () => {
    const pages = await Promise.all([1, 2, 3].map((s) => openPage(ours.url, s)));
    const status = await waitForPhase(ours.url, 'done', 240_000, 1000);
    expect(status.history).toHaveLength(1);
    expect(status.history[0]).toMatchObject({ secagg: true, clients: 3 });
    await waitFor(
      async () => (await Promise.all(pages.map(probe))).every((p) => p.rounds.includes(1)),
      10_000,
      'round:end on every page',
    );
    for (const p of await Promise.all(pages.map(probe))) {
      expect(p.errors).toEqual([]);
      expect(p.task).toEqual({ name: 'blobs', hash });
      expect(p.accuracy).toBe(status.history[0].accuracy);
    }
    expect(await pages[0].textContent('#rounds')).toBe('1');
    await Promise.all(pages.map((p) => p.context().close()));
  }, 300_000);

  it('a server with another task is refused: task_mismatch, nothing trained', async () => {
    const page = await openPage(other.url, 7);
    await page.waitForFunction(
      () => (window as unknown as { __task: Probe }).__task.state === 'failed',
      null,
      {
        timeout: 60_000,
      },
    );
    const p = await probe(page);
    expect(p.errors.map((e) => e.reason)).toEqual(['task_mismatch']);
    expect(p.task).toBeNull();
    expect(await page.textContent('#error')).toMatch(/^task_mismatch: the server's task "tiny"/);
    const s = (await fetch(other.url + '/api/status').then((r) => r.json())) as {
      clients: { ready: number };
    };
    expect(s.clients.ready).toBe(0);
    await page.context().close();
  }, 120_000);
});
