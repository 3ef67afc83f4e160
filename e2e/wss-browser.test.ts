import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeLocalCerts, spkiSha256 } from '../server/certs.ts';
import { newTokenKey } from '../server/join-token.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { httpsRequest, mintOverHttps } from './https-client.ts';
import { flags, startServerProcess, waitFor, type ServerProcess } from './server-process.ts';
import { startSwarm, type Swarm } from './swarm-lib.ts';

/**
 * The demo over HTTPS/WSS with join tokens, as a deployment runs it: a certificate from the local CA,
 * chromium trusting exactly that certificate's key (an SPKI pin, not "ignore all errors"), one token per
 * tab minted by the operator route, 2 tabs, the tiny model, 2 rounds. The page must stay cross-origin
 * isolated under its COOP/COEP and train under its CSP.
 */
const ROUNDS = 2;
let srv: ServerProcess;
let impostor: ServerProcess;
let swarm: Swarm | null = null;
let ca: string;
let pin: string;
let operatorKey: string;

beforeAll(async () => {
  if (!existsSync('dist/demo/index.html'))
    throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
  const dir = mkdtempSync(join(tmpdir(), 'aegis-wss-'));
  const certs = await makeLocalCerts({ days: 1 });
  writeFileSync(join(dir, 'server.pem'), certs.certPem);
  writeFileSync(join(dir, 'server-key.pem'), certs.keyPem);
  writeFileSync(join(dir, 'token.key'), newTokenKey());
  operatorKey = newTokenKey();
  writeFileSync(join(dir, 'operator.key'), operatorKey);
  ca = certs.caPem;
  pin = spkiSha256(certs.certPem);
  const tls = ['--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server-key.pem')];
  srv = await startServerProcess([
    ...flags({
      model: 'tiny',
      'min-clients': 2,
      'clients-per-round': 2,
      'min-updates': 2,
      secagg: 'off',
      'examples-per-client': 32,
      'test-examples': 100,
      rounds: ROUNDS,
      'round-pause-ms': 200,
      'batch-size': 16,
      'join-token-key': join(dir, 'token.key'),
      'operator-key': join(dir, 'operator.key'),
    }),
    ...tls,
  ]);
  // Another server with a certificate of its own (another CA, another key): the pin must not cover it.
  const other = await makeLocalCerts({ days: 1 });
  writeFileSync(join(dir, 'other.pem'), other.certPem);
  writeFileSync(join(dir, 'other-key.pem'), other.keyPem);
  impostor = await startServerProcess([
    ...flags({ model: 'tiny', 'test-examples': 10 }),
    ...['--tls-cert', join(dir, 'other.pem'), '--tls-key', join(dir, 'other-key.pem')],
  ]);
});

afterAll(async () => {
  await swarm?.close();
  await srv?.stop();
  await impostor?.stop();
});

const mint = (origin: string): Promise<string> => mintOverHttps(srv.url, ca, operatorKey, origin);

describe('browser swarm over HTTPS/WSS with join tokens', () => {
  it(`2 chromium tabs with a token each train ${ROUNDS} rounds; a reused token is refused with its reason`, async () => {
    const origin = srv.url; // the demo page is served by the server itself
    const violations: string[] = [];
    swarm = await startSwarm(srv.url, 2, {
      backends: 'wasm,cpu',
      floors: { secagg: 'optional' },
      tokens: [await mint(origin), await mint(origin)],
      chromiumArgs: [`--ignore-certificate-errors-spki-list=${pin}`],
      beforeLoad: (p) =>
        p.on('console', (m) => {
          if (/Content Security Policy|Cross-Origin-Embedder-Policy/i.test(m.text()))
            violations.push(m.text());
        }),
    });

    const status = await waitFor(
      async () => {
        const r = await httpsRequest(`${srv.url}/api/status`, ca);
        if (!('status' in r)) return null;
        const s = JSON.parse(r.body) as ServerStatus;
        return s.phase === 'done' ? s : null;
      },
      240_000,
      'phase "done"',
      1000,
    );
    expect(status.history).toHaveLength(ROUNDS);
    const states = await swarm.states();
    for (const s of states) {
      expect(s.errors).toEqual([]);
      expect(s.where).toBe('worker');
      expect(s.backend).toBe('wasm'); // compiled under the page's CSP ('wasm-unsafe-eval')
      expect(s.roundsTrained).toBeGreaterThanOrEqual(1);
    }
    const page = swarm.pages[0];
    expect(await page.evaluate(() => location.protocol)).toBe('https:');
    // COOP same-origin + COEP require-corp: isolated, so threaded wasm may use SharedArrayBuffer.
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(violations).toEqual([]);

    // A third tab with a token already spent: refused at the handshake, the reason on the page.
    const reused = await swarm.browser.newContext().then((c) => c.newPage());
    const spent = new URL(page.url()).searchParams.get('token')!;
    await reused.goto(
      `${srv.url}/demo/?join=1&backends=wasm,cpu&secagg=optional&token=${encodeURIComponent(spent)}`,
    );
    await reused.waitForFunction(
      () => /bad_token/.test(document.getElementById('error')?.textContent ?? ''),
      null,
      {
        timeout: 30_000,
      },
    );
    expect(await reused.textContent('#error')).toMatch(/already used/);

    // The pin trusts our certificate's key only: the impostor's certificate is refused.
    const p = await swarm.browser.newContext().then((c) => c.newPage());
    await expect(p.goto(`${impostor.url}/health`)).rejects.toThrow(/ERR_CERT/);
  }, 420_000);
});
