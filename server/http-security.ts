/**
 * HTTP hardening: security headers on every response, CORS only where participating sites need it (the
 * embed bundle and the public data it reads), and the operator's token-minting route.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Hono, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { JoinTokenPayload, MintOptions } from './join-token.ts';
import { normalizeOrigin } from './join-token.ts';

/**
 * The demo page's policy: only its own scripts, WebAssembly compilation for tfjs' wasm backend
 * ('wasm-unsafe-eval', not 'unsafe-eval'), workers from itself or blobs, sockets and fetches to itself
 * ('self' covers ws:/wss: of the same host), and no framing. tfjs' threaded wasm would also need blob:
 * in script-src (its pthread workers importScripts() blobs); it is off (client/backends-browser.ts).
 */
export const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self' blob:",
  "connect-src 'self'",
  "img-src 'self' data:",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
/** Everything else is data: it loads nothing and is framed by no one. */
export const DATA_CSP = "default-src 'none'; frame-ancestors 'none'";

/** What participating sites load across origins: the embed script, its chunks and wasm, the public API. */
export function isEmbedResource(path: string): boolean {
  return (
    path === '/aegis-embed.js' ||
    path.startsWith('/assets/') ||
    path === '/api/status' ||
    path === '/api/model/weights' ||
    path.startsWith('/api/data/shard/')
  );
}

/**
 * Headers on every response. Pages (HTML) are cross-origin isolated (COOP same-origin + COEP
 * require-corp), which threaded wasm needs for SharedArrayBuffer; scripts carry COEP too, so a worker
 * started from one is isolated as well, and the page's CSP, which a worker takes from its script's
 * response. Embed resources are CORS-readable by the allowed origins only (any origin when there is no
 * list) and marked cross-origin (CORP), so sites that are isolated themselves can load them.
 */
export function securityHeaders(allowedOrigins: ReadonlySet<string> | null): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const type = c.res.headers.get('content-type') ?? '';
    const html = type.startsWith('text/html');
    const script = /javascript/.test(type);
    const h = c.res.headers;
    h.set('X-Content-Type-Options', 'nosniff');
    h.set('Referrer-Policy', 'no-referrer');
    h.set('Content-Security-Policy', html || script ? PAGE_CSP : DATA_CSP);
    if (html) {
      h.set('Cross-Origin-Opener-Policy', 'same-origin');
      h.set('X-Frame-Options', 'DENY');
    }
    if (html || script) h.set('Cross-Origin-Embedder-Policy', 'require-corp');
    const embed = isEmbedResource(c.req.path);
    h.set('Cross-Origin-Resource-Policy', embed ? 'cross-origin' : 'same-origin');
    if (!embed) return;
    if (allowedOrigins === null) return void h.set('Access-Control-Allow-Origin', '*');
    h.append('Vary', 'Origin');
    const origin = c.req.header('origin');
    if (origin !== undefined && allowedOrigins.has(origin)) h.set('Access-Control-Allow-Origin', origin);
  };
}

export interface TokenRouteOptions {
  /** The operator's bearer secret. */
  operatorKey: Buffer;
  mint: (o: Omit<MintOptions, 'now' | 'jti'>) => { token: string; payload: JoinTokenPayload };
  /** null: any origin may be named. */
  allowedOrigins: ReadonlySet<string> | null;
  maxTtlSeconds: number;
  onIssued?: () => void;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Whether the request carries `Authorization: Bearer <key as hex>` (as in the key file); the comparison
 * takes the same time wherever it differs.
 */
function authorized(c: Context, key: Buffer): boolean {
  const m = /^Bearer (\S{1,512})$/.exec(c.req.header('authorization') ?? '');
  return m !== null && timingSafeEqual(digest(m[1].toLowerCase()), digest(key.toString('hex')));
}

/**
 * POST /api/join-token { origin, ttl?, site? } with Authorization: Bearer <operator key> -> { token, exp }:
 * the site's backend mints one token per visitor and puts it in the page (data-token).
 */
export function addTokenRoute(app: Hono, o: TokenRouteOptions): void {
  app.post(
    '/api/join-token',
    bodyLimit({ maxSize: 1024, onError: (c) => c.json({ error: 'body too large' }, 413) }),
    async (c) => {
      c.header('Cache-Control', 'no-store');
      if (!authorized(c, o.operatorKey))
        return c.json({ error: 'operator key required (Authorization: Bearer)' }, 401);
      let body: Record<string, unknown>;
      try {
        body = (await c.req.json()) as Record<string, unknown>;
        if (typeof body !== 'object' || body === null) throw new Error();
      } catch {
        return c.json({ error: 'body must be JSON: { "origin": "https://site.example", "ttl": 300 }' }, 400);
      }
      const ttl = body.ttl ?? Math.min(300, o.maxTtlSeconds);
      if (!Number.isInteger(ttl) || (ttl as number) < 1 || (ttl as number) > o.maxTtlSeconds)
        return c.json({ error: `ttl must be an integer in 1..${o.maxTtlSeconds} seconds` }, 400);
      let origin: string;
      try {
        origin = normalizeOrigin(String(body.origin ?? ''));
      } catch (e) {
        return c.json({ error: (e as Error).message }, 400);
      }
      if (o.allowedOrigins && !o.allowedOrigins.has(origin))
        return c.json({ error: 'origin is not in --allowed-origins' }, 400);
      if (body.site !== undefined && typeof body.site !== 'string')
        return c.json({ error: 'site must be a string' }, 400);
      try {
        const { token, payload } = o.mint({
          origin,
          ttlSeconds: ttl as number,
          site: body.site as string | undefined,
        });
        o.onIssued?.();
        return c.json({ token, exp: payload.exp, origin: payload.o });
      } catch (e) {
        return c.json({ error: (e as Error).message }, 400);
      }
    },
  );
}
