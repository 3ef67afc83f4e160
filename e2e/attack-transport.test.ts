import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { startServerProcess, type ServerProcess } from './server-process.ts';

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
});
