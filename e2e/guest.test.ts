import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './browser.ts';
import { cohortOf, flags, startServerProcess, waitForPhase, type ServerProcess } from './server-process.ts';

/**
 * The embed as a guest on someone else's page: a host page (another origin) runs an animation and
 * records its frame gaps, embeds our script tag with consent required, and joins two secure rounds of the
 * `small` model with two more visitors of the same page. Before consent only the loader may be fetched; during each round
 * (train, encode, key agreement, masking, reveal) the host's longest frame gap stays under 50 ms, because
 * all of it runs in workers. Then the released model loads in a page with tf.loadLayersModel.
 */
const HOST = 'http://host.test';
const ROUNDS = 2;
const MAX_GAP_MS = 50;
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
  // Main-thread tasks of 50 ms or more (the Long Tasks API): what our code would cost the host page.
  window.__long = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__long.push([e.startTime, e.duration]);
  }).observe({ type: 'longtask', buffered: true });
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

  it('before consent only the loader is fetched; each secure round keeps the host page under 50 ms per frame', async () => {
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
    await page.waitForFunction(() => 'aegisfl' in window);
    await page.waitForTimeout(1500); // anything the loader would fetch early has been asked for by now
    const beforeConsent = [...fetched];
    const loaderFiles = beforeConsent.filter((p) => p.endsWith('.js'));
    expect(beforeConsent.every((p) => p === '/aegis-embed.js' || /^\/assets\/preload-helper-/.test(p))).toBe(
      true,
    );
    expect(beforeConsent).toContain('/aegis-embed.js');

    // The visitor agrees: the page joins, and records when each round's work starts and ends.
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
        if (s === 'training' && !from) from = performance.now();
      });
      c.on('backend', (b) => w.__where.push(`${b.backend}@${b.where}`));
      c.on('secagg', (e) => {
        if (e.step === 'reveal') {
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

    const { rounds, frames, long, errors, where } = await page.evaluate(() => {
      const w = window as unknown as {
        __rounds: RoundWindow[];
        __frames: [number, number][];
        __long: [number, number][];
        __errors: string[];
        __where: string[];
      };
      return { rounds: w.__rounds, frames: w.__frames, long: w.__long, errors: w.__errors, where: w.__where };
    });
    expect(errors).toEqual([]);
    expect(where).toEqual(['wasm@worker']);
    expect(rounds.map((r) => r.round)).toEqual([1, 2]);
    for (const r of rounds) {
      const gaps = frames.filter(([t]) => t > r.from && t <= r.to + 50).map(([, g]) => g);
      const sorted = [...gaps].sort((a, b) => a - b);
      const max = sorted.at(-1)!;
      console.log(
        `e2e guest: round ${r.round}: ${((r.to - r.from) / 1000).toFixed(1)} s, ${gaps.length} frames, longest gap ${max.toFixed(1)} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)].toFixed(1)} ms`,
      );
      const longTasks = long
        .filter(([t, d]) => t + d > r.from && t <= r.to + 50)
        .map(([, d]) => Math.round(d));
      console.log(
        `e2e guest: round ${r.round}: main-thread tasks of 50 ms or more: [${longTasks.join(', ')}]`,
      );
      expect(gaps.length).toBeGreaterThan(10);
      // Nothing of ours runs 50 ms on the host's main thread. The frame gap itself also holds the OS's
      // scheduling of this 2-core machine, shared by three visitors' six workers (29-49 ms typical, a
      // single frame of 54-84 ms seen in one run of three, before and after the same code): it is bounded
      // generously, and the long tasks are what the claim rests on.
      expect(longTasks).toEqual([]);
      expect(max).toBeLessThan(2 * MAX_GAP_MS);
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
