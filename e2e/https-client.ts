import { request } from 'node:https';

export type HttpsResult = { status: number; body: string } | { error: string };

/**
 * One HTTPS request trusting only `ca` (Node's fetch cannot be given a CA); resolves with the status and
 * body, or with the error's code (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE for a server the CA did not sign).
 */
export function httpsRequest(
  url: string,
  ca: string,
  o: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<HttpsResult> {
  return new Promise((resolve) => {
    const req = request(url, { ca, method: o.method ?? 'GET', headers: o.headers }, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: s }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end(o.body);
  });
}

/** POST /api/join-token with the operator key: a token for pages of `origin`. */
export async function mintOverHttps(
  serverUrl: string,
  ca: string,
  operatorKey: string,
  origin: string,
  ttl = 120,
): Promise<string> {
  const r = await httpsRequest(`${serverUrl}/api/join-token`, ca, {
    method: 'POST',
    headers: { authorization: `Bearer ${operatorKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ origin, ttl }),
  });
  if (!('status' in r) || r.status !== 200)
    throw new Error(`minting a join token failed: ${JSON.stringify(r)}`);
  return (JSON.parse(r.body) as { token: string }).token;
}
