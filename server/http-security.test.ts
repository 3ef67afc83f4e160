import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { createApp, type AppDeps } from './app.ts';
import { DEFAULTS } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { syntheticSource } from './datasets.ts';
import { DATA_CSP, PAGE_CSP } from './http-security.ts';
import { JoinTokenVerifier, mintJoinToken } from './join-token.ts';
import { createMetrics } from './metrics.ts';
import { metricValue } from './test-fixtures.ts';

const SITE = 'https://news.example';
const TOKEN_KEY = Buffer.alloc(32, 3);
const OPERATOR_KEY = Buffer.alloc(32, 9);
let base: Omit<AppDeps, 'allowedOrigins' | 'tokenRoute'>;

beforeAll(async () => {
  // A built bundle's shape: the demo page, a script chunk, the embed entry.
  const dist = mkdtempSync(join(tmpdir(), 'aegis-dist-'));
  mkdirSync(join(dist, 'demo'));
  mkdirSync(join(dist, 'assets'));
  writeFileSync(join(dist, 'demo', 'index.html'), '<!doctype html><title>demo</title>');
  writeFileSync(join(dist, 'assets', 'main-abc.js'), 'export {};');
  writeFileSync(join(dist, 'aegis-embed.js'), 'export {};');
  const data = syntheticSource(1, 8, 10);
  const metrics = createMetrics();
  const coordinator = new Coordinator({
    config: { ...DEFAULTS, model: MODELS.tiny },
    metrics,
    evaluate: async () => ({ accuracy: 0, loss: 0, examples: 0, ms: 0 }),
    evalBackend: 'none',
    initialWeights: new Float32Array(numParams(MODELS.tiny)),
    dataFor: (i) => data.specFor(i),
  });
  await coordinator.init();
  base = { coordinator, metrics, data, distDir: dist, startedAt: Date.now() };
});

const headers = (r: Response): Record<string, string | null> =>
  Object.fromEntries(
    [
      'content-security-policy',
      'cross-origin-opener-policy',
      'cross-origin-embedder-policy',
      'cross-origin-resource-policy',
      'access-control-allow-origin',
      'x-content-type-options',
      'referrer-policy',
      'x-frame-options',
    ].map((h) => [h, r.headers.get(h)]),
  );

