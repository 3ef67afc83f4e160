import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './browser.ts';
import { MAIN_THREAD_CATEGORIES, parseTrace, tasksBetween } from './main-thread-trace.ts';
import { cohortOf, flags, startServerProcess, waitForPhase, type ServerProcess } from './server-process.ts';

/**
 * The embed as a guest on someone else's page: a host page (another origin) runs an animation and
 * records its frame gaps, embeds our script tag with consent required, and joins two secure rounds of the
 * `small` model with two more visitors of the same page. Before consent only the loader may be fetched; during
 * each round (train, encode, key agreement, masking, reveal) no task on the host's main thread uses 50 ms of
 * CPU, because all of that runs in workers. Measured with Chrome's thread clock from a trace: on this 2-core
 * machine the OS takes the main thread off the cores for tens of ms at a time, so wall-clock long tasks and
 * frame gaps (logged) say as much about the machine as about our code. Then the released model loads in a
 * page with tf.loadLayersModel.
 */
const HOST = 'http://host.test';
const ROUNDS = 2;
/** The Long Tasks API's threshold, applied to each task's CPU time. */
const MAX_TASK_CPU_MS = 50;
let srv: ServerProcess;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync('dist/aegis-embed.js')) throw new Error('dist/ is missing: run "npm run build" first');
  srv = await startServerProcess(
    flags({
      ...cohortOf(3),
      model: 'small',
      rounds: ROUNDS,
      'examples-per-client': 64,
      'test-examples': 200,
      'min-updates': 3,
      'round-deadline-ms': 240000,
      'round-pause-ms': 500,
      epochs: 1,
      'batch-size': 16,
    }),
  );
  // The host page is public and our test server is on loopback: Chromium's local-network protection would
  // block the script tag, which a real deployment (a public server) never meets. A real host page is also
  // https, a secure context, as the masks' WebCrypto needs: the flag makes the test's http host one.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      ...CHROMIUM_ARGS,
      `--unsafely-treat-insecure-origin-as-secure=${HOST}`,
      '--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await srv?.stop();
});

/** The host page: a moving box on requestAnimationFrame, every frame's gap recorded, and our script tag. */
const hostPage = (server: string): string => `<!doctype html><html><body>
<div id="box" style="width:40px;height:40px;background:teal;position:absolute"></div>
<script>
  window.__frames = [];
  let last = performance.now();
  function frame() {
    const now = performance.now();
    window.__frames.push([now, now - last]);
    last = now;
    document.getElementById('box').style.transform = 'translateX(' + ((now / 4) % 400) + 'px)';
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
</script>
<script type="module" src="${server}/aegis-embed.js" data-consent="required" data-backends="wasm"
        data-min-cohort="3" data-cpu-share="0.8"></script>
</body></html>`;

interface RoundWindow {
  round: number;
  from: number;
  to: number;
}

