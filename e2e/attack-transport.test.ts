import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { type Ack } from '../shared/protocol/messages.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { metric } from './metrics.ts';
import { ScriptedClient } from './scripted-client.ts';
import { startServerProcess, waitFor, type ServerProcess } from './server-process.ts';

/**
 * Transport-level attacks by a client that never says hello: raw engine.io / socket.io frames written by
 * hand, below anything the per-socket message limit sees (it counts decoded events, not frames).
 */
const MAX_MESSAGE_BYTES = 256 * 1024;

let srv: ServerProcess;

/** A raw socket.io connection (engine.io v4 over a websocket), connected to the main namespace. */
async function rawSocket(url: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(url.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket');
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.on('message', (d) => {
    if (d.toString() === '2') ws.send('3'); // answer pings: the server must not drop us for silence
  });
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send('40');
  await new Promise((r) => setTimeout(r, 100));
  return { ws, closed };
}

const sendFrame = (ws: WebSocket, data: string | Buffer): Promise<void> =>
  new Promise((resolve) => ws.send(data, () => resolve()));

/** The server's resident memory, in bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

describe('transport attacks against the real server', () => {
  beforeAll(async () => {
    srv = await startServerProcess([
      '--model',
      'tiny',
      '--min-clients',
      '3',
      '--clients-per-round',
      '3',
      '--min-updates',
      '3',
      '--examples-per-client',
      '16',
      '--max-examples-per-client',
      '16',
      '--test-examples',
      '50',
      '--max-message-bytes',
      String(MAX_MESSAGE_BYTES),
      // An attempt stays open while one member withholds its keys, so an abort would be visible.
      '--secagg-keys-deadline-ms',
      '30000',
      '--round-deadline-ms',
      '60000',
    ]);
  });

  afterAll(async () => {
    await srv?.stop();
  });

  it('a binary packet announcing many attachments cannot make the server hold more than one message per socket', async () => {
    // No protocol message has more than two binary fields. This header announces 10 (socket.io's own
    // cap); the server then buffers every attachment frame until the 10th arrives, each up to the
    // message limit, with no hello and no event for the rate limiter to count.
    const SOCKETS = 4;
    const FRAMES = 9;
    const frame = Buffer.alloc(MAX_MESSAGE_BYTES - 1024, 7);
    const before = rss(srv.child.pid!);
    const conns = await Promise.all(Array.from({ length: SOCKETS }, () => rawSocket(srv.url)));
    await Promise.all(
      conns.map(async ({ ws }) => {
        await sendFrame(ws, '4510-["update",{"round":1,"attempt":1,"delta":{"_placeholder":true,"num":0}}]');
        for (let i = 0; i < FRAMES && ws.readyState === WebSocket.OPEN; i++) await sendFrame(ws, frame);
      }),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const grew = rss(srv.child.pid!) - before;
    const open = conns.filter(({ ws }) => ws.readyState === WebSocket.OPEN).length;
    for (const { ws } of conns) ws.terminate();
    // Pending attachments per socket must stay within one message (MAX_MESSAGE_BYTES): a socket that
    // goes past it is closed. Today every socket stays open holding FRAMES * frame bytes.
    expect(
      open,
      `${open}/${SOCKETS} sockets still open, each holding ${((FRAMES * frame.length) / 2 ** 20).toFixed(1)} MiB of pending attachments; server RSS grew ${(grew / 2 ** 20).toFixed(0)} MiB`,
    ).toBe(0);
  });

  it('a hello from a stranger cannot abort the attempt in progress (deeply nested protocolVersion)', async () => {
    const P = numParams(MODELS.tiny);
    const members = [0, 1, 2].map((i) => new ScriptedClient(srv.url, `member-${i}`, new Float32Array(P), 16));
    // One member stays silent at R0: the attempt waits for it (30 s) and is in training meanwhile.
    members[2].silentIf = () => true;
    try {
      await waitFor(
        async () => members.every((c) => c.start !== null),
        30_000,
        'round:start to every member',
      );
      const status = (): Promise<ServerStatus> => fetch(srv.url + '/api/status').then((r) => r.json());
      expect((await status()).phase).toBe('training');

      // ~400 KB of brackets, far below the message limit: String() of it overflows the stack inside
      // checkHello, which the containment treats as an internal fault and aborts the attempt.
      const depth = 100_000;
      // Written by hand: socket.io-client's own encoder would overflow on it (hasBinary recurses).
      const { ws, closed } = await rawSocket(srv.url);
      const nested = '['.repeat(depth) + ']'.repeat(depth);
      const answer = new Promise<Ack>((resolve) =>
        ws.on('message', (d) => {
          const m = /^430(\[.*\])$/s.exec(d.toString());
          if (m) resolve((JSON.parse(m[1]) as Ack[])[0]);
        }),
      );
      ws.send(`420["hello",{"protocolVersion":${nested},"source":"node"}]`);
      const ack = await Promise.race([
        answer,
        closed.then((): Ack => ({ ok: false, reason: 'malformed', message: 'closed' })),
      ]);
      ws.terminate();
      expect(ack.ok).toBe(false);
      const text = await fetch(srv.url + '/metrics').then((r) => r.text());
      expect(metric(text, 'aegis_round_attempts_failed_total', { reason: 'internal_error' }) ?? 0).toBe(0);
      expect(metric(text, 'aegis_internal_errors_total', { where: 'message' }) ?? 0).toBe(0);
      expect(ack).toMatchObject({ reason: 'protocol_version' });
      const s = await status();
      expect([s.phase, s.round, s.attempt]).toEqual(['training', 1, 1]);
    } finally {
      for (const c of members) c.close();
    }
  });
});