describe('security headers', () => {
  it('the demo page: strict CSP with wasm compilation, cross-origin isolated, not frameable, no CORS', async () => {
    const app = createApp(base);
    const r = await app.request('/demo/index.html', { headers: { origin: 'https://evil.example' } });
    expect(r.status).toBe(200);
    expect(headers(r)).toEqual({
      'content-security-policy': PAGE_CSP,
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
      'access-control-allow-origin': null,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
    });
    expect(PAGE_CSP).toContain("script-src 'self' 'wasm-unsafe-eval';");
    expect(PAGE_CSP).not.toMatch(/'unsafe-eval'|'unsafe-inline'/);
    expect(PAGE_CSP).toContain("frame-ancestors 'none'");
  });

  it('scripts carry COEP and the page CSP (a worker takes both from its script), are CORP cross-origin and CORS-readable', async () => {
    const app = createApp(base);
    for (const path of ['/assets/main-abc.js', '/aegis-embed.js']) {
      const r = await app.request(path);
      expect(r.status).toBe(200);
      expect(headers(r)).toMatchObject({
        'content-security-policy': PAGE_CSP,
        'cross-origin-embedder-policy': 'require-corp',
        'cross-origin-opener-policy': null,
        'cross-origin-resource-policy': 'cross-origin',
        'access-control-allow-origin': '*',
        'x-content-type-options': 'nosniff',
      });
    }
  });

  it('data routes load nothing and are not CORS-readable unless the embed needs them', async () => {
    const app = createApp(base);
    for (const path of ['/metrics', '/health', '/nope']) {
      const r = await app.request(path, { headers: { origin: SITE } });
      expect(headers(r)).toMatchObject({
        'content-security-policy': DATA_CSP,
        'access-control-allow-origin': null,
        'cross-origin-resource-policy': 'same-origin',
        'x-content-type-options': 'nosniff',
      });
    }
    const s = await app.request('/api/status');
    expect(s.headers.get('access-control-allow-origin')).toBe('*');
    expect(s.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
  });

  it('with --allowed-origins, CORS answers the allowed origins only (and says it varies by Origin)', async () => {
    const app = createApp({ ...base, allowedOrigins: new Set([SITE]) });
    const ok = await app.request('/aegis-embed.js', { headers: { origin: SITE } });
    expect(ok.headers.get('access-control-allow-origin')).toBe(SITE);
    expect(ok.headers.get('vary')).toMatch(/Origin/);
    for (const origin of ['https://evil.example', 'https://news.example.evil', 'null']) {
      const r = await app.request('/aegis-embed.js', { headers: { origin } });
      expect(r.status).toBe(200);
      expect(r.headers.get('access-control-allow-origin')).toBeNull();
    }
    expect((await app.request('/api/status')).headers.get('access-control-allow-origin')).toBeNull();
    const m = await app.request('/metrics', { headers: { origin: SITE } });
    expect(m.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('POST /api/join-token', () => {
  const withRoute = () =>
    createApp({
      ...base,
      allowedOrigins: new Set([SITE]),
      tokenRoute: {
        operatorKey: OPERATOR_KEY,
        maxTtlSeconds: 600,
        mint: (o) => mintJoinToken(TOKEN_KEY, o),
        onIssued: () => base.metrics.joinTokensIssued.inc(),
      },
    });
  const post = (
    app: ReturnType<typeof createApp>,
    body: unknown,
    auth = `Bearer ${OPERATOR_KEY.toString('hex')}`,
  ) =>
    app.request('/api/join-token', {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json', origin: SITE },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  it('does not exist without an operator key', async () => {
    expect((await post(createApp(base), { origin: SITE })).status).toBe(404);
  });

  it('mints a token for an allowed origin that the handshake accepts, once', async () => {
    const app = withRoute();
    const before = await metricValue(base.metrics, 'aegis_join_tokens_issued_total');
    const r = await post(app, { origin: SITE, ttl: 120, site: 'news' });
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.headers.get('access-control-allow-origin')).toBeNull(); // for the site's backend, not its pages
    const { token, exp, origin } = (await r.json()) as { token: string; exp: number; origin: string };
    expect(origin).toBe(SITE);
    expect(exp - Date.now() / 1000).toBeGreaterThan(100);
    expect(exp - Date.now() / 1000).toBeLessThanOrEqual(120);
    const v = new JoinTokenVerifier({ key: TOKEN_KEY, maxTtlSeconds: 600, replayCapacity: 10 });
    expect(v.verify(token, SITE, Date.now())).toMatchObject({ ok: true, payload: { o: SITE, site: 'news' } });
    expect(v.verify(token, SITE, Date.now())).toMatchObject({ ok: false, problem: 'replayed' });
    expect(await metricValue(base.metrics, 'aegis_join_tokens_issued_total')).toBe(before + 1);
  });

  it('refuses without the operator key, and bad requests with a reason', async () => {
    const app = withRoute();
    for (const auth of [
      '',
      'Bearer',
      `Bearer ${TOKEN_KEY.toString('hex')}`,
      `Basic ${OPERATOR_KEY.toString('hex')}`,
      `Bearer ${'a'.repeat(600)}`,
    ])
      expect((await post(app, { origin: SITE }, auth)).status).toBe(401);
    const bad = async (body: unknown): Promise<string> => {
      const r = await post(app, body);
      expect(r.status).toBe(400);
      return ((await r.json()) as { error: string }).error;
    };
    expect(await bad({ origin: 'https://evil.example' })).toMatch(/allowed-origins/);
    expect(await bad({ origin: `${SITE}/path` })).toMatch(/not an origin/);
    expect(await bad({ origin: SITE, ttl: 601 })).toMatch(/ttl/);
    expect(await bad({ origin: SITE, ttl: 0 })).toMatch(/ttl/);
    expect(await bad({ origin: SITE, ttl: '60' })).toMatch(/ttl/);
    expect(await bad({ origin: SITE, site: 'a b' })).toMatch(/site/);
    expect(await bad('{not json')).toMatch(/JSON/);
    expect((await post(app, { origin: SITE, pad: 'x'.repeat(2000) })).status).toBe(413);
  });
});