describe('the embed as a guest on a host page', () => {
  let page: Page;
  const fetched: string[] = [];

  it('before consent only the loader is fetched; no host-page task uses 50 ms of CPU in a secure round', async () => {
    const ctx = await browser.newContext();
    page = await ctx.newPage();
    page.on('pageerror', (e) => console.error(`[host page] ${e.message}`));
    page.on('request', (r) => {
      if (r.url().startsWith(srv.url)) fetched.push(new URL(r.url()).pathname);
    });
    await page.route(`${HOST}/`, (route) =>
      route.fulfill({ contentType: 'text/html', body: hostPage(srv.url) }),
    );
    await page.goto(`${HOST}/`);
    await browser.startTracing(page, { categories: MAIN_THREAD_CATEGORIES });
    await page.waitForFunction(() => 'aegisfl' in window);
    await page.waitForTimeout(1500); // anything the loader would fetch early has been asked for by now
    const beforeConsent = [...fetched];
    const loaderFiles = beforeConsent.filter((p) => p.endsWith('.js'));
    expect(beforeConsent.every((p) => p === '/aegis-embed.js' || /^\/assets\/preload-helper-/.test(p))).toBe(
      true,
    );
    expect(beforeConsent).toContain('/aegis-embed.js');

    // The visitor agrees: the page joins, and marks when each round's work starts and ends (in the trace).
    await page.evaluate(async () => {
      const w = window as unknown as {
        aegisfl: { join(): Promise<import('../client/client.ts').AegisClient> };
        __rounds: { round: number; from: number; to: number }[];
        __errors: string[];
        __where: string[];
      };
      w.__rounds = [];
      w.__errors = [];
      w.__where = [];
      const c = await w.aegisfl.join();
      let from = 0;
      c.on('state', (s) => {
        if (s === 'training' && !from) {
          from = performance.now();
          performance.mark(`aegis-${w.__rounds.length + 1}-from`);
        }
      });
      c.on('backend', (b) => w.__where.push(`${b.backend}@${b.where}`));
      c.on('secagg', (e) => {
        if (e.step === 'reveal') {
          performance.mark(`aegis-${w.__rounds.length + 1}-to`);
          w.__rounds.push({ round: e.round, from, to: performance.now() });
          from = 0;
        }
      });
      c.on('error', (e) => w.__errors.push(e.message));
    });
    // Two more visitors (their own browser contexts) make the smallest cohort secure aggregation runs with.
    for (let i = 0; i < 2; i++) {
      const peer = await (await browser.newContext()).newPage();
      await peer.route(`${HOST}/`, (route) =>
        route.fulfill({ contentType: 'text/html', body: hostPage(srv.url) }),
      );
      await peer.goto(`${HOST}/`);
      await peer.waitForFunction(() => 'aegisfl' in window);
      await peer.evaluate(() =>
        (window as unknown as { aegisfl: { join(): Promise<unknown> } }).aegisfl.join(),
      );
    }
    const status = await waitForPhase(srv.url, 'done', 480_000, 1000);
    expect(status.history).toHaveLength(ROUNDS);
    const trace = parseTrace(await browser.stopTracing());

    const { rounds, frames, errors, where } = await page.evaluate(() => {
      const w = window as unknown as {
        __rounds: RoundWindow[];
        __frames: [number, number][];
        __errors: string[];
        __where: string[];
      };
      return { rounds: w.__rounds, frames: w.__frames, errors: w.__errors, where: w.__where };
    });
    expect(errors).toEqual([]);
    expect(where).toEqual(['wasm@worker']);
    expect(rounds.map((r) => r.round)).toEqual([1, 2]);
    for (const [i, r] of rounds.entries()) {
      const gaps = frames.filter(([t]) => t > r.from && t <= r.to + 50).map(([, g]) => g);
      const sorted = [...gaps].sort((a, b) => a - b);
      const tasks = tasksBetween(trace, `aegis-${i + 1}-from`, `aegis-${i + 1}-to`);
      const top = (key: 'cpuMs' | 'wallMs') => [...tasks].sort((a, b) => b[key] - a[key])[0];
      const cpu = top('cpuMs');
      const wall = top('wallMs');
      console.log(
        `e2e guest: round ${r.round}: ${((r.to - r.from) / 1000).toFixed(1)} s, ${gaps.length} frames, ` +
          `median gap ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} ms, longest ${sorted.at(-1)!.toFixed(1)} ms; ` +
          `${tasks.length} main-thread tasks, most CPU ${cpu.cpuMs.toFixed(1)} ms (${cpu.wallMs.toFixed(1)} ms wall), ` +
          `longest wall ${wall.wallMs.toFixed(1)} ms (${wall.cpuMs.toFixed(1)} ms CPU), ` +
          `${tasks.filter((t) => t.wallMs >= MAX_TASK_CPU_MS).length} of 50 ms wall or more`,
      );
      expect(gaps.length).toBeGreaterThan(10);
      expect(tasks.length).toBeGreaterThan(10);
      // Nothing of ours runs 50 ms on the host's main thread. (Our heaviest task there measured 10-20 ms.)
      const heavy = tasks.filter((t) => t.cpuMs >= MAX_TASK_CPU_MS);
      expect(
        heavy.map((t) => `${t.cpuMs.toFixed(1)} ms CPU at +${t.at.toFixed(0)} ms: ${t.inside.join(', ')}`),
      ).toEqual([]);
      // The animation kept running: half its frames came within 50 ms even on 2 shared cores.
      expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(MAX_TASK_CPU_MS);
    }

    // Sizes: the loader (what every visitor of the host page downloads) and everything a round fetched.
    const gz = (files: string[]): number =>
      files.reduce((s, f) => s + gzipSync(readFileSync(`dist${f}`)).length, 0);
    const all = [...new Set(fetched.filter((p) => p.endsWith('.js')))];
    const workers = all.filter((p) => /worker/.test(p));
    console.log(
      `e2e guest: loader ${gz(loaderFiles)} B gzip (${loaderFiles.join(', ')}); full bundle ${gz(all)} B gzip in ${all.length} files, of which workers ${gz(workers)} B gzip (${workers.map((w) => w.replace(/^\/assets\//, '')).join(', ')})`,
    );
  }, 560_000);

  it('the released model loads in a browser with tf.loadLayersModel and predicts', async () => {
    const p = await browser.newPage();
    await p.goto(`${srv.url}/e2e/bench/model.html`);
    await p.waitForFunction(() => '__loadModel' in window);
    const got = await p.evaluate(
      (url) =>
        (
          window as unknown as {
            __loadModel(u: string): Promise<{ weights: number[]; prediction: number[] }>;
          }
        ).__loadModel(url),
      `${srv.url}/api/model/model.json`,
    );
    const raw = new Float32Array(await (await fetch(`${srv.url}/api/model/weights.bin`)).arrayBuffer());
    expect(got.weights).toEqual(Array.from(raw));
    expect(got.prediction).toHaveLength(10);
    expect(got.prediction.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
  }, 120_000);
});
