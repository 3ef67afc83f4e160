/**
 * Who may open a socket: the page's Origin against --allowed-origins, and, with --join-token-key, a join
 * token (server/join-token.ts) or the credentials of a session the client already holds (a reconnect:
 * socket.io sends its handshake again, and the token it has was spent on the first connection).
 *
 * The Origin header is what a browser says about the page; any other program can send what it likes, so
 * the allow-list keeps other sites' pages out, not other programs. The token is what admits a client.
 */
import type { Metrics } from './metrics.ts';
import type { JoinTokenPayload, JoinTokenVerifier } from './join-token.ts';

export interface HandshakePolicy {
  /** null: any origin. */
  allowedOrigins: ReadonlySet<string> | null;
  /** null: no token needed. */
  tokens: JoinTokenVerifier | null;
  /** The session valid credentials resume, or null. */
  sessionOf: (credentials: unknown) => string | null;
  now: () => number;
}

export interface HandshakeRequest {
  origin: string | undefined;
  /** The Host header: a page served by this server (same origin) is always allowed. */
  host: string | undefined;
  /** socket.io's handshake `auth`: { token?, session? } from the client. */
  auth: unknown;
}

/**
 * resumes: let in without a token to resume this session. observerOnly: let in without a token to watch
 * the public status (the demo page's observer socket); it may not join.
 */
export type Admission =
  /** token: the join token this admission spent (its jti is single-use cluster-wide where a spender is set). */
  | { ok: true; resumes: string | null; observerOnly: boolean; token?: JoinTokenPayload }
  | { ok: false; reason: 'bad_origin' | 'bad_token' | 'server_full'; message: string };

const MAX_ORIGIN_CHARS = 256;

/** Whether `origin` names this server as the Host header does (a page the server itself served). */
export function sameOrigin(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    return new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
}

/** The Origin check alone (also decides CORS for the embed bundle). */
export function originAllowed(
  allowed: ReadonlySet<string> | null,
  origin: string | undefined,
  host: string | undefined,
): boolean {
  if (allowed === null) return true;
  if (origin === undefined || origin.length > MAX_ORIGIN_CHARS) return false;
  return allowed.has(origin) || sameOrigin(origin, host);
}

/** Decides one handshake; counts each refusal (fixed labels only). */
export function admit(req: HandshakeRequest, p: HandshakePolicy, metrics: Metrics): Admission {
  if (!originAllowed(p.allowedOrigins, req.origin, req.host)) {
    metrics.updatesRejected.inc({ reason: 'bad_origin', event: 'connect' });
    return {
      ok: false,
      reason: 'bad_origin',
      message:
        req.origin === undefined
          ? 'no Origin header: this server accepts browser pages of its allowed sites only'
          : 'this site is not allowed to join this server (--allowed-origins)',
    };
  }
  if (!p.tokens) return { ok: true, resumes: null, observerOnly: false };
  const auth = typeof req.auth === 'object' && req.auth !== null ? (req.auth as Record<string, unknown>) : {};
  // The status is public (GET /api/status too): watching it needs no token, joining does.
  if (auth.observe === true && auth.token === undefined)
    return { ok: true, resumes: null, observerOnly: true };
  const resumes = auth.session === undefined ? null : p.sessionOf(auth.session);
  if (resumes !== null) return { ok: true, resumes, observerOnly: false };
  const v = p.tokens.verify(auth.token, req.origin, p.now());
  if (v.ok) return { ok: true, resumes: null, observerOnly: false, token: v.payload };
  metrics.joinTokensRefused.inc({ problem: v.problem });
  const reason = v.problem === 'replay_cache_full' ? 'server_full' : 'bad_token';
  metrics.updatesRejected.inc({ reason, event: 'connect' });
  return { ok: false, reason, message: v.message };
}
