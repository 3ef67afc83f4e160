import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io } from 'socket.io-client';
import { PROTOCOL_VERSION, type Welcome } from '../shared/protocol/messages.ts';
import { startServerProcess, type ServerProcess } from './server-process.ts';

/** --tls-cert/--tls-key: the same port serves HTTPS routes and socket.io over WSS. */
let srv: ServerProcess;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  srv = await startServerProcess([
    '--model',
    'tiny',
    '--test-examples',
    '10',
    '--tls-cert',
    join(dir, 'cert.pem'),
    '--tls-key',
    join(dir, 'key.pem'),
  ]);
});
afterAll(() => srv?.stop());

describe('TLS', () => {
  it('serves HTTPS and WSS on one port', async () => {
    expect(srv.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const body = await new Promise<string>((resolve, reject) => {
      get(`${srv.url}/health`, { rejectUnauthorized: false }, (res) => {
        let s = '';
        res.on('data', (d) => (s += d));
        res.on('end', () => resolve(s));
      }).on('error', reject);
    });
    expect(JSON.parse(body)).toMatchObject({ ok: true });
    const s = io(srv.url, { transports: ['websocket'], rejectUnauthorized: false, reconnection: false });
    const welcome = await new Promise<Welcome>((resolve, reject) => {
      s.on('connect', () =>
        s.emit('hello', {
          protocolVersion: PROTOCOL_VERSION,
          source: 'node',
        }),
      );
      s.on('welcome', resolve);
      s.on('connect_error', reject);
    });
    expect(welcome.sessionId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(welcome.task.name).toBe('tiny');
    s.close();
  });
});
