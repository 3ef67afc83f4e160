import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './browser.ts';

export interface SwarmPageState {
  backend: string | null;
  where: string | null;
  roundsTrained: number;
  acks: { round: number; ok: boolean; reason?: string }[];
  sent: { round: number; masked: boolean; encodeMs: number; maskMs: number; bytes: number }[];
  errors: string[];
  state: string | null;
}

export interface Swarm {
  browser: Browser;
  pages: Page[];
  states(): Promise<SwarmPageState[]>;
  close(): Promise<void>;
}

/**
 * Opens N demo pages, each its own browser context (own profile: own storage, own session id, own
 * participation slot; tabs of one context would take part one at a time), joined automatically.
 * Every page is a real participant: Web Worker, tfjs backend selection, socket.io, binary updates.
 */
export async function startSwarm(
  /** The server, or several (page i opens the i-th mod their number: e.g. the gateways of a cluster). */
  serverUrl: string | string[],
  n: number,
  opts: {
    backends?: string;
    floors?: Record<string, string>;
    /** One join token per page (the demo reads ?token=), for servers with --join-token-key. */
    tokens?: string[];
    /** Extra chromium flags (e.g. trusting a local certificate). */
    chromiumArgs?: string[];
    /** Called with each page before it loads (to listen from the first message on). */
    beforeLoad?: (page: Page) => void;
  } = {},
): Promise<Swarm> {
  if (opts.tokens && opts.tokens.length !== n) throw new Error(`${n} pages need ${n} tokens`);
  const browser = await launchChromium(opts.chromiumArgs);
  const pages: Page[] = [];
  const q = new URLSearchParams({ join: '1', source: 'swarm' });
  if (opts.backends) q.set('backends', opts.backends);
  // The page's floors, as the demo reads them from its URL (e.g. { secagg: 'optional' } for --secagg off).
  for (const [k, v] of Object.entries(opts.floors ?? {})) q.set(k, v);
  for (let i = 0; i < n; i++) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error(`[page ${i}] ${e.message}`));
    if (opts.tokens) q.set('token', opts.tokens[i]);
    opts.beforeLoad?.(page);
    const urls = typeof serverUrl === 'string' ? [serverUrl] : serverUrl;
    await page.goto(`${urls[i % urls.length]}/demo/?${q}`);
    pages.push(page);
  }
  return {
    browser,
    pages,
    states: () =>
      Promise.all(
        pages.map((p) =>
          p.evaluate(() => {
            const a = (
              window as unknown as { __aegis: SwarmPageState & { client: { state: string } | null } }
            ).__aegis;
            return {
              backend: a.backend,
              where: a.where,
              roundsTrained: a.roundsTrained,
              acks: a.acks,
              sent: a.sent,
              errors: a.errors,
              state: a.client?.state ?? null,
            };
          }),
        ),
      ),
    close: () => browser.close(),
  };
}
