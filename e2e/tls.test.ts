import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io, type Socket } from 'socket.io-client';
import { PROTOCOL_VERSION, type Welcome } from '../shared/protocol/messages.ts';
import { makeLocalCerts } from '../server/certs.ts';
import { httpsRequest, mintOverHttps } from './https-client.ts';
import { metric } from './metrics.ts';
import { startServerProcess, type ServerProcess } from './server-process.ts';

/**
 * --tls-cert/--tls-key with the local CA of `npm run certs`: the same port serves HTTPS routes and
 * socket.io over WSS to clients that trust that CA, and no other. With --join-token-key, --operator-key and
 * --allowed-origins, a socket needs a token minted for its page's origin (by `npm run token` or
 * POST /api/join-token).
 */
const SITE = 'https://site.example';
let srv: ServerProcess;
let dir: string;
let ca: string;
let operatorKey: string;

const tsx = (script: string, args: string[]): string =>
  execFileSync(process.execPath, ['--import', 'tsx', script, ...args], { encoding: 'utf8' });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aegis-tls-'));
  tsx('server/certs-cli.ts', ['--out', dir, '--days', '1']);
  tsx('server/token-cli.ts', ['--new-key', join(dir, 'token.key')]);
  tsx('server/token-cli.ts', ['--new-key', join(dir, 'operator.key')]);
  ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
  operatorKey = readFileSync(join(dir, 'operator.key'), 'utf8').trim();
  srv = await startServerProcess([
    ...['--model', 'tiny', '--test-examples', '10'],
    ...['--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server-key.pem')],
    ...['--join-token-key', join(dir, 'token.key'), '--operator-key', join(dir, 'operator.key')],
    ...['--allowed-origins', SITE],
  ]);
});
afterAll(() => srv?.stop());

const https = (path: string, trust: string, o?: Parameters<typeof httpsRequest>[2]) =>
  httpsRequest(`${srv.url}${path}`, trust, o);

const sockets: Socket[] = [];
afterAll(() => sockets.forEach((s) => s.close()));

/** A socket over WSS, trusting the local CA, from a page of `origin`; resolves with its welcome or refusal. */
function joinAs(
  origin: string,
  auth?: object,
): Promise<Welcome | { refused: { reason: string; message: string } }> {
  const s = io(srv.url, {
    transports: ['websocket'],
    ca,
    reconnection: false,
    extraHeaders: { origin },
    auth,
  });
  sockets.push(s);
  return new Promise((resolve, reject) => {
    s.on('connect', () => s.emit('hello', { protocolVersion: PROTOCOL_VERSION, source: 'node' }));
    s.on('welcome', resolve);
    s.on('connect_error', (e: Error & { data?: { reason: string; message: string } }) =>
      e.data ? resolve({ refused: e.data }) : reject(e),
    );
  });
}

const mintOverHttp = (origin: string): Promise<string> => mintOverHttps(srv.url, ca, operatorKey, origin, 60);

describe('TLS with the local CA (npm run certs)', () => {
  it('serves HTTPS to a client trusting the CA; a client trusting another CA refuses the server', async () => {
    expect(srv.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ok = await https('/health', ca);
    expect(ok).toMatchObject({ status: 200 });
    expect(JSON.parse((ok as { body: string }).body)).toMatchObject({ ok: true });
    const other = await makeLocalCerts();
    expect(await https('/health', other.caPem)).toEqual({
      error: expect.stringMatching(/UNABLE_TO_VERIFY|CERT/),
    });
  });

  it('WSS: a token minted for the page origin (over HTTPS or with npm run token) admits; no token, a replay or another origin does not', async () => {
    const fromHttp = await mintOverHttp(SITE);
    const w = await joinAs(SITE, { token: fromHttp });
    expect(w).toMatchObject({ task: { name: 'tiny' } });
    expect((w as Welcome).sessionId).toMatch(/^[A-Za-z0-9_-]{22}$/);

    const fromCli = tsx('server/token-cli.ts', [
      '--key',
      join(dir, 'token.key'),
      '--origin',
      SITE,
      '--ttl',
      '60',
    ]).trim();
    expect(await joinAs(SITE, { token: fromCli })).toMatchObject({ task: { name: 'tiny' } });

    expect(await joinAs(SITE)).toEqual({
      refused: { reason: 'bad_token', message: expect.stringMatching(/required/) },
    });
    expect(await joinAs(SITE, { token: fromHttp })).toEqual({
      refused: { reason: 'bad_token', message: expect.stringMatching(/already used/) },
    });
    expect(await joinAs('https://evil.example', { token: await mintOverHttp(SITE) })).toMatchObject({
      refused: { reason: 'bad_origin' },
    });
    // The operator route refuses origins outside the allow-list, and callers without the operator key.
    const r = await https('/api/join-token', ca, {
      method: 'POST',
      headers: { authorization: 'Bearer nope' },
      body: '{}',
    });
    expect(r).toMatchObject({ status: 401 });

    const m = ((await https('/metrics', ca)) as { body: string }).body;
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'bad_token', event: 'connect' })).toBe(2);
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'bad_origin', event: 'connect' })).toBe(1);
    expect(metric(m, 'aegis_join_tokens_refused_total', { problem: 'replayed' })).toBe(1);
    expect(metric(m, 'aegis_join_tokens_issued_total')).toBe(2);
  });
});
